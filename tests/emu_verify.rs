//! The verification kernels' own source (kernels/verify.cu), compiled for the host with the CPU
//! emulator of tests/emu and run on host memory, against the CPU reference. This runs
//! everywhere, CI included: it checks the kernels' logic (indexing, reductions, row and request
//! statuses, the noise keys, the ASpS / SpS / greedy decisions, ragged lengths, strides) where
//! no GPU is available. Float functions are the host's, not the GPU's, so ties may split
//! differently; as on the GPU, every mismatch must be a near-tie. The emulator says nothing
//! about speed, the GPU memory model or the GPU's float intrinsics.

#[path = "common/batch.rs"]
mod batch;

use asps::cuda::{RequestStatus, ResidualForm, VerifiedRequest, VerifyParams, row_parts};
use asps::reference::Truncation;
use asps::{Dtype, Logit, Method};
use batch::{
    Batch, RequestTruncation, bad_values_batch, check_against_reference,
    check_against_reference_truncated, check_bad_values, check_extreme_temperatures,
    extreme_temperature_batch, mixed_truncations, random_batch, random_batch_with_noise,
    redraw_truncated,
};
use half::{bf16, f16};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NEAR_TIE: f64 = 1e-3;

unsafe extern "C" {
    /// Runs the two verification kernels (tests/emu/kernel_emu.cpp); 0 on success.
    fn asps_emu_verify(dtype: i32, params: *const VerifyParams, block: u32) -> i32;
}

/// The kernels' workspace and outputs, on the host.
struct HostBuffers {
    // Part cells: t_pmax, t_psum, d_pmax, d_psum, race_pkey, res_part; row cells: t_gather,
    // d_gather.
    part_f32: [Vec<f32>; 6],
    row_f32: [Vec<f32>; 2],
    // Row cells: t_theta, t_trunc_ln, d_theta, d_trunc_ln.
    trunc_f32: [Vec<f32>; 4],
    // Part cells: t_parg, t_pflags, d_pflags, race_ptoken.
    part_i32: [Vec<i32>; 4],
    arrivals: Vec<u32>,
    out_tokens: Vec<i32>,
    counts: [Vec<i32>; 3], // emitted, accepted, status
}

fn addr<T>(v: &mut [T]) -> u64 {
    v.as_mut_ptr() as u64
}

/// Runs the emulated kernels over `h` with `block` threads per block, whole rows, the parallel
/// form; advances its offsets.
fn emulate<T: Logit>(h: &mut Batch<T>, method: Method, block: u32) -> Vec<VerifiedRequest> {
    emulate_split(h, method, block, 1)
}

/// [`emulate`] with each row read in about `split` parts, cut as the verifier cuts them
/// (`row_parts`: parts of a multiple of 16 elements, none empty).
fn emulate_split<T: Logit>(
    h: &mut Batch<T>,
    method: Method,
    block: u32,
    split: usize,
) -> Vec<VerifiedRequest> {
    emulate_form(h, method, block, split, ResidualForm::Parallel)
}

/// [`emulate_split`] with the decide launch in `form`.
fn emulate_form<T: Logit>(
    h: &mut Batch<T>,
    method: Method,
    block: u32,
    split: usize,
    form: ResidualForm,
) -> Vec<VerifiedRequest> {
    emulate_with(h, method, block, split, form, None)
}

/// [`emulate_form`] with each request's truncation (target's, draft's), if any.
fn emulate_with<T: Logit>(
    h: &mut Batch<T>,
    method: Method,
    block: u32,
    split: usize,
    form: ResidualForm,
    truncs: Option<&[RequestTruncation]>,
) -> Vec<VerifiedRequest> {
    let (b, n) = (h.b, h.n);
    // Per-request parameters as the device arrays hold them; empty when there are none.
    let pick = |f: fn(&RequestTruncation) -> Truncation| -> Vec<Truncation> {
        truncs.map_or(Vec::new(), |t| t.iter().map(f).collect())
    };
    let (tt, dt) = (pick(|t| t.0), pick(|t| t.1));
    let top_k = |t: &[Truncation]| t.iter().map(|t| t.top_k).collect::<Vec<i32>>();
    let top_p = |t: &[Truncation]| t.iter().map(|t| t.top_p).collect::<Vec<f32>>();
    let min_p = |t: &[Truncation]| t.iter().map(|t| t.min_p).collect::<Vec<f32>>();
    let (mut t_k, mut t_p, mut t_m) = (top_k(&tt), top_p(&tt), min_p(&tt));
    let (mut d_k, mut d_p, mut d_m) = (top_k(&dt), top_p(&dt), min_p(&dt));
    let opt = |v: &mut Vec<i32>| if v.is_empty() { 0 } else { addr(v) };
    let optf = |v: &mut Vec<f32>| if v.is_empty() { 0 } else { addr(v) };
    let (split, chunk) = row_parts(h.v, split);
    let (cells, parts) = (b * (n + 1), b * (n + 1) * split);
    // Garbage, as a real workspace holds: NaN and out-of-range integers.
    let mut m = HostBuffers {
        part_f32: std::array::from_fn(|_| vec![f32::NAN; parts]),
        row_f32: std::array::from_fn(|_| vec![f32::NAN; cells]),
        trunc_f32: std::array::from_fn(|_| vec![f32::NAN; cells]),
        part_i32: std::array::from_fn(|_| vec![0x7FA5_A5A5; parts]),
        arrivals: vec![0xA5A5_A5A5; b],
        out_tokens: vec![0; cells],
        counts: std::array::from_fn(|_| vec![0; b]),
    };
    let [t_pmax, t_psum, d_pmax, d_psum, race_pkey, res_part] = &mut m.part_f32;
    let [t_gather, d_gather] = &mut m.row_f32;
    let [t_theta, t_trunc_ln, d_theta, d_trunc_ln] = &mut m.trunc_f32;
    let [t_parg, t_pflags, d_pflags, race_ptoken] = &mut m.part_i32;
    let [emitted, accepted, status] = &mut m.counts;
    let params = VerifyParams {
        target: h.target.as_ptr() as u64,
        target_batch_stride: ((n + 1) * h.v) as i64,
        target_row_stride: h.v as i64,
        draft: h.draft.as_ptr() as u64,
        draft_batch_stride: (n * h.v) as i64,
        draft_row_stride: h.v as i64,
        draft_tokens: h.tokens.as_ptr() as u64,
        draft_lens: h.lens.as_ptr() as u64,
        temperatures: h.temps.as_ptr() as u64,
        seeds: h.seeds.as_ptr() as u64,
        offsets: addr(&mut h.offsets),
        out_tokens: addr(&mut m.out_tokens),
        out_num_emitted: addr(emitted),
        out_num_accepted: addr(accepted),
        out_status: addr(status),
        t_top_k: opt(&mut t_k),
        t_top_p: optf(&mut t_p),
        t_min_p: optf(&mut t_m),
        d_top_k: opt(&mut d_k),
        d_top_p: optf(&mut d_p),
        d_min_p: optf(&mut d_m),
        ws_t_pmax: addr(t_pmax),
        ws_t_psum: addr(t_psum),
        ws_t_parg: addr(t_parg),
        ws_t_pflags: addr(t_pflags),
        ws_d_pmax: addr(d_pmax),
        ws_d_psum: addr(d_psum),
        ws_d_pflags: addr(d_pflags),
        ws_t_gather: addr(t_gather),
        ws_d_gather: addr(d_gather),
        ws_t_theta: addr(t_theta),
        ws_t_trunc_ln: addr(t_trunc_ln),
        ws_d_theta: addr(d_theta),
        ws_d_trunc_ln: addr(d_trunc_ln),
        ws_race_pkey: addr(race_pkey),
        ws_race_ptoken: addr(race_ptoken),
        ws_res_part: addr(res_part),
        ws_arrivals: addr(&mut m.arrivals),
        batch: b as i32,
        max_draft: n as i32,
        vocab: h.v as i32,
        method: match method {
            Method::Asps => 0,
            Method::Sps => 1,
            Method::Greedy => 2,
        },
        split: split as i32,
        chunk: chunk as i32,
        form: match form {
            ResidualForm::Parallel => 0,
            ResidualForm::Lazy => 1,
        },
        reserved: 0,
    };
    let dtype = match T::DTYPE {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::BF16 => 2,
    };
    // SAFETY: every pointer in `params` is a live host buffer of the size the kernels index
    // (B * (n + 1) row cells, B * (n + 1) * split part cells, B counters and outputs, the
    // logits and tokens of `h`), borrowed until the call returns.
    assert_eq!(unsafe { asps_emu_verify(dtype, &params, block) }, 0);
    (0..b)
        .map(|r| VerifiedRequest {
            status: RequestStatus::from_code(status[r]),
            accepted: accepted[r].max(0) as usize,
            tokens: m.out_tokens[r * (n + 1)..][..emitted[r].max(0) as usize]
                .iter()
                .map(|&t| t as u32)
                .collect(),
        })
        .collect()
}

/// All three rules in both forms over one random batch, rows read in `split` parts; returns
/// (requests, near-tie mismatches).
fn compare<T: Logit>(seed: u64, (v, n, b, block, split): Shape) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = random_batch::<T>(&mut rng, b, n, v);
    let before = h.clone();
    let mut mismatches = 0;
    let mut call = 0;
    for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
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
/// from the top; 24 calls of 8 requests of n = 4 (offsets advancing), both forms, against the
/// reference. (A stop test with half its gap, u (R + (1 - s) / 2) < R, fails here.)
#[test]
fn emulated_asps_descends_as_the_reference() {
    let mut rng = StdRng::seed_from_u64(16);
    let h = random_batch_with_noise::<f32>(&mut rng, 8, 4, 300, 8.0);
    let (mut total, mut mismatches, mut kept) = (0, 0, [0usize; 5]);
    for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
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
        for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
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
                for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
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
    let h = random_batch::<bf16>(&mut rng, b, n, v);
    for method in [Method::Asps, Method::Sps] {
        let together = emulate(&mut h.clone(), method, 64);
        for (i, in_batch) in together.iter().enumerate() {
            let mut one = Batch {
                b: 1,
                target: h.target[i * (n + 1) * v..][..(n + 1) * v].to_vec(),
                draft: h.draft[i * n * v..][..n * v].to_vec(),
                tokens: h.tokens[i * n..][..n].to_vec(),
                lens: vec![h.lens[i]],
                temps: vec![h.temps[i]],
                seeds: vec![h.seeds[i]],
                offsets: vec![h.offsets[i]],
                ..h.clone()
            };
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

/// Temperatures whose inverse is not a normal float are refused per request: below 2.9e-39 (1/T
/// overflows) and above 8.5e37 (1/T subnormal, flushed to 0 under -ftz); the neighbours on the
/// accepted side verify.
#[test]
fn temperatures_whose_inverse_is_not_normal_are_refused() {
    let mut h = extreme_temperature_batch::<f32>(14);
    let cases = [
        (1e-45f32, false),
        (2.8e-39, false),
        (3e-39, true),
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

/// The kernels with truncation, mixed within one batch (top-k, top-p, min-p, on target and
/// draft rows), all three rules, both forms, split and whole rows, against the reference; a
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
        let truncs = mixed_truncations(b);
        redraw_truncated(&mut rng, &mut h, &truncs);
        let before = h.clone();
        let mut call = 0;
        for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
            for method in Method::ALL {
                let got = emulate_with(&mut h, method, 64, split, form, Some(&truncs));
                mismatches += check_against_reference_truncated(
                    &before, method, call, &got, NEAR_TIE, &truncs,
                );
                total += got.len();
                call += 1;
            }
        }
    }
    println!("emulated truncation: {mismatches} near-tie mismatches in {total} requests");
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
    let mut truncs: Vec<RequestTruncation> = vec![(Truncation::OFF, Truncation::OFF); 6];
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
    for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
        let got = emulate_with(&mut h.clone(), Method::Asps, 64, 2, form, Some(&truncs));
        let statuses: Vec<_> = got.iter().map(|g| g.status).collect();
        assert_eq!(
            statuses,
            [
                RequestStatus::BadTruncation,
                RequestStatus::BadTruncation,
                RequestStatus::BadTruncation,
                RequestStatus::BadTruncation,
                RequestStatus::ImpossibleDraftToken,
                RequestStatus::Ok,
            ],
            "{form:?}"
        );
    }
}
