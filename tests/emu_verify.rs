//! The verification kernels' own source (kernels/verify.cu), compiled for the host with the CPU
//! emulator of tests/emu and run on host memory, against the CPU reference. This runs
//! everywhere, CI included: it checks the kernels' logic (indexing, reductions, row and request
//! statuses, the noise keys, the ASpS / SpS / greedy decisions, ragged lengths, strides) where
//! no GPU is available. Float functions are the host's, not the GPU's, so ties may split
//! differently; as on the GPU, every mismatch must be a near-tie. The emulator says nothing
//! about speed, the GPU memory model or the GPU's float intrinsics.

#[path = "common/batch.rs"]
mod batch;

use asps::cuda::{RequestStatus, VerifiedRequest, VerifyParams};
use asps::{Dtype, Logit, Method};
use batch::{
    Batch, bad_values_batch, check_against_reference, check_bad_values, check_extreme_temperatures,
    extreme_temperature_batch, random_batch,
};
use half::{bf16, f16};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NEAR_TIE: f64 = 1e-3;

unsafe extern "C" {
    /// Runs the three verification kernels (tests/emu/kernel_emu.cpp); 0 on success.
    fn asps_emu_verify(dtype: i32, params: *const VerifyParams, block: u32) -> i32;
}

/// The kernels' workspace and outputs, on the host.
struct HostBuffers {
    // t_max, t_log_norm, t_gather, d_max, d_log_norm, d_gather, log_t, log_keep, race_key
    f32s: [Vec<f32>; 9],
    i32s: [Vec<i32>; 5], // t_arg, t_status, d_status, race_token, sps_row
    out_tokens: Vec<i32>,
    counts: [Vec<i32>; 3], // emitted, accepted, status
}

fn addr<T>(v: &mut [T]) -> u64 {
    v.as_mut_ptr() as u64
}

/// Runs the emulated kernels over `h` with `block` threads per block; advances its offsets.
fn emulate<T: Logit>(h: &mut Batch<T>, method: Method, block: u32) -> Vec<VerifiedRequest> {
    let (b, n) = (h.b, h.n);
    let cells = b * (n + 1);
    let mut m = HostBuffers {
        // Garbage, as a real workspace holds: NaN and out-of-range integers.
        f32s: std::array::from_fn(|_| vec![f32::NAN; cells]),
        i32s: std::array::from_fn(|_| vec![0x7FA5_A5A5; cells]),
        out_tokens: vec![0; cells],
        counts: std::array::from_fn(|_| vec![0; b]),
    };
    let [
        t_max,
        t_log_norm,
        t_gather,
        d_max,
        d_log_norm,
        d_gather,
        log_t,
        log_keep,
        race_key,
    ] = &mut m.f32s;
    let [t_arg, t_status, d_status, race_token, sps_row] = &mut m.i32s;
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
        ws_t_max: addr(t_max),
        ws_t_log_norm: addr(t_log_norm),
        ws_t_gather: addr(t_gather),
        ws_t_arg: addr(t_arg),
        ws_t_status: addr(t_status),
        ws_d_max: addr(d_max),
        ws_d_log_norm: addr(d_log_norm),
        ws_d_gather: addr(d_gather),
        ws_d_status: addr(d_status),
        ws_log_t: addr(log_t),
        ws_log_keep: addr(log_keep),
        ws_race_key: addr(race_key),
        ws_race_token: addr(race_token),
        ws_sps_row: addr(sps_row),
        batch: b as i32,
        max_draft: n as i32,
        vocab: h.v as i32,
        method: match method {
            Method::Asps => 0,
            Method::Sps => 1,
            Method::Greedy => 2,
        },
    };
    let dtype = match T::DTYPE {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::BF16 => 2,
    };
    // SAFETY: every pointer in `params` is a live host buffer of the size the kernels index
    // (B * (n + 1) workspace cells, B outputs, the logits and tokens of `h`), borrowed until
    // the call returns.
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

/// All three rules over one random batch; returns (requests, near-tie mismatches).
fn compare<T: Logit>(seed: u64, b: usize, n: usize, v: usize, block: u32) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = random_batch::<T>(&mut rng, b, n, v);
    let before = h.clone();
    let mut mismatches = 0;
    for (call, method) in Method::ALL.into_iter().enumerate() {
        let got = emulate(&mut h, method, block);
        mismatches += check_against_reference(&before, method, call as u64, &got, NEAR_TIE);
    }
    for (after, start) in h.offsets.iter().zip(&before.offsets) {
        assert_eq!(*after, start + 3, "each call advances the offset by one");
    }
    (3 * b, mismatches)
}

#[test]
fn emulated_kernels_match_the_reference() {
    let (mut total, mut mismatches) = (0, 0);
    // (V, n, B, threads per block): odd vocabularies exercise the vector loads' head and tail;
    // 32-thread blocks a single-warp reduction, 64, 96 and 512 several warps.
    let shapes = [
        (16, 1, 5, 32),
        (37, 3, 7, 64),
        (1000, 4, 3, 96),
        (257, 16, 2, 64),
        (4099, 2, 2, 64),
        (4099, 3, 2, 512), // the block size of the real launches
    ];
    for (k, (v, n, b, block)) in shapes.into_iter().enumerate() {
        let k = k as u64;
        for (t, m) in [
            compare::<f32>(100 + k, b, n, v, block),
            compare::<f16>(200 + k, b, n, v, block),
            compare::<bf16>(300 + k, b, n, v, block),
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

#[test]
fn emulated_kernels_report_bad_values_per_request() {
    let (mut h, want) = bad_values_batch();
    check_bad_values(&emulate(&mut h, Method::Asps, 64), &want);
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
