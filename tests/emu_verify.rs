//! The verification kernels' own source (kernels/verify.cu), compiled for the host with the CPU
//! emulator of tests/emu and run on host memory, against the CPU reference. This runs
//! everywhere, CI included: it checks the kernels' logic (indexing, reductions, row and request
//! statuses, the noise keys, the ASpS / SpS / greedy decisions, ragged lengths, strides) where
//! no GPU is available. Float functions are the host's, not the GPU's, so ties may split
//! differently; as on the GPU, every mismatch must be a near-tie. The emulator says nothing
//! about speed, the GPU memory model or the GPU's float intrinsics.

#[path = "common/batch.rs"]
mod batch;

use std::ffi::{CString, c_char, c_void};

use asps::capi::{AspsSampling, AspsTruncation, AspsVerifyArgs};
use asps::cuda::testing::{AspsVerifyParams, Cells, Elem, PlanOptions, build_workspace, plan};
use asps::cuda::{RequestStatus, ResidualForm, VerifiedRequest};
use asps::reference::Truncation;
use asps::{Logit, Method};
use batch::{
    Batch, bad_values_batch, check_against_reference, check_bad_values, check_extreme_temperatures,
    extreme_temperature_batch, mixed_draft_temperatures, mixed_truncations, random_batch,
    random_batch_with_noise, redraw_drafts,
};
use half::{bf16, f16};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NEAR_TIE: f64 = 1e-3;

unsafe extern "C" {
    /// Runs one launch of a verification kernel, by name (tests/emu/kernel_emu.cpp); 0 on
    /// success.
    fn asps_emu_verify_launch(
        kernel: *const c_char,
        params: *const AspsVerifyParams,
        grid: u32,
        block: u32,
    ) -> i32;
}

fn addr<T>(v: &[T]) -> u64 {
    v.as_ptr() as u64
}

/// A batch's optional arrays as a call holds them: the address of `v`, or 0 without one.
fn optional<T>(v: &Option<Vec<T>>) -> u64 {
    v.as_ref().map_or(0, |v| addr(v))
}

/// Runs the emulated kernels over `h` as the verifier would (the launch plan of
/// src/cuda/verify/plan.rs, with rows read in about `parts` parts, whole with truncation arrays,
/// and the decide launch in `form`), with `block` threads per block; advances its offsets.
fn emulate_form<T: Logit>(
    h: &mut Batch<T>,
    method: Method,
    block: u32,
    parts: usize,
    form: ResidualForm,
) -> Vec<VerifiedRequest> {
    let (b, n) = (h.b, h.n);
    // Each model's truncation arrays as the call holds them; none without truncation.
    let model = |m: usize| -> Option<(Vec<i32>, Vec<f32>, Vec<f32>)> {
        let t: Vec<Truncation> = h.truncs.as_ref()?.iter().map(|t| [t.0, t.1][m]).collect();
        Some((
            t.iter().map(|t| t.top_k).collect(),
            t.iter().map(|t| t.top_p).collect(),
            t.iter().map(|t| t.min_p).collect(),
        ))
    };
    let truncation = [model(0), model(1)];
    let arrays = |m: usize| {
        truncation[m]
            .as_ref()
            .map_or(AspsTruncation::default(), |(k, p, mp)| AspsTruncation {
                top_k: k.as_ptr(),
                top_p: p.as_ptr(),
                min_p: mp.as_ptr(),
            })
    };
    let mut out_tokens = vec![0i32; b * (n + 1)];
    let mut counts: [Vec<i32>; 3] = std::array::from_fn(|_| vec![0; b]); // emitted, accepted, status
    let [emitted, accepted, status] = &mut counts;
    let args = AspsVerifyArgs {
        method: AspsVerifyArgs::method_code(method),
        dtype: AspsVerifyArgs::dtype_code(T::DTYPE),
        batch: b as i32,
        max_draft: n as i32,
        vocab: h.v as i32,
        target_logits: h.target.as_ptr() as *const c_void,
        target_batch_stride: ((n + 1) * h.v) as i64,
        target_row_stride: h.v as i64,
        draft_logits: h.draft.as_ptr() as *const c_void,
        draft_batch_stride: (n * h.v) as i64,
        draft_row_stride: h.v as i64,
        draft_tokens: h.tokens.as_ptr(),
        draft_lens: h.lens.as_ptr(),
        seeds: h.seeds.as_ptr(),
        offsets: h.offsets.as_mut_ptr(),
        out_tokens: out_tokens.as_mut_ptr(),
        out_num_emitted: emitted.as_mut_ptr(),
        out_num_accepted: accepted.as_mut_ptr(),
        out_status: status.as_mut_ptr(),
        sampling: AspsSampling {
            temperature: h.temps.as_ptr(),
            target: arrays(0),
            draft: arrays(1),
            draft_temperature: optional(&h.draft_temps) as *const f32,
        },
        ..AspsVerifyArgs::new()
    };
    let shape = args.check().expect("a valid call");
    // A call with truncation arrays reads its rows whole (the plan refuses a split).
    let options = PlanOptions {
        sms: 1,
        form: Some(form),
        parts: Some(if h.truncs.is_some() { 1 } else { parts }),
    };
    let mut plan = plan(&args, &shape, &options).unwrap();
    // The workspace, garbage as a real one holds: NaN floats and out-of-range integers.
    let mut buffers: Vec<Vec<u32>> = Vec::new();
    // The arrival counters start at zero, as the verifier allocates them.
    plan.params.ws = build_workspace(|cells, elem| {
        let len = match cells {
            Cells::Row | Cells::Counters => plan.row_cells,
            Cells::Part => plan.part_cells,
        };
        let garbage = match (cells, elem) {
            (Cells::Counters, _) => 0,
            (_, Elem::F32) => f32::NAN.to_bits(),
            (_, Elem::I32 | Elem::U32) => 0x7FA5_A5A5,
        };
        buffers.push(vec![garbage; len]);
        Ok(addr(buffers.last().unwrap()))
    })
    .unwrap();
    for launch in plan.launches() {
        let name = CString::new(launch.kernel.name(shape.dtype)).unwrap();
        // SAFETY: every pointer in the parameters is a live host buffer of the size the
        // kernels index (the plan's row and part cells, B counters and outputs, the logits,
        // tokens and sampling arrays of `h`), borrowed until the call returns.
        let rc = unsafe { asps_emu_verify_launch(name.as_ptr(), &plan.params, launch.grid, block) };
        assert_eq!(rc, 0, "{name:?}");
    }
    let [emitted, accepted, status] = &counts;
    (0..b)
        .map(|r| VerifiedRequest {
            status: RequestStatus::from_code(status[r]),
            accepted: accepted[r].max(0) as usize,
            tokens: out_tokens[r * (n + 1)..][..emitted[r].max(0) as usize]
                .iter()
                .map(|&t| t as u32)
                .collect(),
        })
        .collect()
}

/// The forms a call of `method` over `h` may take: every one, but the fused form for sampling
/// calls with truncation arrays, which the plan refuses (src/cuda/verify/plan.rs); a greedy
/// call ignores truncation, and fuses with truncation arrays too.
fn forms_for<T: Logit>(h: &Batch<T>, method: Method) -> Vec<ResidualForm> {
    ResidualForm::ALL
        .into_iter()
        .filter(|&f| h.truncs.is_none() || method == Method::Greedy || f != ResidualForm::Fused)
        .collect()
}

/// [`emulate_form`] in the parallel form, whole rows.
fn emulate<T: Logit>(h: &mut Batch<T>, method: Method, block: u32) -> Vec<VerifiedRequest> {
    emulate_form(h, method, block, 1, ResidualForm::Parallel)
}

/// All three rules in every form over one random batch, rows read in `split` parts; returns
/// (requests, near-tie mismatches).
fn compare<T: Logit>(seed: u64, (v, n, b, block, split): Shape) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = random_batch::<T>(&mut rng, b, n, v);
    let before = h.clone();
    let mut mismatches = 0;
    let mut call = 0;
    for form in ResidualForm::ALL {
        for method in Method::ALL {
            let got = emulate_form(&mut h, method, block, split, form);
            mismatches += check_against_reference(&before, method, call, &got, NEAR_TIE);
            call += 1;
        }
    }
    for (after, start) in h.offsets.iter().zip(&before.offsets) {
        assert_eq!(*after, start + call, "each call advances the offset by one");
    }
    (call as usize * b, mismatches)
}

/// (V, n, B, threads per block, parts per row).
type Shape = (usize, usize, usize, u32, usize);

#[test]
fn emulated_kernels_match_the_reference() {
    let (mut total, mut mismatches) = (0, 0);
    // Odd vocabularies exercise the vector loads' head and tail; 32-thread blocks a single-warp
    // reduction, 64, 96 and 512 several warps; split rows their merges (parts of 16 elements
    // up to 32 parts, the most the kernels take, and a short last part).
    let shapes: [Shape; 11] = [
        (16, 1, 5, 32, 1),
        (37, 3, 7, 64, 1),
        (37, 3, 7, 64, 2),
        (1000, 4, 3, 96, 1),
        (1000, 4, 3, 96, 7),
        (257, 16, 2, 64, 16),
        (4099, 2, 2, 64, 1),
        (4099, 2, 2, 64, 32),
        (4099, 3, 2, 512, 1), // the block size of the real launches
        (4099, 3, 2, 512, 5),
        (2048, 64, 1, 64, 2), // the longest draft the kernels take
    ];
    for (k, shape) in shapes.into_iter().enumerate() {
        let k = k as u64;
        for (t, m) in [
            compare::<f32>(100 + k, shape),
            compare::<f16>(200 + k, shape),
            compare::<bf16>(300 + k, shape),
        ] {
            total += t;
            mismatches += m;
        }
    }
    println!("emulated kernels: {mismatches} near-tie mismatches in {total} requests");
    assert!(
        mismatches * 100 <= total,
        "{mismatches} mismatches in {total} requests"
    );
}

/// ASpS's descent, where it matters: drafts far from the target (noise 8 on logits of range
/// 3), so that most calls reject some draft token and the outcome is drawn by the stop tests
/// from the top; 24 calls of 8 requests of n = 4 (offsets advancing), every form, against the
/// reference. (A stop test with half its gap, u (R + (1 - s) / 2) < R, fails here.)
#[test]
fn emulated_asps_descends_as_the_reference() {
    let mut rng = StdRng::seed_from_u64(16);
    let h = random_batch_with_noise::<f32>(&mut rng, 8, 4, 300, 8.0);
    let (mut total, mut mismatches, mut kept) = (0, 0, [0usize; 5]);
    for form in ResidualForm::ALL {
        let mut calls = h.clone();
        for call in 0..24 {
            let got = emulate_form(&mut calls, Method::Asps, 64, 2, form);
            mismatches += check_against_reference(&h, Method::Asps, call, &got, NEAR_TIE);
            total += got.len();
            for g in &got {
                kept[g.accepted] += 1;
            }
        }
    }
    println!("ASpS descent: kept counts {kept:?}; {mismatches} near-tie mismatches in {total}");
    // The descent stopped at several rows, not only at the full accept or the first row.
    assert!(kept[1] + kept[2] + kept[3] > total / 10, "{kept:?}");
    assert!(mismatches * 100 <= total, "{mismatches} in {total}");
}

#[test]
fn emulated_kernels_report_bad_values_per_request() {
    for split in [1, 3] {
        for form in ResidualForm::ALL {
            let (mut h, want) = bad_values_batch();
            check_bad_values(&emulate_form(&mut h, Method::Asps, 64, split, form), &want);
        }
    }
}

/// A row read in parts gives the same outcomes as read whole, and the lazy form the same as
/// the parallel one, for every rule, except where sums added in another order move a float
/// near-tie (none at these sizes and seeds). Over 4 calls per rule (offsets 0..4), so that
/// ASpS's outcomes include full accepts and stops at several rows.
#[test]
fn split_rows_and_both_forms_give_the_same_outcomes() {
    let mut rng = StdRng::seed_from_u64(15);
    let h = random_batch::<bf16>(&mut rng, 3, 4, 2000);
    for method in Method::ALL {
        let mut whole_calls = h.clone();
        for call in 0..4 {
            let start = whole_calls.clone();
            let whole = emulate(&mut whole_calls, method, 64);
            for split in [1, 2, 5, 32] {
                for form in ResidualForm::ALL {
                    assert_eq!(
                        emulate_form(&mut start.clone(), method, 64, split, form),
                        whole,
                        "{method:?}, call {call}, {split} parts, {form:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_emulated_request_does_not_depend_on_its_batch() {
    let mut rng = StdRng::seed_from_u64(10);
    let (b, n, v) = (4, 3, 300);
    let mut h = random_batch::<bf16>(&mut rng, b, n, v);
    h.draft_temps = Some(mixed_draft_temperatures(b));
    h.truncs = Some(mixed_truncations(b));
    redraw_drafts(&mut rng, &mut h);
    for method in [Method::Asps, Method::Sps] {
        let together = emulate(&mut h.clone(), method, 64);
        for (i, in_batch) in together.iter().enumerate() {
            let mut one = h.request(i);
            assert_eq!(
                &emulate(&mut one, method, 32)[0],
                in_batch,
                "{method:?} request {i}"
            );
        }
    }
}

/// Temperatures from 1e-38 to 3e38, 64 calls each: the kernels agree with the reference and never
/// keep a draft token whose acceptance probability is e^(-10/T) = 0. (At T = 1e-38 they once
/// did: the float log-ratio was -inf - -inf = NaN, which fminf dropped.)
#[test]
fn emulated_kernels_handle_extreme_temperatures() {
    fn check<T: Logit>(method: Method) {
        let h = extreme_temperature_batch::<T>(11);
        let mut calls = h.clone();
        let results: Vec<_> = (0..64).map(|_| emulate(&mut calls, method, 32)).collect();
        check_extreme_temperatures(&h, method, &results);
    }
    for method in [Method::Asps, Method::Sps] {
        check::<f32>(method);
        check::<bf16>(method);
    }
}

/// Temperatures outside the domain are refused per request: below 4.2397e-39 (log2(e)/T
/// overflows; 1/T too below 2.9e-39) and above 8.5e37 (1/T subnormal, flushed to 0 under -ftz);
/// the neighbours on the accepted side verify.
#[test]
fn temperatures_outside_the_domain_are_refused() {
    let mut h = extreme_temperature_batch::<f32>(14);
    let cases = [
        (2.8e-39, false),
        (4.2396e-39, false),
        (4.2398e-39, true),
        (8.5e37, true),
        (8.6e37, false),
        (f32::MAX, false),
        (1.0, true),
    ];
    h.temps = cases.iter().map(|c| c.0).collect();
    for (g, (t, ok)) in emulate(&mut h, Method::Asps, 32).iter().zip(cases) {
        let want = if ok {
            RequestStatus::Ok
        } else {
            RequestStatus::BadTemperature
        };
        assert_eq!(g.status, want, "T = {t:e}");
    }
}

/// Runs every rule in every form over `h` (rows in about `parts` parts; call k with offsets + k)
/// against the reference; returns (requests, near-tie mismatches).
fn compare_forms<T: Logit>(h: &Batch<T>, parts: usize) -> (usize, usize) {
    let mut calls = h.clone();
    let (mut total, mut mismatches, mut call) = (0, 0, 0);
    for method in Method::ALL {
        for form in forms_for(h, method) {
            let got = emulate_form(&mut calls, method, 64, parts, form);
            mismatches += check_against_reference(h, method, call, &got, NEAR_TIE);
            total += got.len();
            call += 1;
        }
    }
    (total, mismatches)
}

/// The kernels with truncation, mixed within one batch (top-k, top-p, min-p, on target and
/// draft rows), all three rules, every form, split and whole rows, against the reference; a
/// mismatch must be a near-tie of a decision or of a threshold (tests/common/batch.rs).
#[test]
fn emulated_truncation_matches_the_reference() {
    let (mut total, mut mismatches) = (0, 0);
    for (seed, (v, n, b, split)) in [(2000, 3, 16, 1), (2000, 3, 16, 4), (4099, 2, 8, 3)]
        .into_iter()
        .enumerate()
    {
        let mut rng = StdRng::seed_from_u64(40 + seed as u64);
        let mut h = random_batch::<bf16>(&mut rng, b, n, v);
        h.truncs = Some(mixed_truncations(b));
        redraw_drafts(&mut rng, &mut h);
        let (t, m) = compare_forms(&h, split);
        total += t;
        mismatches += m;
    }
    println!("emulated truncation: {mismatches} near-tie mismatches in {total} requests");
    assert!(mismatches * 100 <= total, "{mismatches} in {total}");
}

/// The draft's own temperature (greedy, cooler, the target's, hotter: mixed within a batch),
/// with and without truncation, all three rules, every form, split and whole rows, f32 and
/// bf16, against the reference (at most 1% near-tie mismatches). A greedy drafter's draft
/// row is never read again after the row launch (its q is 0 off the draft token).
#[test]
fn emulated_draft_temperatures_match_the_reference() {
    fn case<T: Logit>(seed: u64, (v, n, b, split): (usize, usize, usize, usize)) -> [usize; 2] {
        let (mut total, mut mismatches) = (0, 0);
        for truncated in [false, true] {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut h = random_batch::<T>(&mut rng, b, n, v);
            h.draft_temps = Some(mixed_draft_temperatures(b));
            h.truncs = truncated.then(|| mixed_truncations(b));
            redraw_drafts(&mut rng, &mut h);
            let (t, m) = compare_forms(&h, split);
            total += t;
            mismatches += m;
        }
        [total, mismatches]
    }
    let (mut total, mut mismatches) = (0, 0);
    let shapes = [(2000, 3, 16, 1), (4099, 2, 8, 3), (300, 5, 12, 2)];
    for (k, shape) in shapes.into_iter().enumerate() {
        for [t, m] in [
            case::<f32>(90 + k as u64, shape),
            case::<bf16>(95 + k as u64, shape),
        ] {
            total += t;
            mismatches += m;
        }
    }
    println!("emulated draft temperatures: {mismatches} near-tie mismatches in {total} requests");
    assert!(mismatches * 100 <= total, "{mismatches} in {total}");
}

/// Truncation parameters out of their domain are a request status; a draft token outside its
/// own draft row's kept set is an impossible draft.
#[test]
fn emulated_truncation_statuses() {
    let mut rng = StdRng::seed_from_u64(50);
    let mut h = random_batch::<f32>(&mut rng, 6, 2, 300);
    h.temps = vec![1.0; 6];
    h.lens = vec![2; 6];
    let bad = [
        Truncation {
            top_k: -1,
            ..Truncation::OFF
        },
        Truncation {
            top_p: 0.0,
            ..Truncation::OFF
        },
        Truncation {
            top_p: f32::NAN,
            ..Truncation::OFF
        },
        Truncation {
            min_p: 1.0,
            ..Truncation::OFF
        },
    ];
    let mut truncs = vec![(Truncation::OFF, Truncation::OFF); 6];
    for (i, t) in bad.iter().enumerate() {
        truncs[i] = if i % 2 == 0 {
            (*t, Truncation::OFF)
        } else {
            (Truncation::OFF, *t)
        };
    }
    // Request 4: the draft keeps only its argmax; its first draft token is made another.
    truncs[4] = (
        Truncation::OFF,
        Truncation {
            top_k: 1,
            ..Truncation::OFF
        },
    );
    let row = &h.draft[4 * 2 * 300..][..300];
    let argmax = asps::reference::argmax(row.iter().map(|&x| f64::from(x))).unwrap();
    h.tokens[4 * 2] = ((argmax + 1) % 300) as i32;
    // Request 5: valid truncation, a token the draft keeps.
    truncs[5] = (
        Truncation {
            top_p: 0.9,
            ..Truncation::OFF
        },
        Truncation::OFF,
    );
    h.truncs = Some(truncs);
    // A greedy call ignores truncation but still reports bad parameters; the draft's top-k of
    // request 4 does not bind it (it asks only that the drafter did not mask the token).
    for (method, fourth) in [
        (Method::Asps, RequestStatus::ImpossibleDraftToken),
        (Method::Greedy, RequestStatus::Ok),
    ] {
        for form in forms_for(&h, method) {
            let got = emulate_form(&mut h.clone(), method, 64, 2, form);
            let statuses: Vec<_> = got.iter().map(|g| g.status).collect();
            assert_eq!(
                statuses,
                [
                    RequestStatus::BadTruncation,
                    RequestStatus::BadTruncation,
                    RequestStatus::BadTruncation,
                    RequestStatus::BadTruncation,
                    fourth,
                    RequestStatus::Ok,
                ],
                "{method:?} {form:?}"
            );
        }
    }
}
