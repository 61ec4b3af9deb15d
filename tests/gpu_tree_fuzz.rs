//! A property test of the tree call's argument path: tree calls drawn at random from valid
//! ones (ragged trees of random shapes, laws, rules, dtypes, strides, samplings) with random
//! bad fields, through the C ABI (`asps_tree_verify`, sometimes with the shortest struct) and
//! the raw front (`TreeVerifier::verify_raw`). Every call must either be refused with the right
//! error before anything is launched (null, misaligned or overlapping pointers, bad sizes and
//! codes, past the verifier's capacity), or run and report each request's status (device
//! values: malformed trees, tokens out of range, unknown sibling laws, NaN logits, bad
//! temperatures and truncations), every clean request verified and every spoiled one refused.
//! Each array of a call is its own allocation of exactly the extent its shape gives, so the
//! emulated device, which checks every access against its allocations, stops any kernel that
//! strays past what the call was given (whatever the trees hold); CI runs this under ASan and
//! UBSan too.
//!
//! Without a GPU or the emulated device it prints SKIPPED. The seed is fixed; a failure names
//! its case, and `ASPS_FUZZ_CASES` / `ASPS_FUZZ_SEED` rerun more or other cases.

#[path = "common/batch.rs"]
mod batch;
#[path = "common/gpu.rs"]
mod gpu;

use std::ffi::c_void;
use std::mem::size_of;
use std::sync::Arc;

use asps::Dtype;
use asps::capi::bindings::*;
use asps::capi::{
    AspsTreeVerifyArgs, AspsTruncation, AspsVerifyArgs, TREE_VERIFY_ARGS_MIN_SIZE,
    asps_tree_verifier_create, asps_tree_verifier_destroy, asps_tree_verify, status_of,
};
use asps::cuda::{RequestStatus, TreeVerifier};
use asps::reference::{SiblingLaw, TreeRule};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr};
use gpu::gpu_or_skip;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BMAX: usize = 4;
const NODES_MAX: usize = 6;
const VMAX: usize = 40;
const WHOLE: usize = size_of::<AspsTreeVerifyArgs>();
/// The offsets every call starts from, to tell whether a refused call launched anything.
const START_OFFSET: u64 = 7;

/// One model's truncation arrays on the host: top-k, top-p, min-p.
type Truncations = (Vec<i32>, Vec<f32>, Vec<f32>);

/// One call: its arguments, its arrays on the host, how it goes in, and what must come out.
struct Case {
    args: AspsTreeVerifyArgs,
    num_nodes: Vec<i32>,
    parents: Vec<i32>,
    tokens: Vec<i32>,
    laws: Vec<i32>,
    temps: Vec<f32>,
    draft_temps: Option<Vec<f32>>,
    truncations: [Option<Truncations>; 2],
    seeds: Vec<u64>,
    /// A NaN in the target row of each (request, node).
    nan_at: Vec<(usize, usize)>,
    /// Through the C ABI with a struct of this many bytes; else the raw front.
    c_struct: Option<usize>,
    /// A host-checkable field was spoiled: the C statuses the refusal may have.
    refused_with: Option<Vec<u32>>,
    spoils: Vec<String>,
    /// Per request: a device value was spoiled (the request must not verify).
    spoiled: Vec<bool>,
}

/// A valid call at random (its arrays not yet on the device).
fn valid_case(rng: &mut StdRng) -> Case {
    let b = rng.random_range(1..=BMAX);
    let nodes = rng.random_range(1..=NODES_MAX);
    let v = [1, 2, 17, VMAX][rng.random_range(0..4)];
    let dtype = Dtype::ALL[rng.random_range(0..3)];
    let rule = [TreeRule::Tv, TreeRule::Rrs][rng.random_range(0..2)];
    let stride = if rng.random() {
        v
    } else {
        v + rng.random_range(1..=VMAX)
    };
    let c_struct = match rng.random_range(0..4) {
        0 | 1 => None,
        2 => Some(WHOLE),
        _ => Some(TREE_VERIFY_ARGS_MIN_SIZE),
    };
    let carries_all = c_struct.is_none_or(|size| size == WHOLE);
    let pick = |rng: &mut StdRng, values: &[f32]| values[rng.random_range(0..values.len())];
    let (mut num_nodes, mut parents, mut tokens, mut laws) = (
        vec![0; b],
        vec![0; b * nodes],
        vec![0; b * nodes],
        vec![0; b],
    );
    for r in 0..b {
        let n = rng.random_range(1..=nodes);
        num_nodes[r] = n as i32;
        let mut children = vec![0usize; n];
        for c in 1..n {
            let u = rng.random_range(0..c);
            parents[r * nodes + c] = u as i32;
            // The k-th child of u takes a token of its own (while the vocabulary lasts).
            tokens[r * nodes + c] = ((u * 5 + children[u]) % v) as i32;
            children[u] += 1;
        }
        let law = [
            SiblingLaw::WithoutReplacement,
            SiblingLaw::WithReplacement,
            SiblingLaw::Deterministic,
        ][rng.random_range(0..3)];
        // More children than tokens can only have been drawn with replacement.
        let law = if children.iter().any(|&k| k > v) {
            SiblingLaw::WithReplacement
        } else {
            law
        };
        laws[r] = AspsTreeVerifyArgs::sibling_law_code(law);
    }
    let temps: Vec<f32> = (0..b).map(|_| pick(rng, &[0.0, 0.5, 1.0, 2.0])).collect();
    // A greedy drafter (0) proposes deterministic children only.
    let draft_temps = (carries_all && rng.random()).then(|| {
        (0..b)
            .map(|r| {
                let t = pick(rng, &[0.0, 0.7, 1.5]);
                let deterministic =
                    laws[r] == AspsTreeVerifyArgs::sibling_law_code(SiblingLaw::Deterministic);
                if t == 0.0 && !deterministic { 1.0 } else { t }
            })
            .collect()
    });
    let truncations = |rng: &mut StdRng| -> Option<Truncations> {
        (carries_all && rng.random()).then(|| {
            (
                (0..b)
                    .map(|_| [0, 1, 5, 1000][rng.random_range(0..4)])
                    .collect(),
                (0..b).map(|_| pick(rng, &[1.0, 0.9, 0.3])).collect(),
                (0..b).map(|_| pick(rng, &[0.0, 0.05, 0.5])).collect(),
            )
        })
    };
    Case {
        args: AspsTreeVerifyArgs {
            rule: AspsTreeVerifyArgs::rule_code(rule),
            dtype: AspsVerifyArgs::dtype_code(dtype),
            batch: b as i32,
            max_nodes: nodes as i32,
            vocab: v as i32,
            target_batch_stride: (nodes * stride) as i64,
            target_node_stride: stride as i64,
            draft_batch_stride: (nodes.max(2) - 1) as i64 * stride as i64,
            draft_node_stride: stride as i64,
            ..AspsTreeVerifyArgs::new()
        },
        num_nodes,
        parents,
        tokens,
        laws,
        temps,
        draft_temps,
        truncations: [truncations(rng), truncations(rng)],
        seeds: (0..b).map(|_| rng.random()).collect(),
        nan_at: Vec::new(),
        c_struct,
        refused_with: None,
        spoils: Vec::new(),
        spoiled: vec![false; b],
    }
}

/// Spoils one device value of request `i` (the call runs; the request is refused).
fn spoil_device(rng: &mut StdRng, c: &mut Case, i: usize) {
    let (b, nodes, v) = (
        c.args.batch as usize,
        c.args.max_nodes as usize,
        c.args.vocab,
    );
    // The tree's nodes (within the slots, should an earlier spoil have set its count).
    let n = c.num_nodes[i].clamp(1, nodes as i32) as usize;
    let pickf = |rng: &mut StdRng, values: &[f32]| values[rng.random_range(0..values.len())];
    let kind = rng.random_range(0..8);
    c.spoils.push(format!("device value {kind} of request {i}"));
    match kind {
        0 => c.temps[i] = pickf(rng, &[f32::NAN, -1.0, f32::INFINITY, 1e-40, 1e38]),
        1 => {
            c.num_nodes[i] = [0, -1, nodes as i32 + 1, i32::MAX][rng.random_range(0..4)];
        }
        2 if n >= 2 => {
            let node = rng.random_range(1..n);
            c.parents[i * nodes + node] =
                [-1, node as i32, n as i32, i32::MIN][rng.random_range(0..4)];
        }
        3 if n >= 2 => {
            c.tokens[i * nodes + rng.random_range(1..n)] =
                [-1, v, i32::MAX][rng.random_range(0..3)];
        }
        4 => c.laws[i] = [3, -1, i32::MAX][rng.random_range(0..3)],
        5 => c.nan_at.push((i, rng.random_range(0..n))),
        6 if c.c_struct.is_none_or(|size| size == WHOLE) => {
            let m = rng.random_range(0..2);
            let t =
                c.truncations[m].get_or_insert_with(|| (vec![0; b], vec![1.0; b], vec![0.0; b]));
            match rng.random_range(0..3) {
                0 => t.0[i] = -1,
                1 => t.1[i] = pickf(rng, &[0.0, f32::NAN, 1.5]),
                _ => t.2[i] = pickf(rng, &[1.0, -0.5, f32::NAN]),
            }
        }
        _ => c.temps[i] = -0.5,
    }
    c.spoiled[i] = true;
}

/// One model's truncation arrays on the device.
type DeviceTruncations = (CudaSlice<i32>, CudaSlice<f32>, CudaSlice<f32>);

/// A case's arrays on the device, each its own allocation of exactly its extent.
struct Arrays {
    target: CudaSlice<u8>,
    draft: Option<CudaSlice<u8>>,
    num_nodes: CudaSlice<i32>,
    parents: CudaSlice<i32>,
    tokens: CudaSlice<i32>,
    laws: CudaSlice<i32>,
    seeds: CudaSlice<u64>,
    offsets: CudaSlice<u64>,
    outs: [CudaSlice<i32>; 4],
    temperature: CudaSlice<f32>,
    draft_temperature: Option<CudaSlice<f32>>,
    truncations: [Option<DeviceTruncations>; 2],
}

/// `rows` rows of logits as `c`'s dtype, spanning exactly the extent of its strides: the
/// target's vary along a row (NaN at `nan`); the draft's are one value, so that every token is
/// a largest logit, kept by any truncation and drawable by any drafter.
fn logits(c: &Case, rows: usize, (bs, ns): (i64, i64), target: bool) -> Vec<u8> {
    let (b, v) = (c.args.batch as usize, c.args.vocab as usize);
    let len = (b - 1) * bs as usize + (rows - 1) * ns as usize + v;
    let nan: Vec<usize> = c
        .nan_at
        .iter()
        .filter(|_| target)
        .map(|&(r, u)| r * bs as usize + u * ns as usize + v / 2)
        .collect();
    let value = |i: usize| match (target, nan.contains(&i)) {
        (_, true) => f64::NAN,
        (true, false) => ((i * 37 % 11) as f64 - 5.0) * 0.3,
        (false, false) => 0.5,
    };
    match c.args.dtype as u32 {
        ASPS_DTYPE_F32 => (0..len)
            .flat_map(|i| (value(i) as f32).to_ne_bytes())
            .collect(),
        ASPS_DTYPE_F16 => (0..len)
            .flat_map(|i| f16::from_f64(value(i)).to_ne_bytes())
            .collect(),
        _ => (0..len)
            .flat_map(|i| bf16::from_f64(value(i)).to_ne_bytes())
            .collect(),
    }
}

fn up<T: DeviceRepr>(stream: &Arc<CudaStream>, v: &[T]) -> CudaSlice<T> {
    stream.clone_htod(v).unwrap()
}

/// Puts `c`'s arrays on the device and points its arguments at them (no draft logits for a
/// tree of one node slot: none can be read).
fn upload(c: &mut Case, stream: &Arc<CudaStream>) -> Arrays {
    let (b, nodes) = (c.args.batch as usize, c.args.max_nodes as usize);
    let a = &c.args;
    let truncation = |t: &Option<Truncations>| {
        t.as_ref()
            .map(|(k, p, m)| (up(stream, k), up(stream, p), up(stream, m)))
    };
    let arrays = Arrays {
        target: up(
            stream,
            &logits(
                c,
                nodes,
                (a.target_batch_stride, a.target_node_stride),
                true,
            ),
        ),
        draft: (nodes >= 2).then(|| {
            up(
                stream,
                &logits(
                    c,
                    nodes - 1,
                    (a.draft_batch_stride, a.draft_node_stride),
                    false,
                ),
            )
        }),
        num_nodes: up(stream, &c.num_nodes),
        parents: up(stream, &c.parents),
        tokens: up(stream, &c.tokens),
        laws: up(stream, &c.laws),
        seeds: up(stream, &c.seeds),
        offsets: up(stream, &vec![START_OFFSET; b]),
        outs: std::array::from_fn(|_| up(stream, &vec![0i32; b])),
        temperature: up(stream, &c.temps),
        draft_temperature: c.draft_temps.as_ref().map(|d| up(stream, d)),
        truncations: [truncation(&c.truncations[0]), truncation(&c.truncations[1])],
    };
    let ptr = |d: (u64, cudarc::driver::SyncOnDrop<'_>)| d.0;
    let a = &mut c.args;
    a.target_logits = ptr(arrays.target.device_ptr(stream)) as *const c_void;
    a.draft_logits = arrays
        .draft
        .as_ref()
        .map_or(0, |d| ptr(d.device_ptr(stream))) as *const c_void;
    a.num_nodes = ptr(arrays.num_nodes.device_ptr(stream)) as *const i32;
    a.parents = ptr(arrays.parents.device_ptr(stream)) as *const i32;
    a.tokens = ptr(arrays.tokens.device_ptr(stream)) as *const i32;
    a.sibling_laws = ptr(arrays.laws.device_ptr(stream)) as *const i32;
    a.seeds = ptr(arrays.seeds.device_ptr(stream)) as *const u64;
    a.offsets = ptr(arrays.offsets.device_ptr(stream)) as *mut u64;
    let [node, token, emitted, status] = &arrays.outs;
    a.out_node = ptr(node.device_ptr(stream)) as *mut i32;
    a.out_token = ptr(token.device_ptr(stream)) as *mut i32;
    a.out_num_emitted = ptr(emitted.device_ptr(stream)) as *mut i32;
    a.out_status = ptr(status.device_ptr(stream)) as *mut i32;
    a.sampling.temperature = ptr(arrays.temperature.device_ptr(stream)) as *const f32;
    a.sampling.draft_temperature = arrays
        .draft_temperature
        .as_ref()
        .map_or(0, |d| ptr(d.device_ptr(stream))) as *const f32;
    let model = |t: &Option<DeviceTruncations>| match t {
        None => AspsTruncation::default(),
        Some((k, p, m)) => AspsTruncation {
            top_k: ptr(k.device_ptr(stream)) as *const i32,
            top_p: ptr(p.device_ptr(stream)) as *const f32,
            min_p: ptr(m.device_ptr(stream)) as *const f32,
        },
    };
    a.sampling.target = model(&arrays.truncations[0]);
    a.sampling.draft = model(&arrays.truncations[1]);
    arrays
}

/// Spoils one host-checkable field of the uploaded call: it must be refused, with one of the
/// statuses the spoil names.
fn spoil_host(rng: &mut StdRng, c: &mut Case) {
    let a = &mut c.args;
    let kind = rng.random_range(0..9);
    c.spoils.push(format!("host field {kind}"));
    let (status, also) = match kind {
        0 => {
            a.parents = std::ptr::null();
            (ASPS_ERR_NULL_POINTER, None)
        }
        1 => {
            a.seeds = (a.seeds as usize + 4) as *const u64;
            (ASPS_ERR_MISALIGNED, None)
        }
        2 => {
            a.out_status = a.tokens as *mut i32;
            (ASPS_ERR_OVERLAP, None)
        }
        3 => {
            a.rule = [2, -1][rng.random_range(0..2)];
            (ASPS_ERR_INVALID_ARGUMENT, None)
        }
        4 => {
            a.max_nodes = [0, -2][rng.random_range(0..2)];
            (ASPS_ERR_SHAPE, None)
        }
        5 => {
            // Past the verifier's capacity (or the kernels' most nodes).
            a.max_nodes = [NODES_MAX as i32 + 1, 65][rng.random_range(0..2)];
            (ASPS_ERR_CAPACITY, Some(ASPS_ERR_TOO_LARGE))
        }
        6 => {
            a.batch = BMAX as i32 + 1;
            (ASPS_ERR_CAPACITY, None)
        }
        7 => {
            a.target_node_stride = i64::from(a.vocab) - 1;
            (ASPS_ERR_SHAPE, None)
        }
        _ => {
            a.sampling.temperature = std::ptr::null();
            (ASPS_ERR_NULL_POINTER, None)
        }
    };
    // Growing a shape may also overlap the arrays laid out for the smaller one.
    let mut expect = vec![status];
    expect.extend(also);
    if matches!(kind, 5 | 6) {
        expect.push(ASPS_ERR_OVERLAP);
    }
    c.refused_with = Some(expect);
}

fn call(
    c: &Case,
    verifier: &mut TreeVerifier,
    handle: *mut AspsTreeVerifier,
    stream: &CudaStream,
) -> u32 {
    let status = match c.c_struct {
        Some(size) => {
            let mut words = vec![0u64; WHOLE.div_ceil(8)];
            let bytes = words.as_mut_ptr().cast::<u8>();
            // SAFETY: `words` holds WHOLE >= size bytes; plain old data.
            unsafe {
                std::ptr::copy_nonoverlapping((&raw const c.args).cast::<u8>(), bytes, size);
                bytes.cast::<u32>().write(size as u32);
            }
            // SAFETY: a live handle; `size` readable bytes; every pointer the checks let
            // through is one of the case's allocations, covering the extent of its shape.
            unsafe { asps_tree_verify(handle, words.as_ptr().cast(), std::ptr::null_mut()) }
        }
        // SAFETY: as above, on the context's legacy stream.
        None => match unsafe { verifier.verify_raw(&c.args, stream.cu_stream()) } {
            Ok(()) => ASPS_OK as i32,
            Err(e) => status_of(&e),
        },
    };
    status as u32
}

/// The depth of `node` in request `r`'s tree.
fn depth(c: &Case, r: usize, node: usize) -> usize {
    let nodes = c.args.max_nodes as usize;
    let (mut d, mut u) = (0, node);
    while u != 0 {
        u = c.parents[r * nodes + u] as usize;
        d += 1;
    }
    d
}

#[test]
fn bad_tree_arguments_are_refused_or_reported_never_followed() {
    let Some(gpu) = gpu_or_skip("bad_tree_arguments_are_refused_or_reported_never_followed") else {
        return;
    };
    let cases: usize = std::env::var("ASPS_FUZZ_CASES").map_or(1500, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("ASPS_FUZZ_SEED").map_or(2026, |v| v.parse().unwrap());
    let stream = gpu.context().default_stream();
    let mut verifier = TreeVerifier::new(&gpu, &stream, BMAX, NODES_MAX).unwrap();
    let mut handle: *mut AspsTreeVerifier = std::ptr::null_mut();
    // SAFETY: writes one handle.
    assert_eq!(
        unsafe { asps_tree_verifier_create(0, BMAX as i32, NODES_MAX as i32, &mut handle) },
        ASPS_OK as i32
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut refused, mut ran, mut spoiled_requests) = (0, 0, 0);
    for k in 0..cases {
        let what = format!(
            "case {k} of seed {seed} (rerun: ASPS_FUZZ_SEED={seed} ASPS_FUZZ_CASES={})",
            k + 1
        );
        let mut c = valid_case(&mut rng);
        let kind = rng.random_range(0..3);
        if kind == 2 {
            for _ in 0..rng.random_range(1..=2) {
                let i = rng.random_range(0..c.args.batch as usize);
                spoil_device(&mut rng, &mut c, i);
            }
        }
        let arrays = upload(&mut c, &stream);
        if kind == 1 {
            spoil_host(&mut rng, &mut c);
        }
        let status = call(&c, &mut verifier, handle, &stream);
        let offsets = stream.clone_dtoh(&arrays.offsets).unwrap();
        if let Some(expect) = &c.refused_with {
            assert!(
                expect.contains(&status),
                "{what}: a call with {:?} gave status {status}, not one of {expect:?}",
                c.spoils
            );
            assert!(
                offsets.iter().all(|&o| o == START_OFFSET),
                "{what}: a refused call launched kernels"
            );
            refused += 1;
            continue;
        }
        assert_eq!(
            status, ASPS_OK,
            "{what}: a valid call was refused ({:?})",
            c.spoils
        );
        ran += 1;
        let [node, token, emitted, status] = arrays
            .outs
            .each_ref()
            .map(|s| stream.clone_dtoh(s).unwrap());
        for i in 0..c.args.batch as usize {
            let s = RequestStatus::from_code(status[i]);
            assert_eq!(offsets[i], START_OFFSET + 1, "{what}: request {i}'s offset");
            if c.spoiled[i] {
                spoiled_requests += 1;
                assert_ne!(
                    s,
                    RequestStatus::Ok,
                    "{what}: spoiled request {i} verified ({:?})",
                    c.spoils
                );
                assert!(!matches!(s, RequestStatus::Unknown(_)), "{what}: {s:?}");
                assert_eq!(
                    (node[i], token[i], emitted[i]),
                    (-1, -1, 0),
                    "{what}: request {i}"
                );
                continue;
            }
            assert_eq!(s, RequestStatus::Ok, "{what}: clean request {i}");
            let n = c.num_nodes[i];
            assert!(
                (0..n).contains(&node[i]),
                "{what}: request {i}'s node {}",
                node[i]
            );
            assert!(
                (0..c.args.vocab).contains(&token[i]),
                "{what}: token {}",
                token[i]
            );
            assert_eq!(
                emitted[i] as usize,
                depth(&c, i, node[i] as usize) + 1,
                "{what}: request {i}'s emitted count"
            );
        }
    }
    println!(
        "{cases} cases (seed {seed}): {refused} refused before launch, {ran} run, \
         {spoiled_requests} spoiled requests reported"
    );
    assert!(
        refused > cases / 5 && ran > cases / 5,
        "{refused} refused, {ran} run"
    );
    // SAFETY: the handle from asps_tree_verifier_create, its work finished (the reads above
    // synchronised the stream).
    assert_eq!(
        unsafe { asps_tree_verifier_destroy(handle) },
        ASPS_OK as i32
    );
}
