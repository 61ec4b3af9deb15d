//! The softmax-statistics, softmax, residual and Philox kernels' own source, compiled for the
//! host with the CPU emulator of tests/emu, against the CPU reference (see tests/emu_verify.rs
//! for what the emulator does and does not show).

use asps::reference::{
    Truncation, kept_tokens, log_softmax, normalized_residual, row_stats, softmax,
    threshold_near_tie,
};
use asps::rng::philox4x32_10;
use asps::{Dtype, Logit};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

unsafe extern "C" {
    fn asps_emu_kept_set(
        dtype: i32,
        row: *const std::ffi::c_void,
        len: i32,
        top_k: i32,
        top_p: f32,
        min_p: f32,
        inv_t: f32,
        out: *mut u8,
        log_norm: *mut f32,
        block: u32,
    ) -> i32;
    fn asps_emu_tile_uniforms(
        seed: u64,
        offset: u64,
        purpose: u32,
        row: u32,
        first: u32,
        count: u32,
        out: *mut f32,
    );
    fn asps_emu_softmax_stats(
        dtype: i32,
        logits: *const u8,
        row_stride: i64,
        rows: i32,
        vocab: i32,
        inv_t: f32,
        out_max: *mut f32,
        out_log_norm: *mut f32,
        out_status: *mut i32,
        block: u32,
    ) -> i32;
    fn asps_emu_softmax(
        dtype: i32,
        logits: *const u8,
        row_stride: i64,
        rows: i32,
        vocab: i32,
        inv_t: f32,
        log_space: i32,
        out: *mut f32,
        out_row_stride: i64,
        out_status: *mut i32,
        block: u32,
    ) -> i32;
    fn asps_emu_normalized_residual(
        p: *const f32,
        q: *const f32,
        row_stride: i64,
        rows: i32,
        vocab: i32,
        scale: f32,
        out: *mut f32,
        out_row_stride: i64,
        out_mass: *mut f32,
        block: u32,
    ) -> i32;
    fn asps_emu_philox(counters: *const u32, keys: *const u32, out: *mut u32, n: i32) -> i32;
}

fn code(dtype: Dtype) -> i32 {
    match dtype {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::BF16 => 2,
    }
}

/// `len` logits in [-8, 8), 1% of them masked.
fn rows<T: Logit>(rng: &mut StdRng, len: usize) -> Vec<T> {
    (0..len)
        .map(|_| {
            let x = if rng.random::<f64>() < 0.01 {
                f64::NEG_INFINITY
            } else {
                16.0 * rng.random::<f64>() - 8.0
            };
            T::from_f64(x)
        })
        .collect()
}

/// The emulated softmax-statistics kernel over `n` rows of `vocab` logits, `stride` apart, at
/// 1/T = `inv_t` with `block` threads: (max, log_norm, status) per row.
fn emulated_stats<T: Logit>(
    rows: &[T],
    stride: usize,
    n: usize,
    vocab: usize,
    inv_t: f32,
    block: u32,
) -> (Vec<f32>, Vec<f32>, Vec<i32>) {
    assert!(rows.len() >= (n - 1) * stride + vocab);
    let (mut max, mut log_norm, mut status) = (vec![0f32; n], vec![0f32; n], vec![9i32; n]);
    // SAFETY: `rows` holds the n rows the kernel reads (asserted) and the outputs n entries each.
    let rc = unsafe {
        asps_emu_softmax_stats(
            code(T::DTYPE),
            rows.as_ptr().cast(),
            stride as i64,
            n as i32,
            vocab as i32,
            inv_t,
            max.as_mut_ptr(),
            log_norm.as_mut_ptr(),
            status.as_mut_ptr(),
            block,
        )
    };
    assert_eq!(rc, 0);
    (max, log_norm, status)
}

fn stats_case<T: Logit>(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (vocab, stride, skip, temperature, block) in [
        (37, 37, 0, 1.0, 32),
        (1000, 1003, 1, 0.7, 64),
        (4099, 4100, 3, 1e-3, 96),
        (8, 8, 1, 10.0, 32),
    ] {
        let n = 4;
        let mut host: Vec<T> = rows(&mut rng, skip + n * stride);
        // Row 1 holds a NaN, row 2 is masked entirely, row 3 holds +inf.
        host[skip + stride + vocab / 2] = T::from_f64(f64::NAN);
        for x in &mut host[skip + 2 * stride..skip + 2 * stride + vocab] {
            *x = T::from_f64(f64::NEG_INFINITY);
        }
        host[skip + 3 * stride + vocab - 1] = T::from_f64(f64::INFINITY);
        let t32 = temperature as f32;
        let (max, log_norm, mut status) =
            emulated_stats(&host[skip..], stride, n, vocab, 1.0 / t32, block);
        let want = row_stats(&host[skip..skip + vocab], f64::from(t32)).unwrap();
        assert_eq!(f64::from(max[0]), want.max, "{:?} V={vocab}", T::DTYPE);
        assert!(
            (f64::from(log_norm[0]) - want.log_norm).abs() < 2e-5 * want.log_norm.abs().max(1.0)
        );
        // Row statuses (RowStatus codes): ok, NaN, all masked, +inf.
        assert_eq!(status[..4], [0, 1, 3, 2], "{:?} V={vocab}", T::DTYPE);
        // Probabilities and log-probabilities of row 0.
        let mut out = vec![0f32; n * vocab];
        for log_space in [0, 1] {
            // SAFETY: as above; `out` holds n rows of vocab.
            let rc = unsafe {
                asps_emu_softmax(
                    code(T::DTYPE),
                    host[skip..].as_ptr().cast(),
                    stride as i64,
                    n as i32,
                    vocab as i32,
                    1.0 / t32,
                    log_space,
                    out.as_mut_ptr(),
                    vocab as i64,
                    status.as_mut_ptr(),
                    block,
                )
            };
            assert_eq!(rc, 0);
            let row = &host[skip..skip + vocab];
            let (p, lp) = (
                softmax(row, f64::from(t32)).unwrap(),
                log_softmax(row, f64::from(t32)).unwrap(),
            );
            for ((g, w), lw) in out[..vocab].iter().zip(&p).zip(&lp) {
                let g = f64::from(*g);
                if log_space == 1 {
                    assert!(
                        g == *lw || (g - lw).abs() < 1e-4 * lw.abs().max(1.0),
                        "{g} vs {lw}"
                    );
                } else {
                    assert!((g - w).abs() < 1e-7 + 1e-5 * w, "{g} vs {w}");
                }
            }
            assert!(
                out[vocab..2 * vocab].iter().all(|x| x.is_nan()),
                "a bad row is written as NaN"
            );
        }
    }
}

/// A NaN is flagged wherever a thread of the row pass meets it, including in a tile of NaN and
/// -inf alone that a thread reads before any finite value (its exponentials are skipped there,
/// so the sum cannot carry the NaN): V = 1024 over 32 threads, each thread reading two tiles of
/// 16, thread 0's first tile [NaN or +inf, -inf x 15] and every other logit 0; rows on and off a
/// 16-byte boundary.
fn special_tile_case<T: Logit>() {
    let (vocab, block) = (1024usize, 32u32);
    for skip in [0usize, 1] {
        for (special, want) in [(f64::NAN, 1), (f64::INFINITY, 2), (f64::NEG_INFINITY, 0)] {
            let mut host = vec![T::from_f64(0.0); skip + vocab];
            host[skip] = T::from_f64(special);
            for x in &mut host[skip + 1..skip + 16] {
                *x = T::from_f64(f64::NEG_INFINITY);
            }
            let (_, log_norm, status) = emulated_stats(&host[skip..], vocab, 1, vocab, 1.0, block);
            assert_eq!(
                status[0],
                want,
                "{:?}, skip {skip}, first logit {special}",
                T::DTYPE
            );
            if want == 0 {
                // 1008 zeros: ln 1008.
                assert!((f64::from(log_norm[0]) - 1008f64.ln()).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn special_values_are_flagged_in_every_tile() {
    special_tile_case::<f32>();
    special_tile_case::<bf16>();
}

#[test]
fn emulated_softmax_kernels_match_the_reference() {
    stats_case::<f32>(1);
    stats_case::<f16>(2);
    stats_case::<bf16>(3);
}

#[test]
fn emulated_residual_matches_the_reference() {
    let mut rng = StdRng::seed_from_u64(4);
    let (rows, vocab) = (3, 777);
    let dist = |rng: &mut StdRng| {
        let w: Vec<f64> = (0..vocab).map(|_| rng.random::<f64>()).collect();
        let s: f64 = w.iter().sum();
        w.into_iter().map(|x| (x / s) as f32).collect::<Vec<f32>>()
    };
    let p: Vec<f32> = (0..rows).flat_map(|_| dist(&mut rng)).collect();
    let mut q: Vec<f32> = (0..rows).flat_map(|_| dist(&mut rng)).collect();
    q[2 * vocab..].copy_from_slice(&p[2 * vocab..]); // row 2: p = q, no residual
    let (mut out, mut mass) = (vec![0f32; rows * vocab], vec![0f32; rows]);
    // SAFETY: p, q and out hold rows * vocab floats, mass holds rows.
    let rc = unsafe {
        asps_emu_normalized_residual(
            p.as_ptr(),
            q.as_ptr(),
            vocab as i64,
            rows as i32,
            vocab as i32,
            0.9,
            out.as_mut_ptr(),
            vocab as i64,
            mass.as_mut_ptr(),
            64,
        )
    };
    assert_eq!(rc, 0);
    for r in 0..2 {
        let p64: Vec<f64> = p[r * vocab..][..vocab]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let q64: Vec<f64> = q[r * vocab..][..vocab]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let want = normalized_residual(&p64, &q64, f64::from(0.9f32))
            .unwrap()
            .unwrap();
        for (g, w) in out[r * vocab..][..vocab].iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-6 + 1e-4 * w, "{g} vs {w}");
        }
    }
    // p = q scaled by 0.9 < 1: q >= 0.9 p everywhere, no mass, zeros out.
    assert_eq!(mass[2], 0.0);
    assert!(out[2 * vocab..].iter().all(|&x| x == 0.0));
}

#[test]
fn emulated_philox_matches_known_answers_and_the_cpu() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut counters: Vec<[u32; 4]> = vec![
        [0; 4],
        [u32::MAX; 4],
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    ];
    let mut keys: Vec<[u32; 2]> = vec![[0; 2], [u32::MAX; 2], [0xa4093822, 0x299f31d0]];
    for _ in 0..300 {
        counters.push([rng.random(), rng.random(), rng.random(), rng.random()]);
        keys.push([rng.random(), rng.random()]);
    }
    let mut out = vec![0u32; 4 * counters.len()];
    // SAFETY: 4 words per counter, 2 per key, 4 out.
    let rc = unsafe {
        asps_emu_philox(
            counters.as_ptr().cast(),
            keys.as_ptr().cast(),
            out.as_mut_ptr(),
            counters.len() as i32,
        )
    };
    assert_eq!(rc, 0);
    assert_eq!(out[..4], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(out[8..12], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
    for (i, (c, k)) in counters.iter().zip(&keys).enumerate() {
        assert_eq!(out[4 * i..4 * i + 4], philox4x32_10(*c, *k));
    }
}

/// The kernels' race and pick uniforms per tile (kernels/philox.cuh, tile_uniforms) equal the
/// reference's bit for bit, for every purpose, at low and high tile indices.
#[test]
fn tile_uniforms_match_the_reference_bit_for_bit() {
    use asps::rng::{NoiseKey, Purpose};
    let key = NoiseKey::new(0x0123_4567_89AB_CDEF, (1 << 40) + 5);
    for (purpose, code, row) in [
        (Purpose::Residual, 1, 3),
        (Purpose::Bonus, 2, 0),
        (Purpose::Accept, 3, 0),
        (Purpose::SpsAccept, 4, 7),
        (Purpose::Descend, 5, 2),
        (Purpose::TreeNode, 6, 31),
        (Purpose::TreeEmit, 7, 4),
    ] {
        for first in [0u32, 1, 1001, u32::MAX - 64] {
            let mut got = vec![0f32; 128];
            // SAFETY: `got` holds the 2 x 64 floats written.
            unsafe {
                asps_emu_tile_uniforms(key.seed, key.offset, code, row, first, 64, got.as_mut_ptr())
            };
            for (i, g) in got.chunks(2).enumerate() {
                let want = key.tile_uniforms(purpose, row as usize, first + i as u32);
                let got = [f64::from(g[0]), f64::from(g[1])];
                assert_eq!(got, want, "{purpose:?} tile {}", first + i as u32);
            }
        }
    }
}

/// A NaN in a row of the standalone residual kernel's input makes that row's mass and outputs
/// NaN (no max(0, NaN) = 0 hiding it); the other rows are untouched.
#[test]
fn emulated_residual_propagates_nan() {
    let vocab = 100;
    let p = vec![1.0 / vocab as f32; 2 * vocab];
    let mut q = vec![0.5 / vocab as f32; 2 * vocab];
    q[vocab + 7] = f32::NAN;
    let (mut out, mut mass) = (vec![0f32; 2 * vocab], vec![0f32; 2]);
    // SAFETY: p, q and out hold 2 * vocab floats, mass holds 2.
    let rc = unsafe {
        asps_emu_normalized_residual(
            p.as_ptr(),
            q.as_ptr(),
            vocab as i64,
            2,
            vocab as i32,
            1.0,
            out.as_mut_ptr(),
            vocab as i64,
            mass.as_mut_ptr(),
            32,
        )
    };
    assert_eq!(rc, 0);
    assert!((mass[0] - 0.5).abs() < 1e-5, "{}", mass[0]);
    assert!(out[..vocab].iter().all(|x| (x - 0.01).abs() < 1e-6));
    assert!(mass[1].is_nan(), "{}", mass[1]);
    assert!(out[vocab..].iter().all(|x| x.is_nan()));
}

/// The kernels' kept set of one row (kernels/truncate.cuh, one block of 128 threads, as the
/// truncating row kernel finds it: from candidates with top-k on) and ln of its normaliser.
fn kernel_kept_set<T: Logit>(row: &[T], t: f32, tr: &Truncation) -> (Vec<bool>, f32) {
    kernel_kept_set_in(row, t, tr, 128)
}

/// [`kernel_kept_set`] with blocks of `block` threads.
fn kernel_kept_set_in<T: Logit>(
    row: &[T],
    t: f32,
    tr: &Truncation,
    block: u32,
) -> (Vec<bool>, f32) {
    let dtype = match T::DTYPE {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::BF16 => 2,
    };
    let mut out = vec![7u8; row.len()];
    let mut log_norm = f32::NAN;
    // SAFETY: `row` holds `len` values of T, `out` `len` bytes, `log_norm` one float.
    let rc = unsafe {
        asps_emu_kept_set(
            dtype,
            row.as_ptr().cast(),
            row.len() as i32,
            tr.top_k,
            tr.top_p,
            tr.min_p,
            1.0 / t,
            out.as_mut_ptr(),
            &mut log_norm,
            block,
        )
    };
    assert_eq!(rc, 0);
    (out.iter().map(|&k| k == 1).collect(), log_norm)
}

/// The kernels' kept sets equal the reference's, token for token, on 1200 random rows of f32,
/// f16 and bf16 (V up to 20000, ties, masked tokens, negative and large logits) under every mix
/// of top-k, top-p and min-p at three temperatures, except rows on a float near-tie of a
/// threshold (at most 2%); and the kept set's log-normaliser agrees to 1e-4.
#[test]
fn kept_sets_match_the_reference() {
    fn check<T: Logit>(seed: u64) -> (usize, usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut rows, mut ties) = (0, 0);
        for _ in 0..400 {
            // A quarter of the rows long enough that threads hold more than four tiles (the
            // candidates' rereads of kernels/truncate.cuh).
            let v = if rng.random::<f64>() < 0.25 {
                rng.random_range(8000..20000)
            } else {
                rng.random_range(1..5000)
            };
            let spread = [1.0, 8.0, 60.0][rng.random_range(0..3)];
            let levels = rng.random_range(2..400) as f64;
            let row: Vec<T> = (0..v)
                .map(|_| {
                    if rng.random::<f64>() < 0.02 {
                        T::from_f64(f64::NEG_INFINITY)
                    } else {
                        // Quantised values: ties everywhere.
                        let q = (rng.random::<f64>() * levels).floor() / levels;
                        T::from_f64(spread * (q - 0.7))
                    }
                })
                .collect();
            if row.iter().all(|x| x.to_f64() == f64::NEG_INFINITY) {
                continue;
            }
            let t = [0.5f32, 1.0, 2.0][rng.random_range(0..3)];
            let tr = Truncation {
                top_k: [0, 1, 2, 20, 50, 300, 1000, 6000][rng.random_range(0..8)],
                top_p: [1.0, 0.3, 0.9, 0.99, 1e-6][rng.random_range(0..5)],
                min_p: [0.0, 0.05, 0.2][rng.random_range(0..3)],
            };
            let want = kept_tokens(&row, f64::from(t), &tr).unwrap();
            let (got, log_norm) = kernel_kept_set(&row, t, &tr);
            rows += 1;
            if got != want {
                // A float near-tie of a threshold: the kept set moves with top-p or min-p
                // moved by a relative 1e-6.
                assert!(
                    threshold_near_tie(&row, f64::from(t), &tr, 1e-6),
                    "{:?} V = {v}, T = {t}, {tr:?}: kept sets differ off a near-tie",
                    T::DTYPE
                );
                ties += 1;
                continue;
            }
            let want_ln = truncated_log_norm(&row, f64::from(t), &want);
            assert!(
                (f64::from(log_norm) - want_ln).abs() < 1e-4 * want_ln.abs().max(1.0),
                "{:?} V = {v}: ln norm {log_norm} vs {want_ln}",
                T::DTYPE
            );
        }
        (rows, ties)
    }
    let (mut rows, mut ties) = (0, 0);
    for (r, t) in [check::<f32>(1), check::<f16>(2), check::<bf16>(3)] {
        rows += r;
        ties += t;
    }
    println!("kept sets: {ties} near-tie differences in {rows} rows");
    assert!(
        ties * 50 <= rows,
        "{ties} near-tie differences in {rows} rows"
    );
}

/// ln sum over the kept tokens of exp((x - max) / T), in f64.
fn truncated_log_norm<T: Logit>(row: &[T], t: f64, kept: &[bool]) -> f64 {
    let max = row
        .iter()
        .map(|x| x.to_f64())
        .filter(|x| x.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    row.iter()
        .zip(kept)
        .filter(|(_, k)| **k)
        .map(|(x, _)| ((x.to_f64() - max) / t).exp())
        .sum::<f64>()
        .ln()
}

/// Top-p without top-k finds the threshold's bucket from the row pass's counts, then takes its
/// values from the candidates gathered around the estimated bucket, from a second gathering
/// pass when the estimate missed, or from the row itself when the bucket holds more values than
/// the candidate buffer (kernels/truncate.cuh, truncate_row_from_counts). Rows built for each
/// way, and rows whose values span many binades at small temperatures (buckets far wider than
/// the temperature, whose middles misjudge their masses), keep the reference's sets exactly,
/// with its log-normaliser to 1e-4.
#[test]
fn top_p_alone_finds_the_threshold_every_way() {
    fn check<T: Logit>(row: &[f64], t: f32, top_p: f32, min_p: f32) {
        let row: Vec<T> = row.iter().map(|&x| T::from_f64(x)).collect();
        let tr = Truncation {
            top_k: 0,
            top_p,
            min_p,
        };
        let want = kept_tokens(&row, f64::from(t), &tr).unwrap();
        let (got, log_norm) = kernel_kept_set(&row, t, &tr);
        assert!(
            got == want,
            "{:?} V = {}, T = {t}, {tr:?}: {} kept, {} by the reference",
            T::DTYPE,
            row.len(),
            got.iter().filter(|&&k| k).count(),
            want.iter().filter(|&&k| k).count()
        );
        let want_ln = truncated_log_norm(&row, f64::from(t), &want);
        assert!(
            (f64::from(log_norm) - want_ln).abs() < 1e-4 * want_ln.abs().max(1.0),
            "{:?}: ln norm {log_norm} vs {want_ln}",
            T::DTYPE
        );
    }
    fn check_all(row: &[f64], t: f32, top_p: f32, min_p: f32) {
        check::<f32>(row, t, top_p, min_p);
        check::<f16>(row, t, top_p, min_p);
        check::<bf16>(row, t, top_p, min_p);
    }
    fn shuffled(mut row: Vec<f64>, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        for i in (1..row.len()).rev() {
            row.swap(i, rng.random_range(0..=i));
        }
        row
    }
    let repeat = |parts: &[(usize, f64)]| -> Vec<f64> {
        parts
            .iter()
            .flat_map(|&(n, x)| std::iter::repeat_n(x, n))
            .collect()
    };
    // The threshold's bucket holds 10000 values (1.0 holds 51% of the mass): selected over the
    // row.
    let crowded = shuffled(repeat(&[(10000, 0.0), (10000, 0.5), (10000, 1.0)]), 1);
    for min_p in [0.0, 0.5, 0.7] {
        check_all(&crowded, 1.0, 0.5, min_p);
    }
    // Every value of the bucket of 16 (16 up to 18) sits at its bottom, one at 17.875 (the max):
    // at T = 1/4 its middle overstates its mass e^3.8 times, so the estimate names it, but the
    // threshold is in the bucket below (15.875, 4000 values): gathered by a second pass.
    let misjudged = shuffled(
        repeat(&[(1, 17.875), (3000, 16.0), (4000, 15.875), (5000, -8.0)]),
        2,
    );
    for min_p in [0.0, 0.01] {
        check_all(&misjudged, 0.25, 0.8, min_p);
    }
    // Values over 50 binades, both signs, in runs of ties, at small temperatures.
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..60 {
        let v = rng.random_range(2000..12000);
        let t = [0.05f32, 0.25, 1.0, 4.0][rng.random_range(0..4)];
        let values: Vec<f64> = (0..rng.random_range(2..300))
            .map(|_| {
                let sign = if rng.random::<f64>() < 0.3 { -1.0 } else { 1.0 };
                sign * 2f64.powf(rng.random_range(-30.0..6.0))
            })
            .collect();
        let row: Vec<f64> = (0..v)
            .map(|_| values[rng.random_range(0..values.len())])
            .collect();
        let top_p = [0.5f32, 0.9, 0.99][rng.random_range(0..3)];
        let min_p = [0.0f32, 0.05][rng.random_range(0..2)];
        check_all(&row, t, top_p, min_p);
    }
}

/// Top-p alone sums the same fixed-point masses as the passes over the whole row, so its kept
/// set and log-normaliser equal, bit for bit, those the kernels find with a top-k that keeps
/// everything (k = V + 1: the candidates, or passes over the row when they overflow): random
/// rows with ties, masked values, and zeros of both signs (which compare equal, so a threshold
/// of +0 keeps -0), at block sizes 32 to 512. Then a row where +0 and -0 split the top mass.
#[test]
fn top_p_alone_sums_as_the_whole_row_does() {
    let mut rng = StdRng::seed_from_u64(21);
    for _ in 0..150 {
        let v = [1usize, 2, 17, 100, 4097, 9000][rng.random_range(0..6)];
        let row: Vec<f32> = (0..v)
            .map(|_| match rng.random_range(0..6) {
                0 => 0.0,
                1 => -0.0,
                2 => f32::NEG_INFINITY,
                _ => ((rng.random::<f64>() * 40.0).floor() / 4.0 - 6.0) as f32,
            })
            .collect();
        if row.iter().all(|x| *x == f32::NEG_INFINITY) {
            continue;
        }
        let t = [0.5f32, 1.0][rng.random_range(0..2)];
        let top_p = [0.3f32, 0.9, 0.999][rng.random_range(0..3)];
        let min_p = [0.0f32, 0.05][rng.random_range(0..2)];
        let alone = Truncation {
            top_k: 0,
            top_p,
            min_p,
        };
        let with_k = Truncation {
            top_k: v as i32 + 1,
            ..alone
        };
        let block = [32u32, 96, 128, 512][rng.random_range(0..4)];
        let (a, ln_a) = kernel_kept_set_in(&row, t, &alone, block);
        let (k, ln_k) = kernel_kept_set_in(&row, t, &with_k, block);
        assert_eq!(
            a, k,
            "V = {v}, T = {t}, {alone:?}, block {block}: kept sets"
        );
        assert_eq!(
            ln_a.to_bits(),
            ln_k.to_bits(),
            "V = {v}, T = {t}, {alone:?}, block {block}: ln {ln_a} vs {ln_k}"
        );
    }
    let mut row = vec![0.0f32, -0.0];
    row.extend(std::iter::repeat_n(-30.0f32, 100));
    let tr = Truncation {
        top_k: 0,
        top_p: 0.4,
        min_p: 0.0,
    };
    let want = kept_tokens(&row, 1.0, &tr).unwrap();
    let (got, ln) = kernel_kept_set(&row, 1.0, &tr);
    assert_eq!(got, want);
    let want_ln = truncated_log_norm(&row, 1.0, &want);
    assert!(
        (f64::from(ln) - want_ln).abs() < 1e-5,
        "ln {ln} vs {want_ln}"
    );
}
