//! The verification kernels on the GPU against the CPU reference, with the same seeds and
//! offsets. Without a GPU every test prints why it skipped.
//!
//! * Same emitted tokens for at least 99.9% of requests over random instances (V in {1000,
//!   32000, 128256, 151936}, n in {1, 2, 4, 8, 16}, B in {1, 7, 64}, f32/f16/bf16, ragged
//!   draft lengths, mixed temperatures including greedy), and every mismatch a float near-tie:
//!   the reference's own keys for the two outcomes differ by less than NEAR_TIE.
//! * GPU draws against the exact law by chi-square (ALPHA = 1e-3): V = 16 with 10^6 draws,
//!   V = 4096 with about 4 * 10^4, for ASpS and SpS.
//!
//! On the emulated device (tests/emu/gpu: a CPU running the kernels' source) the same tests run
//! at sizes it affords in minutes, chosen by the device's name: the reference comparison over
//! V in {1000, 32000, 128256, 151936} with smaller batches, the chi-square tests with 2048
//! draws per rule (ALPHA = 1e-3 still).
//! * Bad values on the device are reported per request; rows past a request's draft length are
//!   never read; a request's result does not depend on its batch; graph replays advance offsets.
//! * Strided layouts through the raw front: rows V + 3 elements apart, requests further apart
//!   than their rows, every buffer starting one element past a 16-byte boundary (so the
//!   kernels' vector loads take their scalar head and tail), padding filled with NaN, at
//!   V = 32000 and V = 4099, for f32, f16 and bf16, against the reference, without and with
//!   truncation (verify_raw).
//! * Truncation (top-k, top-p, min-p on target and draft rows) through the safe front at
//!   V = 32000 and 128256, mixed within a batch, against the reference (a mismatch must be a
//!   near-tie of a decision or of a threshold); its emitted law by chi-square (V = 16); bad
//!   truncation arrays refused before launch and bad values reported per request.

#[path = "common/batch.rs"]
mod batch;
mod common;
#[path = "common/gpu.rs"]
mod gpu;

use std::collections::HashMap;
use std::ffi::c_void;

use asps::capi::AspsVerifyArgs;
use asps::cuda::{
    BatchLogits, Gpu, RequestStatus, ResidualForm, RowsShape, SamplingInputs, SoftmaxOutput,
    TruncationInputs, VerifiedRequest, Verifier, VerifyInputs, VerifyOutputs,
};
use asps::reference::{Sampling, normalized_residual, softmax};
use asps::{Logit, Method, Outcome};
use batch::{
    Batch, bad_values_batch, check_against_reference, check_bad_values, check_extreme_temperatures,
    extreme_temperature_batch, mixed_draft_temperatures, mixed_truncations, random_batch,
    random_batch_with_noise, redraw_drafts,
};
use common::chi2_against_law;
use cudarc::driver::{DevicePtr, DevicePtrMut, DeviceRepr};
use gpu::{DeviceBatch, gpu_or_skip, run};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Largest gap between the reference's keys of two outcomes that still counts as a float tie.
const NEAR_TIE: f64 = 1e-3;
const ALPHA: f64 = 1e-3;

/// Compares one random batch's GPU results with the reference; returns (requests,
/// mismatches).
fn compare<T: Logit + DeviceRepr>(
    gpu: &Gpu,
    rng: &mut StdRng,
    b: usize,
    n: usize,
    v: usize,
) -> (usize, usize) {
    let stream = gpu.context().default_stream();
    let h = random_batch::<T>(rng, b, n, v);
    let mut d = DeviceBatch::new(&stream, &h);
    let mut verifier = Verifier::new(gpu, &stream, b, n).unwrap();
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    let mut mismatches = 0;
    for (call, method) in Method::ALL.into_iter().enumerate() {
        let got = run(&mut verifier, method, &h, &mut d, &mut out);
        mismatches += check_against_reference(&h, method, call as u64, &got, NEAR_TIE);
    }
    // The device advanced every offset once per call.
    let offsets = stream.clone_dtoh(&d.offsets).unwrap();
    for (i, o) in offsets.iter().enumerate() {
        assert_eq!(*o, h.offsets[i] + 3);
    }
    (3 * b, mismatches)
}

#[test]
fn gpu_matches_the_reference() {
    let Some(gpu) = gpu_or_skip("gpu_matches_the_reference") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(2024);
    // Every V, n and B appears; the largest products are kept for the smaller batches.
    let gpu_shapes = [
        (1000, 1, 64),
        (1000, 16, 64),
        (32000, 2, 64),
        (32000, 8, 7),
        (128_256, 4, 7),
        (128_256, 16, 1),
        (151_936, 8, 7),
        (151_936, 1, 64),
    ];
    // Every V and n of the GPU list, at batches the emulated device runs in about a minute.
    let emulator_shapes = [
        (1000, 1, 64),
        (1000, 16, 7),
        (32000, 2, 7),
        (32000, 8, 2),
        (128_256, 4, 1),
        (128_256, 16, 1),
        (151_936, 8, 1),
        (151_936, 1, 7),
    ];
    let shapes: &[_] = if gpu.emulated {
        &emulator_shapes
    } else {
        &gpu_shapes
    };
    let (mut total, mut mismatches) = (0, 0);
    for &(v, n, b) in shapes {
        for (t, m) in [
            compare::<f32>(&gpu, &mut rng, b, n, v),
            compare::<f16>(&gpu, &mut rng, b, n, v),
            compare::<bf16>(&gpu, &mut rng, b, n, v),
        ] {
            total += t;
            mismatches += m;
        }
    }
    println!("gpu_matches_the_reference: {mismatches} near-tie mismatches in {total} requests");
    assert!(
        mismatches * 1000 <= total,
        "{mismatches} mismatches in {total} requests"
    );
}

/// The forms of the decide step (parallel: every candidate row at once, in parts; lazy: one
/// block per request walking from the top; fused: the same walk in the row launch's last block
/// of each request) give the reference's outcomes through the host path, and so each other's,
/// up to float near-ties (a row's mass is summed over parts in one form, whole in another).
/// Drafts far from the target (noise 8), so that ASpS's descent visits many rows; 12 calls of
/// each rule per form, at most 1% near-tie mismatches. One verifier throughout, the fused form
/// right after each of the others: it counts its blocks from the zero every form leaves in the
/// arrival counters.
#[test]
fn both_residual_forms_give_the_reference_outcomes() {
    let Some(gpu) = gpu_or_skip("both_residual_forms_give_the_reference_outcomes") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(31);
    let (b, n, v) = (8, 4, 3000);
    let h = random_batch_with_noise::<bf16>(&mut rng, b, n, v, 8.0);
    let stream = gpu.context().default_stream();
    let mut verifier = Verifier::new(&gpu, &stream, b, n).unwrap();
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    let (mut total, mut mismatches) = (0, 0);
    let forms = [
        ResidualForm::Parallel,
        ResidualForm::Fused,
        ResidualForm::Lazy,
        ResidualForm::Fused,
    ];
    for form in forms {
        verifier.set_residual_form(Some(form));
        let mut d = DeviceBatch::new(&stream, &h);
        for (call, method) in Method::ALL.into_iter().cycle().take(36).enumerate() {
            let got = run(&mut verifier, method, &h, &mut d, &mut out);
            mismatches += check_against_reference(&h, method, call as u64, &got, NEAR_TIE);
            total += got.len();
        }
    }
    assert!(
        mismatches * 100 <= total,
        "{mismatches} near-tie mismatches in {total}"
    );
}

/// Draws of one step, many times over, from the GPU: `b` copies of one request sampled as
/// `sampling` says, with distinct seeds, `calls` calls (offsets advance on the device).
fn gpu_draws(
    gpu: &Gpu,
    step_logits: (&[Vec<f32>], &[Vec<f32>], &[u32]),
    sampling: &Sampling,
    method: Method,
    b: usize,
    calls: usize,
) -> HashMap<Outcome, u64> {
    let (target, draft, tokens) = step_logits;
    let (n, v) = (tokens.len(), target[0].len());
    let stream = gpu.context().default_stream();
    let truncated = !(sampling.target.is_off() && sampling.draft.is_off());
    let h = Batch::<f32> {
        b,
        n,
        v,
        target: (0..b)
            .flat_map(|_| target.iter().flatten().copied())
            .collect(),
        draft: (0..b)
            .flat_map(|_| draft.iter().flatten().copied())
            .collect(),
        tokens: (0..b)
            .flat_map(|_| tokens.iter().map(|&t| t as i32))
            .collect(),
        lens: vec![n as i32; b],
        temps: vec![sampling.temperature as f32; b],
        seeds: (0..b as u64).map(|i| 0x5eed_0000 + i).collect(),
        offsets: vec![0; b],
        draft_temps: sampling.draft_temperature.map(|t| vec![t as f32; b]),
        truncs: truncated.then(|| vec![(sampling.target, sampling.draft); b]),
    };
    let mut d = DeviceBatch::new(&stream, &h);
    let mut verifier = Verifier::new(gpu, &stream, b, n).unwrap();
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    let mut counts = HashMap::new();
    for _ in 0..calls {
        for r in run(&mut verifier, method, &h, &mut d, &mut out) {
            assert_eq!(r.status, RequestStatus::Ok);
            let o = Outcome {
                accepted: r.accepted,
                token: *r.tokens.last().unwrap(),
            };
            *counts.entry(o).or_default() += 1;
        }
    }
    counts
}

/// Tests `b * calls` GPU draws of one step (`sampling`) per rule against the step's exact law
/// at significance ALPHA, and that no draw has probability 0.
fn chi2_of_draws(
    gpu: &Gpu,
    step_logits: (&[Vec<f32>], &[Vec<f32>], &[u32]),
    sampling: &Sampling,
    (b, calls): (usize, usize),
    what: &str,
) {
    let (target, draft, tokens) = step_logits;
    for method in [Method::Asps, Method::Sps] {
        let law =
            asps::reference::step_law_from_logits(method, target, draft, tokens, sampling).unwrap();
        assert!(
            law.accept_all < 0.99,
            "{what} {method:?}: the draft is kept almost surely"
        );
        let counts = gpu_draws(gpu, step_logits, sampling, method, b, calls);
        let result = chi2_against_law(&counts, &law);
        println!(
            "{what} {method:?}: {} draws, chi2 = {:.1} on {} df, p = {:.3} (alpha {ALPHA})",
            b * calls,
            result.stat,
            result.df,
            result.p_value
        );
        assert_eq!(
            result.impossible, 0,
            "{what} {method:?}: outcomes of probability 0"
        );
        assert!(result.p_value > ALPHA, "{what} {method:?}: {result:?}");
    }
}

/// Draws `b * calls` outcomes per rule from the GPU for one random step at T = 1 and tests them
/// against the step's exact law at significance ALPHA.
fn chi2_case(gpu: &Gpu, seed: u64, v: usize, n: usize, b: usize, calls: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let target: Vec<Vec<f32>> = (0..=n)
        .map(|_| (0..v).map(|_| (3.0 * rng.random::<f64>()) as f32).collect())
        .collect();
    let draft: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..v).map(|_| (3.0 * rng.random::<f64>()) as f32).collect())
        .collect();
    let tokens: Vec<u32> = (0..n).map(|_| rng.random_range(0..v as u32)).collect();
    let sampling = Sampling::plain(1.0);
    chi2_of_draws(
        gpu,
        (&target, &draft, &tokens),
        &sampling,
        (b, calls),
        &format!("V={v} n={n}"),
    );
}

#[test]
fn gpu_draws_follow_the_exact_law_narrow() {
    let Some(gpu) = gpu_or_skip("gpu_draws_follow_the_exact_law_narrow") else {
        return;
    };
    if gpu.emulated {
        chi2_case(&gpu, 5, 16, 3, 256, 8); // 2048 draws
    } else {
        chi2_case(&gpu, 5, 16, 3, 1 << 16, 16); // 2^20 draws
    }
}

#[test]
fn gpu_draws_follow_the_exact_law_wide() {
    let Some(gpu) = gpu_or_skip("gpu_draws_follow_the_exact_law_wide") else {
        return;
    };
    if gpu.emulated {
        chi2_case(&gpu, 6, 4096, 2, 256, 8); // 2048 draws
    } else {
        chi2_case(&gpu, 6, 4096, 2, 4096, 10); // 40960 draws
    }
}

#[test]
fn bad_values_are_reported_per_request() {
    let Some(gpu) = gpu_or_skip("bad_values_are_reported_per_request") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let (h, want) = bad_values_batch();
    let mut dev = DeviceBatch::new(&stream, &h);
    let mut verifier = Verifier::new(&gpu, &stream, h.b, h.n).unwrap();
    let mut out = VerifyOutputs::new(&stream, h.b, h.n).unwrap();
    check_bad_values(
        &run(&mut verifier, Method::Asps, &h, &mut dev, &mut out),
        &want,
    );
}

/// Temperatures from 1e-38 to 3e38, 32 calls each: the device agrees with the reference and never
/// keeps a draft token whose acceptance probability is e^(-10/T) = 0.
#[test]
fn extreme_temperatures_follow_the_reference() {
    let Some(gpu) = gpu_or_skip("extreme_temperatures_follow_the_reference") else {
        return;
    };
    let stream = gpu.context().default_stream();
    for method in [Method::Asps, Method::Sps] {
        let h = extreme_temperature_batch::<bf16>(12);
        let mut d = DeviceBatch::new(&stream, &h);
        let mut verifier = Verifier::new(&gpu, &stream, h.b, h.n).unwrap();
        let mut out = VerifyOutputs::new(&stream, h.b, h.n).unwrap();
        let results: Vec<_> = (0..32)
            .map(|_| run(&mut verifier, method, &h, &mut d, &mut out))
            .collect();
        check_extreme_temperatures(&h, method, &results);
    }
}

/// The workspace is never trusted: one verifier (whose workspace starts uninitialised; on the
/// emulated device that is a NaN / out-of-range-integer pattern) runs calls of different
/// shapes and rules in turn, each against the reference, so neither garbage nor an entry left
/// by an earlier, larger call can reach a decision. V = 5000 lets small batches split their
/// rows (up to 4 parts), so the split changes from call to call too.
#[test]
fn stale_workspace_entries_never_reach_a_decision() {
    let Some(gpu) = gpu_or_skip("stale_workspace_entries_never_reach_a_decision") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let mut rng = StdRng::seed_from_u64(13);
    let mut verifier = Verifier::new(&gpu, &stream, 8, 6).unwrap();
    let mut out = VerifyOutputs::new(&stream, 8, 6).unwrap();
    let calls = [
        (Method::Sps, 3, 2),
        (Method::Asps, 8, 6),
        (Method::Sps, 8, 6),
        (Method::Greedy, 5, 4),
        (Method::Asps, 1, 1),
        (Method::Sps, 8, 3),
        (Method::Asps, 7, 5),
        (Method::Sps, 1, 6),
    ];
    for (method, b, n) in calls {
        let h = random_batch::<f16>(&mut rng, b, n, 5000);
        let mut d = DeviceBatch::new(&stream, &h);
        let got = run(&mut verifier, method, &h, &mut d, &mut out);
        check_against_reference(&h, method, 0, &got, NEAR_TIE);
    }
}

/// A verifier takes drafts of up to MAX_DRAFT = 64 tokens (the kernels merge a request's rows in
/// shared memory); one of 64 verifies against the reference, one of 65 is refused at creation.
#[test]
fn drafts_up_to_max_draft_verify_and_longer_ones_are_refused() {
    let Some(gpu) = gpu_or_skip("drafts_up_to_max_draft_verify_and_longer_ones_are_refused") else {
        return;
    };
    let stream = gpu.context().default_stream();
    assert!(matches!(
        Verifier::new(&gpu, &stream, 1, 65),
        Err(asps::Error::TooLarge(_))
    ));
    let mut rng = StdRng::seed_from_u64(16);
    let mut h = random_batch::<bf16>(&mut rng, 2, 64, 3000);
    // Drafts of 64 and 63 tokens: the rows past each random draft length get a valid token
    // (every draft logit is finite, so any token is possible).
    h.lens = vec![64, 63];
    for (k, token) in h.tokens.iter_mut().enumerate() {
        if *token < 0 {
            *token = (k * 7 % 3000) as i32;
        }
    }
    let mut verifier = Verifier::new(&gpu, &stream, 2, 64).unwrap();
    let mut out = VerifyOutputs::new(&stream, 2, 64).unwrap();
    for method in Method::ALL {
        let mut d = DeviceBatch::new(&stream, &h);
        let got = run(&mut verifier, method, &h, &mut d, &mut out);
        check_against_reference(&h, method, 0, &got, NEAR_TIE);
    }
}

#[test]
fn a_request_does_not_depend_on_its_batch() {
    let Some(gpu) = gpu_or_skip("a_request_does_not_depend_on_its_batch") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let mut rng = StdRng::seed_from_u64(10);
    let (b, n, v) = (7, 4, 5000);
    let h = random_batch::<bf16>(&mut rng, b, n, v);
    let mut verifier = Verifier::new(&gpu, &stream, b, n).unwrap();
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    for method in [Method::Asps, Method::Sps] {
        let mut d = DeviceBatch::new(&stream, &h);
        let together = run(&mut verifier, method, &h, &mut d, &mut out);
        for (i, in_batch) in together.iter().enumerate() {
            let one = h.request(i);
            let mut d1 = DeviceBatch::new(&stream, &one);
            let alone = run(&mut verifier, method, &one, &mut d1, &mut out);
            assert_eq!(&alone[0], in_batch, "{method:?} request {i}");
        }
    }
}

#[test]
fn graph_replays_draw_fresh_noise() {
    let Some(gpu) = gpu_or_skip("graph_replays_draw_fresh_noise") else {
        return;
    };
    // One stream only: cudarc's cross-stream events are not needed, and a capture may not wait
    // on events recorded outside it. SAFETY: no buffer here is used from two streams.
    unsafe { gpu.context().disable_event_tracking() };
    let stream = gpu.context().new_stream().unwrap(); // the legacy stream cannot be captured
    let mut rng = StdRng::seed_from_u64(11);
    let (b, n, v) = (4, 4, 2000);
    let mut h = random_batch::<f16>(&mut rng, b, n, v);
    h.temps = vec![1.0; b];
    let mut d = DeviceBatch::new(&stream, &h);
    let mut verifier = Verifier::new(&gpu, &stream, b, n).unwrap();
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    stream.synchronize().unwrap();
    stream
        .begin_capture(
            cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        )
        .unwrap();
    {
        let inputs = VerifyInputs {
            method: Method::Asps,
            batch: b,
            max_draft: n,
            vocab: v,
            target: BatchLogits::packed(d.target.as_view(), n + 1, v),
            draft: BatchLogits::packed(d.draft.as_view(), n, v),
            draft_tokens: d.tokens.as_view(),
            draft_lens: d.lens.as_view(),
            seeds: d.seeds.as_view(),
            sampling: d.sampling.inputs(),
        };
        verifier.verify(&inputs, &mut d.offsets, &mut out).unwrap();
    }
    let graph = stream
        .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
        .unwrap()
        .expect("a captured graph");
    for replay in 0..3u64 {
        graph.launch().unwrap();
        let got = out.read(&stream).unwrap();
        check_against_reference(&h, Method::Asps, replay, &got, NEAR_TIE);
    }
    let offsets = stream.clone_dtoh(&d.offsets).unwrap();
    assert!(offsets.iter().zip(&h.offsets).all(|(a, b)| *a == b + 3));
}

#[test]
fn standalone_softmax_and_residual_match_the_reference() {
    let Some(gpu) = gpu_or_skip("standalone_softmax_and_residual_match_the_reference") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let mut rng = StdRng::seed_from_u64(12);
    let (rows, v) = (3, 32000);
    let host: Vec<bf16> = (0..rows * v)
        .map(|_| bf16::from_f64(8.0 * rng.random::<f64>() - 4.0))
        .collect();
    let logits = stream.clone_htod(&host).unwrap();
    let mut probs = stream.alloc_zeros::<f32>(rows * v).unwrap();
    let mut logp = stream.alloc_zeros::<f32>(rows * v).unwrap();
    let mut status = stream.alloc_zeros::<i32>(rows).unwrap();
    let shape = RowsShape::contiguous(rows, v);
    gpu.softmax(
        &stream,
        &logits,
        shape,
        0.7,
        SoftmaxOutput::Probs,
        &mut probs,
        &mut status,
    )
    .unwrap();
    gpu.softmax(
        &stream,
        &logits,
        shape,
        0.7,
        SoftmaxOutput::LogProbs,
        &mut logp,
        &mut status,
    )
    .unwrap();
    let (probs_h, logp_h) = (
        stream.clone_dtoh(&probs).unwrap(),
        stream.clone_dtoh(&logp).unwrap(),
    );
    assert!(stream.clone_dtoh(&status).unwrap().iter().all(|&s| s == 0));
    let mut reference = Vec::new();
    for r in 0..rows {
        let want = softmax(&host[r * v..(r + 1) * v], f64::from(0.7f32)).unwrap();
        for (x, (&p, &lp)) in want
            .iter()
            .zip(probs_h[r * v..].iter().zip(&logp_h[r * v..]))
        {
            assert!((f64::from(p) - x).abs() < 1e-7 + 1e-5 * x, "{p} vs {x}");
            assert!((f64::from(lp) - x.ln()).abs() < 1e-4, "{lp} vs {}", x.ln());
        }
        reference.push(want);
    }
    // Residual of row 0 against row 1, scale 0.8, on the GPU's own f32 probabilities.
    let p = stream.clone_htod(&probs_h[..v]).unwrap();
    let q = stream.clone_htod(&probs_h[v..2 * v]).unwrap();
    let mut res = stream.alloc_zeros::<f32>(v).unwrap();
    let mut mass = stream.alloc_zeros::<f32>(1).unwrap();
    gpu.normalized_residual(
        &stream,
        &p,
        &q,
        RowsShape::contiguous(1, v),
        0.8,
        &mut res,
        &mut mass,
    )
    .unwrap();
    let res_h = stream.clone_dtoh(&res).unwrap();
    let p64: Vec<f64> = probs_h[..v].iter().map(|&x| f64::from(x)).collect();
    let q64: Vec<f64> = probs_h[v..2 * v].iter().map(|&x| f64::from(x)).collect();
    let want = normalized_residual(&p64, &q64, 0.8).unwrap().unwrap();
    for (g, w) in res_h.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() < 1e-6 + 1e-4 * w, "{g} vs {w}");
    }
}

/// One logits buffer of a batch laid out with strides: `rows` rows per request, each row
/// `row_stride` elements after the previous, each request `batch_stride` after the previous,
/// the whole starting `lead` elements into the buffer. Everything the kernels must not read
/// (the lead, the padding after each row and request, and the rows past a request's draft
/// length, `used_rows(i)`) is NaN, which they would report.
fn strided<T: Logit>(
    packed: &[T],
    b: usize,
    rows: usize,
    v: usize,
    (lead, batch_stride, row_stride): (usize, usize, usize),
    used_rows: impl Fn(usize) -> usize,
) -> Vec<T> {
    let mut out = vec![T::from_f64(f64::NAN); lead + b * batch_stride];
    for i in 0..b {
        for r in 0..used_rows(i) {
            let src = (i * rows + r) * v;
            let dst = lead + i * batch_stride + r * row_stride;
            out[dst..dst + v].copy_from_slice(&packed[src..src + v]);
        }
    }
    out
}

/// A random batch laid out with padded strides and misaligned rows, verified through the raw
/// front by every method, without and with the batch's mixed truncations and draft
/// temperatures; each call's results checked against the reference.
fn strided_case<T: Logit + DeviceRepr>(gpu: &Gpu, rng: &mut StdRng, b: usize, n: usize, v: usize) {
    let stream = gpu.context().default_stream();
    let plain = random_batch::<T>(rng, b, n, v);
    let mut sampled = Batch {
        truncs: Some(mixed_truncations(b)),
        draft_temps: Some(mixed_draft_temperatures(b)),
        ..plain.clone()
    };
    redraw_drafts(rng, &mut sampled);
    // One element past the allocation's start (256-byte aligned): no row starts on a 16-byte
    // boundary by accident of the base, and with V + 3 the rows' offsets vary.
    let lead = 1;
    let row_stride = v + 3;
    let target_batch_stride = (n + 1) * row_stride + 5;
    let draft_batch_stride = n * row_stride + 7;
    let mut verifier = Verifier::new(gpu, &stream, b, n).unwrap();
    let elem = std::mem::size_of::<T>() as u64;
    let calls = Method::ALL
        .into_iter()
        .flat_map(|method| [(method, &plain), (method, &sampled)]);
    for (call, (method, h)) in calls.enumerate() {
        let lens = |i: usize| h.lens[i] as usize;
        let target = strided(
            &h.target,
            b,
            n + 1,
            v,
            (lead, target_batch_stride, row_stride),
            |i| lens(i) + 1,
        );
        let draft = strided(
            &h.draft,
            b,
            n,
            v,
            (lead, draft_batch_stride, row_stride),
            lens,
        );
        let target = stream.clone_htod(&target).unwrap();
        let draft = stream.clone_htod(&draft).unwrap();
        let d = DeviceBatch::new(&stream, h);
        // Call k draws with offsets + k, as check_against_reference expects.
        let start: Vec<u64> = h.offsets.iter().map(|o| o + call as u64).collect();
        let mut offsets = stream.clone_htod(&start).unwrap();
        let mut out_tokens = stream.alloc_zeros::<i32>(b * (n + 1)).unwrap();
        let mut out_emitted = stream.alloc_zeros::<i32>(b).unwrap();
        let mut out_accepted = stream.alloc_zeros::<i32>(b).unwrap();
        let mut out_status = stream.alloc_zeros::<i32>(b).unwrap();
        {
            let (target_ptr, _g1) = target.device_ptr(&stream);
            let (draft_ptr, _g2) = draft.device_ptr(&stream);
            let (tokens_ptr, _g3) = d.tokens.device_ptr(&stream);
            let (lens_ptr, _g4) = d.lens.device_ptr(&stream);
            let (seeds_ptr, _g6) = d.seeds.device_ptr(&stream);
            let (offsets_ptr, _g7) = offsets.device_ptr_mut(&stream);
            let (tokens_out, _g8) = out_tokens.device_ptr_mut(&stream);
            let (emitted_out, _g9) = out_emitted.device_ptr_mut(&stream);
            let (accepted_out, _g10) = out_accepted.device_ptr_mut(&stream);
            let (status_out, _g11) = out_status.device_ptr_mut(&stream);
            let (sampling, _guards) = d.sampling.raw(&stream);
            let args = AspsVerifyArgs {
                method: AspsVerifyArgs::method_code(method),
                dtype: AspsVerifyArgs::dtype_code(T::DTYPE),
                batch: b as i32,
                max_draft: n as i32,
                vocab: v as i32,
                target_logits: (target_ptr + lead as u64 * elem) as *const c_void,
                target_batch_stride: target_batch_stride as i64,
                target_row_stride: row_stride as i64,
                draft_logits: (draft_ptr + lead as u64 * elem) as *const c_void,
                draft_batch_stride: draft_batch_stride as i64,
                draft_row_stride: row_stride as i64,
                draft_tokens: tokens_ptr as *const i32,
                draft_lens: lens_ptr as *const i32,
                seeds: seeds_ptr as *const u64,
                offsets: offsets_ptr as *mut u64,
                out_tokens: tokens_out as *mut i32,
                out_num_emitted: emitted_out as *mut i32,
                out_num_accepted: accepted_out as *mut i32,
                out_status: status_out as *mut i32,
                sampling,
                ..AspsVerifyArgs::new()
            };
            assert_ne!(
                args.target_logits as usize % 16,
                0,
                "the rows must start off a 16-byte boundary"
            );
            // SAFETY: every pointer is a live buffer of this context covering the extent its
            // shape and strides give (the logits buffers hold lead + B * batch_stride
            // elements; the sampling arrays B elements each); the buffers stay alive and unused
            // elsewhere until the reads below, which synchronise the stream the work was queued
            // on.
            unsafe { verifier.verify_raw(&args, stream.cu_stream()) }.unwrap();
        }
        let out_tokens_h = stream.clone_dtoh(&out_tokens).unwrap();
        let emitted = stream.clone_dtoh(&out_emitted).unwrap();
        let accepted = stream.clone_dtoh(&out_accepted).unwrap();
        let status = stream.clone_dtoh(&out_status).unwrap();
        let got: Vec<VerifiedRequest> = (0..b)
            .map(|i| VerifiedRequest {
                status: RequestStatus::from_code(status[i]),
                accepted: accepted[i].max(0) as usize,
                tokens: out_tokens_h[i * (n + 1)..][..emitted[i].clamp(0, n as i32 + 1) as usize]
                    .iter()
                    .map(|&t| t as u32)
                    .collect(),
            })
            .collect();
        check_against_reference(h, method, call as u64, &got, NEAR_TIE);
    }
}

#[test]
fn padded_and_misaligned_layouts_match_the_reference() {
    let Some(gpu) = gpu_or_skip("padded_and_misaligned_layouts_match_the_reference") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(13);
    let b = if gpu.emulated { 3 } else { 16 };
    for (v, n) in [(32000, 3), (4099, 4)] {
        strided_case::<f32>(&gpu, &mut rng, b, n, v);
        strided_case::<f16>(&gpu, &mut rng, b, n, v);
        strided_case::<bf16>(&gpu, &mut rng, b, n, v);
    }
}

/// Truncation through the safe front at real vocabulary sizes (V = 32000 and 128256): top-k in
/// {1, 20, 50, 1000}, top-p in {0.5, 0.9, 0.99}, min-p in {0.05, 0.2}, on target and draft rows,
/// mixed within each batch (tests/common/batch.rs, mixed_truncations), all three rules, against
/// the reference; a mismatch must be a near-tie of a decision or of a threshold (at most 1%).
#[test]
fn truncation_matches_the_reference() {
    let Some(gpu) = gpu_or_skip("truncation_matches_the_reference") else {
        return;
    };
    let shapes: &[(usize, usize, usize)] = if gpu.emulated {
        // B = 8: every kind of mixed_truncations on the target rows at both sizes.
        &[(32000, 2, 8), (128_256, 2, 8)]
    } else {
        &[(32000, 4, 64), (128_256, 4, 32)]
    };
    let (mut total, mut mismatches) = (0, 0);
    for (seed, &(v, n, b)) in shapes.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(60 + seed as u64);
        let mut h = random_batch::<bf16>(&mut rng, b, n, v);
        h.truncs = Some(mixed_truncations(b));
        redraw_drafts(&mut rng, &mut h);
        let (t, m) = compare_batch(&gpu, &h);
        total += t;
        mismatches += m;
    }
    println!("truncation_matches_the_reference: {mismatches} near-tie mismatches in {total}");
    assert!(mismatches * 100 <= total, "{mismatches} in {total}");
}

/// Every rule over `h` (one call each, offsets advancing) against the reference; returns
/// (requests, near-tie mismatches).
fn compare_batch<T: Logit + DeviceRepr>(gpu: &Gpu, h: &Batch<T>) -> (usize, usize) {
    let stream = gpu.context().default_stream();
    let mut d = DeviceBatch::new(&stream, h);
    let mut verifier = Verifier::new(gpu, &stream, h.b, h.n).unwrap();
    let mut out = VerifyOutputs::new(&stream, h.b, h.n).unwrap();
    let mut mismatches = 0;
    for (call, method) in Method::ALL.into_iter().enumerate() {
        let got = run(&mut verifier, method, h, &mut d, &mut out);
        mismatches += check_against_reference(h, method, call as u64, &got, NEAR_TIE);
    }
    (3 * h.b, mismatches)
}

/// The draft's own temperature (a greedy drafter, cooler and hotter ones: mixed within each
/// batch, and with the mixed truncations too) through the safe front, all three rules, against
/// the reference; at most 1% near-tie mismatches.
#[test]
fn draft_temperatures_match_the_reference() {
    let Some(gpu) = gpu_or_skip("draft_temperatures_match_the_reference") else {
        return;
    };
    let shapes: &[(usize, usize, usize)] = if gpu.emulated {
        &[(4099, 3, 8), (32000, 2, 8)]
    } else {
        &[(32000, 4, 64), (128_256, 4, 32)]
    };
    let (mut total, mut mismatches) = (0, 0);
    for (seed, &(v, n, b)) in shapes.iter().enumerate() {
        for truncated in [false, true] {
            let mut rng = StdRng::seed_from_u64(80 + seed as u64);
            let mut h = random_batch::<f16>(&mut rng, b, n, v);
            h.draft_temps = Some(mixed_draft_temperatures(b));
            h.truncs = truncated.then(|| mixed_truncations(b));
            redraw_drafts(&mut rng, &mut h);
            let (t, m) = compare_batch(&gpu, &h);
            total += t;
            mismatches += m;
        }
    }
    println!("draft_temperatures_match_the_reference: {mismatches} near-tie mismatches in {total}");
    assert!(mismatches * 100 <= total, "{mismatches} in {total}");
}

/// The emitted law with the draft at its own temperature: chi-square at ALPHA = 1e-3 against
/// the reference's law (V = 16, n = 3, target T = 1), for a cooler drafter (T = 0.5) and a
/// greedy one (T = 0: q a point mass, p(x) the acceptance), ASpS and SpS; 2048 draws on the
/// emulated device (2^20 on a GPU); no draw of probability 0.
#[test]
fn draft_temperature_draws_follow_the_exact_law() {
    let Some(gpu) = gpu_or_skip("draft_temperature_draws_follow_the_exact_law") else {
        return;
    };
    let (b, calls) = if gpu.emulated {
        (256, 8)
    } else {
        (1 << 16, 16)
    };
    let mut rng = StdRng::seed_from_u64(72);
    let (v, n) = (16, 3);
    let row =
        |rng: &mut StdRng| -> Vec<f32> { (0..v).map(|_| 3.0 * rng.random::<f32>()).collect() };
    let target: Vec<Vec<f32>> = (0..=n).map(|_| row(&mut rng)).collect();
    let draft: Vec<Vec<f32>> = (0..n).map(|_| row(&mut rng)).collect();
    for draft_temperature in [0.5, 0.0] {
        // Greedy: the draft's argmax; else the token of smallest ratio p / q, so that both rules
        // keep and reject some.
        let sampling = Sampling {
            draft_temperature: Some(draft_temperature),
            ..Sampling::plain(1.0)
        };
        let tokens: Vec<u32> = (0..n)
            .map(|r| {
                let p = softmax(&target[r], 1.0).unwrap();
                if draft_temperature == 0.0 {
                    return asps::reference::argmax(draft[r].iter().map(|&x| f64::from(x))).unwrap()
                        as u32;
                }
                let q = softmax(&draft[r], draft_temperature).unwrap();
                (0..v)
                    .min_by(|&a, &c| (p[a] / q[a]).total_cmp(&(p[c] / q[c])))
                    .unwrap() as u32
            })
            .collect();
        chi2_of_draws(
            &gpu,
            (&target, &draft, &tokens),
            &sampling,
            (b, calls),
            &format!("draft T = {draft_temperature}"),
        );
    }
}

/// The emitted law with truncation, on a narrow vocabulary: chi-square at ALPHA = 1e-3 against
/// the reference's law (V = 16, n = 3; target top-k 6 and top-p 0.8, draft min-p 0.1), ASpS and
/// SpS, 2048 draws on the emulated device (2^20 on a GPU); no draw of probability 0.
#[test]
fn truncated_gpu_draws_follow_the_exact_law() {
    let Some(gpu) = gpu_or_skip("truncated_gpu_draws_follow_the_exact_law") else {
        return;
    };
    let (b, calls) = if gpu.emulated {
        (256, 8)
    } else {
        (1 << 16, 16)
    };
    let mut rng = StdRng::seed_from_u64(70);
    let (v, n) = (16, 3);
    // A peaked draft (logits of range 8) against a broader target (range 3).
    let row = |rng: &mut StdRng, scale: f32| -> Vec<f32> {
        (0..v).map(|_| scale * rng.random::<f32>()).collect()
    };
    let target: Vec<Vec<f32>> = (0..=n).map(|_| row(&mut rng, 3.0)).collect();
    let draft: Vec<Vec<f32>> = (0..n).map(|_| row(&mut rng, 8.0)).collect();
    let t_trunc = asps::reference::Truncation {
        top_k: 6,
        top_p: 0.8,
        min_p: 0.0,
    };
    let d_trunc = asps::reference::Truncation {
        min_p: 0.1,
        ..asps::reference::Truncation::OFF
    };
    // Draft tokens kept by both truncated rows, of the smallest ratio p / q there, so that both
    // rules keep and reject some and ASpS's law differs from SpS's.
    let tokens: Vec<u32> = (0..n)
        .map(|r| {
            let q = asps::reference::truncated_softmax(&draft[r], 1.0, &d_trunc).unwrap();
            let p = asps::reference::truncated_softmax(&target[r], 1.0, &t_trunc).unwrap();
            (0..v)
                .filter(|&u| p[u] > 0.0 && q[u] > 0.0)
                .min_by(|&a, &c| (p[a] / q[a]).total_cmp(&(p[c] / q[c])))
                .expect("the rows share a kept token") as u32
        })
        .collect();
    let sampling = Sampling {
        target: t_trunc,
        draft: d_trunc,
        ..Sampling::plain(1.0)
    };
    chi2_of_draws(
        &gpu,
        (&target, &draft, &tokens),
        &sampling,
        (b, calls),
        "with truncation",
    );
}

/// Host checks of the truncation arrays (too short: an error before any launch), and bad values
/// reported per request.
#[test]
fn truncation_arrays_are_checked() {
    let Some(gpu) = gpu_or_skip("truncation_arrays_are_checked") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let mut rng = StdRng::seed_from_u64(71);
    let (b, n, v) = (4, 2, 500);
    let mut h = random_batch::<f32>(&mut rng, b, n, v);
    h.temps = vec![1.0, 1.0, 0.0, 1.0];
    let mut d = DeviceBatch::new(&stream, &h);
    let mut verifier = Verifier::new(&gpu, &stream, b, n).unwrap();
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    let short_k = stream.clone_htod(&[5i32; 3]).unwrap();
    let short_t = stream.clone_htod(&[1f32; 3]).unwrap();
    // Request 0: a negative top-k; 1: top-p 0; 2: greedy with a bad min-p (checked all the
    // same); 3: valid.
    let top_k = stream.clone_htod(&[-1i32, 0, 0, 10]).unwrap();
    let top_p = stream.clone_htod(&[1.0f32, 0.0, 1.0, 0.9]).unwrap();
    let min_p = stream.clone_htod(&[0.0f32, 0.0, 1.5, 0.0]).unwrap();
    let temps = stream.clone_htod(&h.temps).unwrap();
    let mut call = |sampling: SamplingInputs<'_>, d: &mut gpu::DeviceBatch<f32>| {
        let inputs = VerifyInputs {
            method: Method::Sps,
            batch: b,
            max_draft: n,
            vocab: v,
            target: BatchLogits::packed(d.target.as_view(), n + 1, v),
            draft: BatchLogits::packed(d.draft.as_view(), n, v),
            draft_tokens: d.tokens.as_view(),
            draft_lens: d.lens.as_view(),
            seeds: d.seeds.as_view(),
            sampling,
        };
        verifier.verify(&inputs, &mut d.offsets, &mut out)
    };
    // Arrays shorter than the batch: refused before any launch.
    for too_short in [
        SamplingInputs {
            target: TruncationInputs {
                top_k: Some(short_k.as_view()),
                ..TruncationInputs::default()
            },
            ..SamplingInputs::plain(temps.as_view())
        },
        SamplingInputs {
            draft_temperature: Some(short_t.as_view()),
            ..SamplingInputs::plain(temps.as_view())
        },
        SamplingInputs::plain(short_t.as_view()),
    ] {
        let err = call(too_short, &mut d);
        assert!(matches!(err, Err(asps::Error::Shape(_))), "{err:?}");
    }
    let truncation = SamplingInputs {
        target: TruncationInputs {
            top_k: Some(top_k.as_view()),
            top_p: Some(top_p.as_view()),
            min_p: None,
        },
        draft: TruncationInputs {
            min_p: Some(min_p.as_view()),
            ..TruncationInputs::default()
        },
        ..SamplingInputs::plain(temps.as_view())
    };
    call(truncation, &mut d).unwrap();
    let got = out.read(&stream).unwrap();
    let statuses: Vec<_> = got.iter().map(|g| g.status).collect();
    assert_eq!(
        statuses,
        [
            RequestStatus::BadTruncation,
            RequestStatus::BadTruncation,
            RequestStatus::BadTruncation,
            RequestStatus::Ok,
        ]
    );
}
