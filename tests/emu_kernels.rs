//! The softmax-statistics, softmax, residual and Philox kernels' own source, compiled for the
//! host with the CPU emulator of tests/emu, against the CPU reference (see tests/emu_verify.rs
//! for what the emulator does and does not show).

use asps::reference::{log_softmax, normalized_residual, row_stats, softmax};
use asps::rng::philox4x32_10;
use asps::{Dtype, Logit};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

unsafe extern "C" {
    fn asps_emu_token_uniforms(
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
        let (mut max, mut log_norm, mut status) = (vec![0f32; n], vec![0f32; n], vec![0i32; n]);
        let t32 = temperature as f32;
        // SAFETY: the buffers hold the rows and outputs the kernel indexes.
        let rc = unsafe {
            asps_emu_softmax_stats(
                code(T::DTYPE),
                host[skip..].as_ptr().cast(),
                stride as i64,
                n as i32,
                vocab as i32,
                1.0 / t32,
                max.as_mut_ptr(),
                log_norm.as_mut_ptr(),
                status.as_mut_ptr(),
                block,
            )
        };
        assert_eq!(rc, 0);
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

/// The kernels' per-token uniforms (kernels/philox.cuh, drawn as a thread of the residual loop
/// draws them, through the Philox cache) equal the reference's bit for bit, on runs that start
/// at even and odd tokens, for every purpose.
#[test]
fn token_uniforms_match_the_reference_bit_for_bit() {
    use asps::rng::{NoiseKey, Purpose, StreamLayout};
    let key = NoiseKey::new(0x0123_4567_89AB_CDEF, (1 << 40) + 5);
    let l = StreamLayout::STANDARD;
    for (purpose, code, row) in [
        (Purpose::Residual, 1, 3),
        (Purpose::Bonus, 2, 0),
        (Purpose::Accept, 3, 0),
        (Purpose::SpsAccept, 4, 7),
        (Purpose::Descend, 5, 2),
    ] {
        for first in [0u32, 1, 1001, u32::MAX - 64] {
            let mut got = vec![0f32; 64];
            // SAFETY: `got` holds the 64 floats written.
            unsafe {
                asps_emu_token_uniforms(
                    key.seed,
                    key.offset,
                    code,
                    row,
                    first,
                    64,
                    got.as_mut_ptr(),
                )
            };
            for (i, g) in got.iter().enumerate() {
                let want = key.uniform_token(&l, purpose, row as usize, first + i as u32);
                assert_eq!(
                    f64::from(*g),
                    want,
                    "{purpose:?} token {}",
                    first + i as u32
                );
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
