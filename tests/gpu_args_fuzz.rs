//! A property test of the one argument path: calls drawn at random from valid ones with random
//! bad fields, through the C ABI (`asps_verify`, sometimes with an older, shorter struct) and
//! the raw front (`Verifier::verify_raw`). Every call must either be refused with the right
//! error before anything is launched (host-checkable fields: null, misaligned or overlapping
//! pointers, zero, negative or huge sizes and strides, unknown codes, bad struct sizes), or run
//! and report each request's status (device values: NaN, infinite, negative or out-of-domain
//! temperatures, out-of-range truncations, tokens and draft lengths), every clean request
//! verified and every spoiled one refused. Each array of a call is its own allocation of exactly
//! the extent its shape gives, so the emulated device, which checks every access against its
//! allocations, stops any kernel that strays past what the call was given; CI runs this under
//! ASan and UBSan too (README, "Testing without a GPU").
//!
//! Without a GPU or the emulated device it prints SKIPPED. The seed is fixed; a failure names
//! its case, and `ASPS_FUZZ_CASES` / `ASPS_FUZZ_SEED` rerun more or other cases.

#[path = "common/batch.rs"]
mod batch;
#[path = "common/gpu.rs"]
mod gpu;

use std::ffi::c_void;
use std::mem::{offset_of, size_of};
use std::sync::Arc;

use asps::capi::bindings::*;
use asps::capi::{
    AspsSampling, AspsTruncation, AspsVerifyArgs, VERIFY_ARGS_MAX_SIZE, VERIFY_ARGS_MIN_SIZE,
    asps_verifier_create, asps_verifier_destroy, asps_verify, status_of,
};
use asps::cuda::{MAX_VOCAB, RequestStatus, Verifier};
use asps::{Dtype, Method};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr};
use gpu::gpu_or_skip;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BMAX: usize = 4;
const NMAX: usize = 3;
const VMAX: usize = 40;

/// The size of an older header's struct, before the draft temperature.
const OLD_SIZE: usize =
    offset_of!(AspsVerifyArgs, sampling) + offset_of!(AspsSampling, draft_temperature);
const WHOLE: usize = size_of::<AspsVerifyArgs>();

/// One model's truncation arrays on the host: top-k, top-p, min-p.
type Truncations = (Vec<i32>, Vec<f32>, Vec<f32>);

/// One call: its arguments, its arrays on the host, how it goes in, and what must come out.
struct Case {
    args: AspsVerifyArgs,
    /// Elements before the logits in their buffers (misaligning rows from 16 bytes).
    lead: usize,
    lens: Vec<i32>,
    tokens: Vec<i32>,
    temps: Vec<f32>,
    seeds: Vec<u64>,
    draft_temps: Option<Vec<f32>>,
    truncations: [Option<Truncations>; 2],
    /// Through the C ABI, with a struct of this many bytes (and this byte set past this
    /// library's struct); else the raw front.
    c_struct: Option<(usize, u8)>,
    /// A host-checkable field was spoiled: the C statuses the refusal may have.
    refused_with: Option<Vec<u32>>,
    /// What was spoiled, for the failure message.
    spoils: Vec<String>,
    /// Per request: a device value was spoiled (the request must not verify).
    spoiled: Vec<bool>,
}

impl Case {
    /// Whether the call's struct carries the fields up to byte `end`.
    fn carries(&self, end: usize) -> bool {
        self.c_struct.is_none_or(|(size, _)| size >= end)
    }
}

/// A valid call at random (its arrays not yet on the device).
fn valid_case(rng: &mut StdRng) -> Case {
    let b = rng.random_range(1..=BMAX);
    let n = rng.random_range(1..=NMAX);
    let v = [1, 2, 17, VMAX][rng.random_range(0..4)];
    let dtype = Dtype::ALL[rng.random_range(0..3)];
    let method = Method::ALL[rng.random_range(0..3)];
    let row_stride = if rng.random() {
        v
    } else {
        v + rng.random_range(1..=VMAX)
    };
    // Through the C ABI (a struct of the whole size, or an older header's), or the raw front.
    let c_struct = match rng.random_range(0..4) {
        0 | 1 => None,
        2 => Some((WHOLE, 0)),
        _ => Some(([OLD_SIZE, VERIFY_ARGS_MIN_SIZE][rng.random_range(0..2)], 0)),
    };
    let carries = |end: usize| c_struct.is_none_or(|(size, _)| size >= end);
    let pick = |rng: &mut StdRng, values: &[f32]| values[rng.random_range(0..values.len())];
    let truncations = |rng: &mut StdRng| -> Option<Truncations> {
        (carries(OLD_SIZE) && rng.random()).then(|| {
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
        args: AspsVerifyArgs {
            method: AspsVerifyArgs::method_code(method),
            dtype: AspsVerifyArgs::dtype_code(dtype),
            batch: b as i32,
            max_draft: n as i32,
            vocab: v as i32,
            target_batch_stride: ((n + 1) * row_stride) as i64,
            target_row_stride: row_stride as i64,
            draft_batch_stride: (n * row_stride) as i64,
            draft_row_stride: row_stride as i64,
            ..AspsVerifyArgs::new()
        },
        lead: rng.random_range(0..4),
        lens: (0..b).map(|_| rng.random_range(1..=n as i32)).collect(),
        tokens: (0..b * n).map(|_| rng.random_range(0..v as i32)).collect(),
        temps: (0..b).map(|_| pick(rng, &[0.0, 0.5, 1.0, 2.0])).collect(),
        seeds: (0..b).map(|_| rng.random()).collect(),
        draft_temps: (carries(WHOLE) && rng.random())
            .then(|| (0..b).map(|_| pick(rng, &[0.0, 0.7, 1.5])).collect()),
        truncations: [truncations(rng), truncations(rng)],
        c_struct,
        refused_with: None,
        spoils: Vec::new(),
        spoiled: vec![false; b],
    }
}

/// Spoils one device value of request `i`, among those the call's struct carries (the call
/// runs; the request is refused).
fn spoil_device(rng: &mut StdRng, c: &mut Case, i: usize) {
    let b = c.args.batch as usize;
    let n = c.args.max_draft as usize;
    let kinds = if c.carries(WHOLE) {
        5
    } else if c.carries(OLD_SIZE) {
        4
    } else {
        3
    };
    let pickf = |rng: &mut StdRng, values: &[f32]| values[rng.random_range(0..values.len())];
    let kind = rng.random_range(0..kinds);
    c.spoils.push(format!("device value {kind} of request {i}"));
    match kind {
        0 => c.temps[i] = pickf(rng, &[f32::NAN, -1.0, f32::INFINITY, 1e-40, 1e38]),
        1 => c.tokens[i * n] = [-1, c.args.vocab, i32::MAX][rng.random_range(0..3)],
        2 => c.lens[i] = [0, -1, n as i32 + 1, i32::MAX][rng.random_range(0..4)],
        3 => {
            // One bad truncation value of request i (the target's or the draft's arrays).
            let m = rng.random_range(0..2);
            let t =
                c.truncations[m].get_or_insert_with(|| (vec![0; b], vec![1.0; b], vec![0.0; b]));
            match rng.random_range(0..3) {
                0 => t.0[i] = -1,
                1 => t.1[i] = pickf(rng, &[0.0, f32::NAN, 1.5]),
                _ => t.2[i] = pickf(rng, &[1.0, -0.5, f32::NAN]),
            }
        }
        _ => {
            let temps = c.temps.clone();
            let dt = c.draft_temps.get_or_insert(temps);
            dt[i] = pickf(rng, &[f32::NAN, -0.5, 1e-39]);
        }
    }
    c.spoiled[i] = true;
}

/// A case's arrays on the device, each its own allocation of exactly its extent.
struct Arrays {
    target: CudaSlice<u8>,
    draft: CudaSlice<u8>,
    tokens: CudaSlice<i32>,
    lens: CudaSlice<i32>,
    seeds: CudaSlice<u64>,
    offsets: CudaSlice<u64>,
    out_tokens: CudaSlice<i32>,
    emitted: CudaSlice<i32>,
    accepted: CudaSlice<i32>,
    status: CudaSlice<i32>,
    temperature: CudaSlice<f32>,
    draft_temperature: Option<CudaSlice<f32>>,
    truncations: [Option<DeviceTruncations>; 2],
}

/// One model's truncation arrays on the device.
type DeviceTruncations = (CudaSlice<i32>, CudaSlice<f32>, CudaSlice<f32>);

/// The offsets every call starts from, to tell whether a refused call launched anything.
const START_OFFSET: u64 = 7;

/// `c`'s logits (`lead` elements, then the extent its shape and strides give) encoded as its
/// dtype: the target's vary along a row; the draft's are one value, so that every token is a
/// largest logit and survives any truncation (always drawable, by any drafter).
fn logits(c: &Case, rows: usize, (bs, rs): (i64, i64), target: bool) -> Vec<u8> {
    let (b, v) = (c.args.batch as usize, c.args.vocab as usize);
    let len = c.lead + (b - 1) * bs as usize + (rows - 1) * rs as usize + v;
    let value = |i: usize| {
        if target {
            ((i * 37 % 11) as f64 - 5.0) * 0.3
        } else {
            0.5
        }
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

/// Puts `c`'s arrays on the device and points its arguments at them.
fn upload(c: &mut Case, stream: &Arc<CudaStream>) -> Arrays {
    let (b, n) = (c.args.batch as usize, c.args.max_draft as usize);
    let a = &c.args;
    let truncation = |t: &Option<Truncations>| {
        t.as_ref()
            .map(|(k, p, m)| (up(stream, k), up(stream, p), up(stream, m)))
    };
    let arrays = Arrays {
        target: up(
            stream,
            &logits(c, n + 1, (a.target_batch_stride, a.target_row_stride), true),
        ),
        draft: up(
            stream,
            &logits(c, n, (a.draft_batch_stride, a.draft_row_stride), false),
        ),
        tokens: up(stream, &c.tokens),
        lens: up(stream, &c.lens),
        seeds: up(stream, &c.seeds),
        offsets: up(stream, &vec![START_OFFSET; b]),
        out_tokens: up(stream, &vec![0i32; b * (n + 1)]),
        emitted: up(stream, &vec![0i32; b]),
        accepted: up(stream, &vec![0i32; b]),
        status: up(stream, &vec![0i32; b]),
        temperature: up(stream, &c.temps),
        draft_temperature: c.draft_temps.as_ref().map(|d| up(stream, d)),
        truncations: [truncation(&c.truncations[0]), truncation(&c.truncations[1])],
    };
    // The guard of each address records the use on the stream; the call runs on that stream.
    let ptr = |d: (u64, cudarc::driver::SyncOnDrop<'_>)| d.0;
    let elem = Dtype::ALL[c.args.dtype as usize].size() as u64;
    let lead = c.lead as u64 * elem;
    let a = &mut c.args;
    a.target_logits = (ptr(arrays.target.device_ptr(stream)) + lead) as *const c_void;
    a.draft_logits = (ptr(arrays.draft.device_ptr(stream)) + lead) as *const c_void;
    a.draft_tokens = ptr(arrays.tokens.device_ptr(stream)) as *const i32;
    a.draft_lens = ptr(arrays.lens.device_ptr(stream)) as *const i32;
    a.seeds = ptr(arrays.seeds.device_ptr(stream)) as *const u64;
    a.offsets = ptr(arrays.offsets.device_ptr(stream)) as *mut u64;
    a.out_tokens = ptr(arrays.out_tokens.device_ptr(stream)) as *mut i32;
    a.out_num_emitted = ptr(arrays.emitted.device_ptr(stream)) as *mut i32;
    a.out_num_accepted = ptr(arrays.accepted.device_ptr(stream)) as *mut i32;
    a.out_status = ptr(arrays.status.device_ptr(stream)) as *mut i32;
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
    let carries_truncation = c.carries(OLD_SIZE);
    let carries_draft_temperature = c.carries(WHOLE);
    let pick = |rng: &mut StdRng, values: &[i32]| values[rng.random_range(0..values.len())];
    let a = &mut c.args;
    let misaligned = |p: usize, by: usize| p + by;
    let kind = rng.random_range(0..20);
    c.spoils.push(format!("host field {kind}"));
    let expect: &[u32] = match kind {
        0 => {
            a.target_logits = std::ptr::null();
            &[ASPS_ERR_NULL_POINTER]
        }
        1 => {
            a.out_status = std::ptr::null_mut();
            &[ASPS_ERR_NULL_POINTER]
        }
        2 => {
            a.sampling.temperature = std::ptr::null();
            &[ASPS_ERR_NULL_POINTER]
        }
        3 => {
            a.seeds = misaligned(a.seeds as usize, 4) as *const u64;
            &[ASPS_ERR_MISALIGNED]
        }
        4 => {
            // A read array on a written one's first element.
            if carries_truncation {
                a.sampling.target.min_p = a.out_tokens as *const f32;
            } else {
                a.sampling.temperature = a.out_tokens as *const f32;
            }
            &[ASPS_ERR_OVERLAP]
        }
        5 => {
            a.out_num_accepted = a.out_num_emitted;
            &[ASPS_ERR_OVERLAP]
        }
        6 => {
            a.offsets = a.seeds as *mut u64;
            &[ASPS_ERR_OVERLAP]
        }
        7 => {
            a.batch = pick(rng, &[0, -1, BMAX as i32 + 1, i32::MAX]);
            // A larger batch's extents may reach past the arrays, onto one another.
            match a.batch {
                0 | -1 => &[ASPS_ERR_SHAPE],
                i32::MAX => &[ASPS_ERR_TOO_LARGE],
                _ => &[ASPS_ERR_CAPACITY, ASPS_ERR_OVERLAP],
            }
        }
        8 => {
            a.max_draft = pick(rng, &[0, -3, NMAX as i32 + 1, 1 << 24]);
            match a.max_draft {
                0 | -3 => &[ASPS_ERR_SHAPE],
                x if x == 1 << 24 => &[ASPS_ERR_TOO_LARGE],
                _ => &[ASPS_ERR_CAPACITY, ASPS_ERR_OVERLAP],
            }
        }
        9 => {
            a.vocab = pick(rng, &[0, -1, MAX_VOCAB as i32 + 1, i32::MAX]);
            if a.vocab <= 0 {
                &[ASPS_ERR_SHAPE]
            } else {
                &[ASPS_ERR_TOO_LARGE]
            }
        }
        10 => {
            a.target_row_stride = [-1, i64::from(a.vocab) - 1, i64::MIN][rng.random_range(0..3)];
            &[ASPS_ERR_SHAPE]
        }
        11 => {
            // Extents past 2^63 elements. (A stride short of that, on a small buffer, breaks
            // the caller's contract: the host cannot see an allocation's size.)
            a.batch = a.batch.max(2);
            a.draft_batch_stride = i64::MAX;
            &[ASPS_ERR_TOO_LARGE]
        }
        12 => {
            a.method = pick(rng, &[-1, 3, i32::MAX]);
            &[ASPS_ERR_INVALID_ARGUMENT]
        }
        13 => {
            a.dtype = pick(rng, &[-1, 3, 99]);
            &[ASPS_ERR_INVALID_ARGUMENT]
        }
        14 => {
            // Misaligned for every element type (2 or 4 bytes).
            a.target_logits = misaligned(a.target_logits as usize, 1) as *const c_void;
            &[ASPS_ERR_MISALIGNED]
        }
        15 if carries_draft_temperature => {
            a.sampling.draft_temperature = misaligned(a.seeds as usize, 2) as *const f32;
            &[ASPS_ERR_MISALIGNED]
        }
        16 if carries_truncation => {
            a.sampling.draft.top_k = misaligned(a.draft_lens as usize, 1) as *const i32;
            &[ASPS_ERR_MISALIGNED]
        }
        17 => {
            a.draft_tokens = std::ptr::null();
            &[ASPS_ERR_NULL_POINTER]
        }
        18 => {
            a.out_tokens = a.draft_tokens as *mut i32;
            &[ASPS_ERR_OVERLAP]
        }
        _ => {
            // A struct size no header has: through the C ABI, one out of range, cutting a
            // field, or setting a field past this library's struct; through the raw front,
            // anything but the whole struct.
            match &mut c.c_struct {
                Some(s) => {
                    *s = [
                        (0, 0),
                        (4, 0),
                        (VERIFY_ARGS_MIN_SIZE - 8, 0),
                        (VERIFY_ARGS_MIN_SIZE + 4, 0),
                        (WHOLE - 4, 0),
                        (VERIFY_ARGS_MAX_SIZE + 8, 0),
                        (WHOLE + 8, 1),
                    ][rng.random_range(0..7)]
                }
                None => {
                    a.struct_size =
                        [0, 8, WHOLE as u32 - 8, WHOLE as u32 + 8][rng.random_range(0..4)]
                }
            }
            &[ASPS_ERR_INVALID_ARGUMENT]
        }
    };
    c.refused_with = Some(expect.to_vec());
}

/// Runs `c` through its front; the C status it gave (the raw front's error as `status_of`
/// maps it).
fn call(c: &Case, verifier: &mut Verifier, handle: *mut AspsVerifier, stream: &CudaStream) -> u32 {
    let status = match c.c_struct {
        Some((size, tail)) => {
            // The caller's struct of `size` bytes: the first bytes of the whole one, zeros
            // after, `tail` in its last byte past this library's struct, struct_size in front.
            let mut words = vec![0u64; size.max(WHOLE).div_ceil(8)];
            let bytes = words.as_mut_ptr().cast::<u8>();
            // SAFETY: `words` holds max(size, WHOLE) >= 4 bytes; plain old data.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&raw const c.args).cast::<u8>(),
                    bytes,
                    size.min(WHOLE),
                );
                if size > WHOLE {
                    *bytes.add(size - 1) = tail;
                }
                bytes.cast::<u32>().write(size as u32);
            }
            // SAFETY: a live handle; the struct's `size` bytes are readable (the buffer holds
            // at least that many); every pointer the checks let through is one of the case's
            // allocations, covering the extent of its shape.
            unsafe { asps_verify(handle, words.as_ptr().cast(), std::ptr::null_mut()) }
        }
        None => {
            // SAFETY: as above, on the context's legacy stream.
            match unsafe { verifier.verify_raw(&c.args, stream.cu_stream()) } {
                Ok(()) => ASPS_OK as i32,
                Err(e) => status_of(&e),
            }
        }
    };
    status as u32
}

#[test]
fn bad_arguments_are_refused_or_reported_never_followed() {
    let Some(gpu) = gpu_or_skip("bad_arguments_are_refused_or_reported_never_followed") else {
        return;
    };
    let cases: usize = std::env::var("ASPS_FUZZ_CASES").map_or(3000, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("ASPS_FUZZ_SEED").map_or(2026, |v| v.parse().unwrap());
    let stream = gpu.context().default_stream();
    let mut verifier = Verifier::new(&gpu, &stream, BMAX, NMAX).unwrap();
    let mut handle: *mut AspsVerifier = std::ptr::null_mut();
    // SAFETY: writes one handle.
    assert_eq!(
        unsafe { asps_verifier_create(0, BMAX as i32, NMAX as i32, &mut handle) },
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
        let (b, n) = (c.args.batch as usize, c.args.max_draft as usize);
        let status = stream.clone_dtoh(&arrays.status).unwrap();
        let emitted = stream.clone_dtoh(&arrays.emitted).unwrap();
        let accepted = stream.clone_dtoh(&arrays.accepted).unwrap();
        let out = stream.clone_dtoh(&arrays.out_tokens).unwrap();
        for i in 0..b {
            let s = RequestStatus::from_code(status[i]);
            assert_eq!(offsets[i], START_OFFSET + 1, "{what}: request {i}'s offset");
            if c.spoiled[i] {
                spoiled_requests += 1;
                assert_ne!(s, RequestStatus::Ok, "{what}: spoiled request {i} verified");
                assert!(!matches!(s, RequestStatus::Unknown(_)), "{what}: {s:?}");
                assert_eq!((emitted[i], accepted[i]), (0, 0), "{what}: request {i}");
                continue;
            }
            assert_eq!(s, RequestStatus::Ok, "{what}: clean request {i}");
            let len = c.lens[i];
            assert!(
                (0..=len).contains(&accepted[i]) && emitted[i] == accepted[i] + 1,
                "{what}: request {i} kept {} and emitted {} of a draft of {len}",
                accepted[i],
                emitted[i]
            );
            for (j, &t) in out[i * (n + 1)..][..n + 1].iter().enumerate() {
                if j < emitted[i] as usize {
                    assert!((0..c.args.vocab).contains(&t), "{what}: token {t}");
                } else {
                    assert_eq!(t, -1, "{what}: padding");
                }
            }
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
    // SAFETY: the handle from asps_verifier_create, its work finished (the reads above
    // synchronised the stream).
    assert_eq!(unsafe { asps_verifier_destroy(handle) }, ASPS_OK as i32);
}
