//! Tree verification through the fronts on a GPU (a real one, or the emulated device of
//! tests/emu: `tests/emu/gpu cargo test --test gpu_tree`): the safe front, the raw front and
//! the C ABI against the reference's tree sampler, request for request, over ragged batches of
//! greedy, deterministic and sampled trees (TV and RRS, both sibling laws), f32 and bf16;
//! calls without draft logits; and the checks that refuse a call before launching.

use std::sync::Arc;

use asps::capi::bindings::ASPS_OK;
use asps::capi::{asps_tree_verifier_create, asps_tree_verifier_destroy, asps_tree_verify};
use asps::cuda::{
    BatchLogits, RequestStatus, SamplingInputs, TreeInputs, TreeOutputs, TreeVerifier,
    TruncationInputs,
};
use asps::reference::TreeRule;
use asps::{Error, Logit};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr};
use half::bf16;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[path = "common/batch.rs"]
mod batch;
mod common;
#[path = "common/gpu.rs"]
mod gpu;

use common::tree::*;
use gpu::gpu_or_skip;

/// The device copies of a packed batch.
struct DeviceTrees<T> {
    logits: CudaSlice<T>,
    draft: CudaSlice<T>,
    num_nodes: CudaSlice<i32>,
    parents: CudaSlice<i32>,
    tokens: CudaSlice<i32>,
    laws: CudaSlice<i32>,
    temps: CudaSlice<f32>,
    draft_temps: CudaSlice<f32>,
    truncation: [(CudaSlice<i32>, CudaSlice<f32>, CudaSlice<f32>); 2],
    seeds: CudaSlice<u64>,
    offsets: CudaSlice<u64>,
}

impl<T: Logit + DeviceRepr> DeviceTrees<T> {
    fn new(stream: &Arc<CudaStream>, p: &PackedTrees<T>) -> Self {
        let up_i32 = |v: &[i32]| stream.clone_htod(v).unwrap();
        let up_f32 = |v: &[f32]| stream.clone_htod(v).unwrap();
        DeviceTrees {
            logits: stream.clone_htod(&p.logits).unwrap(),
            // One element where a call has no draft rows (one node slot): an allocation.
            draft: if p.draft.is_empty() {
                stream.clone_htod(&[T::from_f64(0.0)]).unwrap()
            } else {
                stream.clone_htod(&p.draft).unwrap()
            },
            num_nodes: up_i32(&p.num_nodes),
            parents: up_i32(&p.parents),
            tokens: up_i32(&p.tokens),
            laws: up_i32(&p.laws),
            temps: up_f32(&p.temps),
            draft_temps: up_f32(&p.draft_temps),
            truncation: std::array::from_fn(|m| {
                (
                    up_i32(&p.top_k[m]),
                    up_f32(&p.top_p[m]),
                    up_f32(&p.min_p[m]),
                )
            }),
            seeds: stream.clone_htod(&p.seeds).unwrap(),
            offsets: stream.clone_htod(&p.offsets).unwrap(),
        }
    }

    /// The safe front's inputs over these arrays; `with_draft` false gives no draft logits.
    fn inputs(&self, p: &PackedTrees<T>, rule: TreeRule, with_draft: bool) -> TreeInputs<'_, T> {
        let (nodes, v) = (p.max_nodes, p.vocab);
        let truncation = |m: usize| TruncationInputs {
            top_k: Some(self.truncation[m].0.as_view()),
            top_p: Some(self.truncation[m].1.as_view()),
            min_p: Some(self.truncation[m].2.as_view()),
        };
        TreeInputs {
            rule,
            batch: p.batch,
            max_nodes: nodes,
            vocab: v,
            target: BatchLogits::packed(self.logits.as_view(), nodes, v),
            draft: with_draft.then(|| BatchLogits::packed(self.draft.as_view(), nodes - 1, v)),
            num_nodes: self.num_nodes.as_view(),
            parents: self.parents.as_view(),
            tokens: self.tokens.as_view(),
            sibling_laws: self.laws.as_view(),
            seeds: self.seeds.as_view(),
            sampling: SamplingInputs {
                temperature: self.temps.as_view(),
                target: truncation(0),
                draft: truncation(1),
                draft_temperature: Some(self.draft_temps.as_view()),
            },
        }
    }
}

fn rule_of(code: i32) -> TreeRule {
    if code == 0 {
        TreeRule::Tv
    } else {
        TreeRule::Rrs
    }
}

/// Runs `requests` through the safe front; returns each request's verdict and offset.
fn safe_front<T: Logit + DeviceRepr>(
    verifier: &mut TreeVerifier,
    requests: &[Request<T>],
    vocab: usize,
    max_nodes: usize,
    rule: i32,
    with_draft: bool,
) -> Vec<(Verdict, u64)> {
    let stream = verifier.stream().clone();
    let packed = PackedTrees::new(requests, vocab, max_nodes);
    let d = DeviceTrees::new(&stream, &packed);
    let mut out = TreeOutputs::new(&stream, verifier.max_batch()).unwrap();
    let mut offsets = d.offsets.clone();
    let inputs = d.inputs(&packed, rule_of(rule), with_draft);
    verifier.verify(&inputs, &mut offsets, &mut out).unwrap();
    let offsets = stream.clone_dtoh(&offsets).unwrap();
    out.read(&stream)
        .unwrap()
        .iter()
        .zip(offsets)
        .map(|(t, off)| {
            let ok = t.status == RequestStatus::Ok;
            let v = Verdict {
                node: if ok { t.node as i32 } else { -1 },
                token: if ok { t.token as i32 } else { -1 },
                emitted: t.emitted as i32,
                status: status_code(t.status),
            };
            (v, off)
        })
        .collect()
}

fn status_code(s: RequestStatus) -> i32 {
    (0..=10)
        .find(|&c| RequestStatus::from_code(c) == s)
        .expect("a known status")
}

fn check<T: Logit>(requests: &[Request<T>], got: &[(Verdict, u64)], rule: i32, what: &str) {
    for (i, (r, (verdict, offset))) in requests.iter().zip(got).enumerate() {
        let want = if r.sibling == DETERMINISTIC || r.temperature == 0.0 {
            reference(r)
        } else {
            reference_sampled(r, rule_of(rule))
        };
        assert_eq!(*verdict, want, "{what}, request {i}: tree {:?}", r.tree);
        assert_eq!(*offset, r.offset + 1, "{what}, request {i}'s offset");
    }
}

/// Ragged batches mixing greedy and deterministic trees (up to 64 nodes) with trees drawn from
/// draft rows (both laws), under TV and RRS, f32 and bf16: the reference's outcome for every
/// request, through the safe front.
#[test]
fn the_safe_front_matches_the_reference() {
    let Some(gpu) = gpu_or_skip("the_safe_front_matches_the_reference") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let vocab = if gpu.emulated { 300 } else { 32_000 };
    let mut verifier = TreeVerifier::new(&gpu, &stream, 32, TREE_SLOTS).unwrap();
    fn batch<T: Logit>(rng: &mut StdRng, vocab: usize) -> Vec<Request<T>> {
        let mut r = random_requests::<T>(rng, 8, vocab);
        r.retain(|r| r.tree.parent.len() <= TREE_SLOTS);
        r.extend(sampled_requests::<T>(
            rng,
            6,
            vocab,
            WITHOUT_REPLACEMENT,
            1..14,
        ));
        r.extend(sampled_requests::<T>(
            rng,
            6,
            vocab,
            WITH_REPLACEMENT,
            1..14,
        ));
        r
    }
    let mut rng = StdRng::seed_from_u64(41);
    let mut checked = 0;
    for rule in [0, 1] {
        let requests = batch::<f32>(&mut rng, vocab);
        let got = safe_front(&mut verifier, &requests, vocab, TREE_SLOTS, rule, true);
        check(&requests, &got, rule, &format!("f32, rule {rule}"));
        let requests = batch::<bf16>(&mut rng, vocab);
        let got = safe_front(&mut verifier, &requests, vocab, TREE_SLOTS, rule, true);
        check(&requests, &got, rule, &format!("bf16, rule {rule}"));
        checked += 2;
    }
    println!("{checked} batches match the reference");
}

/// Node slots per request in these tests (trees of up to 19 nodes; random_requests' trees of
/// 64 nodes are left out to keep the emulated device quick).
const TREE_SLOTS: usize = 20;

/// Without draft logits, deterministic and greedy trees verify as with them, and trees drawn
/// from draft rows get ASPS_REQUEST_BAD_TREE: their rows are not there to read.
#[test]
fn a_call_without_draft_logits_verifies_deterministic_trees_only() {
    let Some(gpu) = gpu_or_skip("a_call_without_draft_logits_verifies_deterministic_trees_only")
    else {
        return;
    };
    let stream = gpu.context().default_stream();
    let vocab = 200;
    let mut verifier = TreeVerifier::new(&gpu, &stream, 16, TREE_SLOTS).unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let mut requests = random_requests::<f32>(&mut rng, 8, vocab);
    requests.retain(|r| r.tree.parent.len() <= TREE_SLOTS);
    let deterministic = requests.len();
    requests.extend(sampled_requests::<f32>(
        &mut rng,
        4,
        vocab,
        WITHOUT_REPLACEMENT,
        2..8,
    ));
    let got = safe_front(&mut verifier, &requests, vocab, TREE_SLOTS, 0, false);
    check(
        &requests[..deterministic],
        &got[..deterministic],
        0,
        "no draft",
    );
    for (verdict, _) in &got[deterministic..] {
        assert_eq!(verdict.status, STATUS_BAD_TREE);
        assert_eq!((verdict.node, verdict.token, verdict.emitted), (-1, -1, 0));
    }
}

/// The raw front and the C ABI take one call (device addresses in an `AspsTreeVerifyArgs`):
/// the raw front draws the reference's outcomes, the C ABI the same; the C ABI refuses a call
/// over the verifier's capacity before launching.
#[test]
fn the_raw_front_and_the_c_abi_match_the_reference() {
    let Some(gpu) = gpu_or_skip("the_raw_front_and_the_c_abi_match_the_reference") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let vocab = 200;
    let mut rng = StdRng::seed_from_u64(43);
    let requests = sampled_requests::<f32>(&mut rng, 6, vocab, WITHOUT_REPLACEMENT, 1..10);
    let mut packed = PackedTrees::new(&requests, vocab, 10);
    let d = DeviceTrees::new(&stream, &packed);
    let mut outs: [CudaSlice<i32>; 4] = std::array::from_fn(|_| stream.alloc_zeros(6).unwrap());
    let offsets = d.offsets.clone();
    let addr = |s: &CudaSlice<i32>| s.device_ptr(&stream).0;
    // The host call's shape and strides, with device addresses.
    let mut args = packed.args(1);
    args.target_logits = d.logits.device_ptr(&stream).0 as *const _;
    args.draft_logits = d.draft.device_ptr(&stream).0 as *const _;
    args.num_nodes = addr(&d.num_nodes) as *const i32;
    args.parents = addr(&d.parents) as *const i32;
    args.tokens = addr(&d.tokens) as *const i32;
    args.sibling_laws = addr(&d.laws) as *const i32;
    args.seeds = d.seeds.device_ptr(&stream).0 as *const u64;
    args.offsets = offsets.device_ptr(&stream).0 as *mut u64;
    args.out_node = addr(&outs[0]) as *mut i32;
    args.out_token = addr(&outs[1]) as *mut i32;
    args.out_num_emitted = addr(&outs[2]) as *mut i32;
    args.out_status = addr(&outs[3]) as *mut i32;
    args.sampling.temperature = addr_f32(&d.temps, &stream);
    args.sampling.draft_temperature = addr_f32(&d.draft_temps, &stream);
    for (m, t) in [&mut args.sampling.target, &mut args.sampling.draft]
        .into_iter()
        .enumerate()
    {
        t.top_k = addr(&d.truncation[m].0) as *const i32;
        t.top_p = addr_f32(&d.truncation[m].1, &stream);
        t.min_p = addr_f32(&d.truncation[m].2, &stream);
    }
    let read = |outs: &[CudaSlice<i32>; 4]| -> Vec<(Verdict, u64)> {
        let o: Vec<Vec<i32>> = outs.iter().map(|s| stream.clone_dtoh(s).unwrap()).collect();
        let off = stream.clone_dtoh(&offsets).unwrap();
        (0..6)
            .map(|i| {
                let v = Verdict {
                    node: o[0][i],
                    token: o[1][i],
                    emitted: o[2][i],
                    status: o[3][i],
                };
                (v, off[i])
            })
            .collect()
    };
    // The raw front.
    let mut verifier = TreeVerifier::new(&gpu, &stream, 8, 10).unwrap();
    // SAFETY: every pointer is a live device buffer of the extent the call reads or writes,
    // kept until the results are read back; the default stream orders the work.
    unsafe { verifier.verify_raw(&args, stream.cu_stream()) }.unwrap();
    let raw = read(&outs);
    check(&requests, &raw, 1, "raw front");
    // The C ABI, from the same offsets, into outputs reset to a value no call writes.
    for out in outs.iter_mut() {
        stream.memcpy_htod(&[-7i32; 6], out).unwrap();
    }
    let offsets_again = stream.clone_htod(&packed.offsets).unwrap();
    args.offsets = offsets_again.device_ptr(&stream).0 as *mut u64;
    let mut handle = std::ptr::null_mut();
    // SAFETY: `handle` is writable; the verifier is destroyed below after the work finished.
    unsafe {
        assert_eq!(
            asps_tree_verifier_create(0, 8, 10, &mut handle),
            ASPS_OK as i32
        );
        assert_eq!(
            asps_tree_verify(handle, &args, stream.cu_stream().cast()),
            ASPS_OK as i32
        );
    }
    let c = read(&outs);
    let c_offsets = stream.clone_dtoh(&offsets_again).unwrap();
    for (i, ((rv, _), (cv, _))) in raw.iter().zip(&c).enumerate() {
        assert_eq!(rv, cv, "request {i}: the C ABI against the raw front");
        assert_eq!(c_offsets[i], packed.offsets[i] + 1);
    }
    // Over the capacity: 6 requests of 10 node slots into a verifier of 4.
    let mut small = std::ptr::null_mut();
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            asps_tree_verifier_create(0, 8, 4, &mut small),
            ASPS_OK as i32
        );
        assert_eq!(
            asps_tree_verify(small, &args, stream.cu_stream().cast()),
            asps::capi::bindings::ASPS_ERR_CAPACITY as i32
        );
        stream.synchronize().unwrap();
        assert_eq!(asps_tree_verifier_destroy(handle), ASPS_OK as i32);
        assert_eq!(asps_tree_verifier_destroy(small), ASPS_OK as i32);
    }
}

fn addr_f32(s: &CudaSlice<f32>, stream: &Arc<CudaStream>) -> *const f32 {
    s.device_ptr(stream).0 as *const f32
}

/// The safe front refuses, before launching, buffers too short for the call and calls past
/// the verifier's capacity.
#[test]
fn the_safe_front_checks_lengths_and_capacity() {
    let Some(gpu) = gpu_or_skip("the_safe_front_checks_lengths_and_capacity") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let vocab = 100;
    let mut rng = StdRng::seed_from_u64(44);
    let requests = random_requests::<f32>(&mut rng, 4, vocab)
        .into_iter()
        .filter(|r| r.tree.parent.len() <= 8)
        .collect::<Vec<_>>();
    let packed = PackedTrees::new(&requests, vocab, 8);
    let d = DeviceTrees::new(&stream, &packed);
    let mut out = TreeOutputs::new(&stream, 8).unwrap();
    let mut offsets = d.offsets.clone();
    let mut verifier = TreeVerifier::new(&gpu, &stream, 8, 8).unwrap();
    let mut inputs = d.inputs(&packed, TreeRule::Tv, true);
    // Target logits one element short.
    let short = d.logits.slice(..d.logits.len() - 1);
    inputs.target = BatchLogits::packed(short, 8, vocab);
    assert!(matches!(
        verifier.verify(&inputs, &mut offsets, &mut out),
        Err(Error::Shape(_))
    ));
    // Parents for one request fewer.
    let mut inputs = d.inputs(&packed, TreeRule::Tv, true);
    inputs.parents = d.parents.slice(..8 * (packed.batch - 1));
    assert!(matches!(
        verifier.verify(&inputs, &mut offsets, &mut out),
        Err(Error::Shape(_))
    ));
    // Draft logits one element short of their [B, max_nodes - 1, V] extent.
    let mut inputs = d.inputs(&packed, TreeRule::Tv, true);
    let short = d.draft.slice(..d.draft.len() - 1);
    inputs.draft = Some(BatchLogits::packed(short, 7, vocab));
    assert!(matches!(
        verifier.verify(&inputs, &mut offsets, &mut out),
        Err(Error::Shape(_))
    ));
    // More node slots than the verifier holds.
    let mut small = TreeVerifier::new(&gpu, &stream, 8, 4).unwrap();
    let inputs = d.inputs(&packed, TreeRule::Tv, true);
    assert!(matches!(
        small.verify(&inputs, &mut offsets, &mut out),
        Err(Error::Capacity(_))
    ));
    // And the whole call passes.
    verifier.verify(&inputs, &mut offsets, &mut out).unwrap();
    let got = out.read(&stream).unwrap();
    assert_eq!(got.len(), packed.batch);
    assert!(got.iter().all(|t| t.status == RequestStatus::Ok));
    // One node slot: no draft row can be read, so the draft buffer (one element) is held to no
    // extent, and each lone root drawn from draft rows emits one token from its target row.
    let roots = sampled_requests::<f32>(&mut rng, 3, vocab, WITHOUT_REPLACEMENT, 1..2);
    let packed = PackedTrees::new(&roots, vocab, 1);
    let d = DeviceTrees::new(&stream, &packed);
    let inputs = d.inputs(&packed, TreeRule::Tv, true);
    let mut offsets = d.offsets.clone();
    verifier.verify(&inputs, &mut offsets, &mut out).unwrap();
    for t in out.read(&stream).unwrap() {
        assert_eq!((t.status, t.node, t.emitted), (RequestStatus::Ok, 0, 1));
    }
}
