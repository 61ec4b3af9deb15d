//! The fused softmax statistics kernel and the device Philox against the CPU reference, on
//! the GPU. Without a GPU each test prints why it skipped.

#[path = "common/batch.rs"]
mod batch;
mod common;
#[path = "common/gpu.rs"]
mod gpu;

use asps::cuda::{RowsShape, SoftmaxStats, kernel_archs, kernels_available};
use asps::reference::row_stats;
use asps::rng::philox4x32_10;
use asps::{Error, Logit, RowProblem};
use gpu::gpu_or_skip;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// With ASPS_REQUIRE_KERNELS=1 (as CI sets) the kernels must really be embedded, for every
/// default architecture; building without them would have failed.
#[test]
fn kernels_are_embedded_when_required() {
    if option_env!("ASPS_EMULATED_DEVICE") == Some("1") {
        // A build for the emulated device carries its image, never CUDA kernels, whatever else
        // is set.
        assert!(!kernels_available());
        assert!(kernel_archs().is_empty());
    } else if option_env!("ASPS_REQUIRE_KERNELS") == Some("1") {
        assert!(kernels_available());
        if option_env!("ASPS_CUDA_ARCHS").is_none() {
            assert_eq!(kernel_archs(), vec![80, 86, 89, 90, 100, 120]);
        }
    }
    // Either way, asking for a GPU gives a value or an error, never a panic.
    match asps::cuda::Gpu::new(0) {
        Ok(_) => {}
        Err(Error::KernelsMissing) => assert!(!kernels_available()),
        Err(Error::NoCudaDriver(_) | Error::Cuda(_)) => {}
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// `rows` rows of `vocab` logits, row r at element `r * stride + skip`; every other element
/// (the padding between rows) is NaN, which the kernel must never read.
fn rows<T: Logit>(
    rng: &mut StdRng,
    rows: usize,
    stride: usize,
    vocab: usize,
    skip: usize,
    scale: f64,
) -> Vec<T> {
    let mut out = vec![T::from_f64(f64::NAN); rows * stride + skip];
    for r in 0..rows {
        for x in &mut out[r * stride + skip..][..vocab] {
            *x = T::from_f64(if rng.random::<f64>() < 0.01 {
                f64::NEG_INFINITY
            } else {
                (rng.random::<f64>() - 0.5) * scale
            });
        }
    }
    out
}

fn check_dtype<T: Logit + cudarc::driver::DeviceRepr>(gpu: &asps::cuda::Gpu) {
    let stream = gpu.context().default_stream();
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = SoftmaxStats::new(&stream, 8).unwrap();
    // Vocabularies of real models, strides that break 16-byte alignment, extreme temperatures.
    let cases = [
        (1000, 1000, 1.0),
        (32000, 32003, 0.7),
        (128_256, 128_256, 1e-3),
        (151_936, 151_941, 10.0),
    ];
    for (vocab, stride, temperature) in cases {
        let n_rows = 4;
        // Also through a view that starts one element in, so no row is 16-byte aligned.
        for skip in [0usize, 1] {
            let host: Vec<T> = rows(&mut rng, n_rows, stride, vocab, skip, 20.0);
            let dev = stream.clone_htod(&host).unwrap();
            let view = dev.slice(skip..);
            let shape = RowsShape {
                rows: n_rows,
                vocab,
                row_stride: stride,
            };
            gpu.softmax_stats(&stream, &view, shape, temperature as f32, &mut out)
                .unwrap();
            let got = out.read(&stream).unwrap();
            assert_eq!(got.len(), n_rows);
            for (r, got) in got.iter().enumerate() {
                let start = r * stride + skip;
                let want =
                    row_stats(&host[start..start + vocab], f64::from(temperature as f32)).unwrap();
                let got = got.as_ref().unwrap();
                assert_eq!(got.max, want.max, "{:?} V={vocab} row {r}", T::DTYPE);
                let tol = 2e-5 * want.log_norm.abs().max(1.0);
                assert!(
                    (got.log_norm - want.log_norm).abs() < tol,
                    "{:?} V={vocab} T={temperature} row {r}: {} vs {}",
                    T::DTYPE,
                    got.log_norm,
                    want.log_norm
                );
            }
        }
    }
}

#[test]
fn softmax_stats_match_the_reference() {
    let Some(gpu) = gpu_or_skip("softmax_stats_match_the_reference") else {
        return;
    };
    check_dtype::<f32>(&gpu);
    check_dtype::<f16>(&gpu);
    check_dtype::<bf16>(&gpu);
}

#[test]
fn bad_rows_are_reported_per_row() {
    let Some(gpu) = gpu_or_skip("bad_rows_are_reported_per_row") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let vocab = 4096;
    let mut host = vec![0.5f32; 4 * vocab];
    host[vocab + 17] = f32::NAN;
    host[2 * vocab + 4000] = f32::INFINITY;
    host[3 * vocab..].fill(f32::NEG_INFINITY);
    let dev = stream.clone_htod(&host).unwrap();
    let mut out = SoftmaxStats::new(&stream, 4).unwrap();
    gpu.softmax_stats(
        &stream,
        &dev,
        RowsShape::contiguous(4, vocab),
        1.0,
        &mut out,
    )
    .unwrap();
    let got = out.read(&stream).unwrap();
    assert!((got[0].as_ref().unwrap().log_norm - (vocab as f64).ln()).abs() < 1e-5);
    assert_eq!(got[1], Err(RowProblem::NaN));
    assert_eq!(got[2], Err(RowProblem::NotFinite));
    assert_eq!(got[3], Err(RowProblem::AllMasked));
}

#[test]
fn bad_arguments_are_refused_before_launch() {
    let Some(gpu) = gpu_or_skip("bad_arguments_are_refused_before_launch") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let dev = stream.alloc_zeros::<f32>(100).unwrap();
    let mut out = SoftmaxStats::new(&stream, 2).unwrap();
    let mut call = |shape, t| gpu.softmax_stats(&stream, &dev, shape, t, &mut out);
    assert!(matches!(
        call(RowsShape::contiguous(2, 51), 1.0),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        call(
            RowsShape {
                rows: 2,
                vocab: 10,
                row_stride: 9
            },
            1.0
        ),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        call(RowsShape::contiguous(0, 10), 1.0),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        call(RowsShape::contiguous(3, 10), 1.0),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        call(
            RowsShape {
                rows: 2,
                vocab: 10,
                row_stride: usize::MAX
            },
            1.0
        ),
        Err(Error::TooLarge(_))
    ));
    for t in [
        0.0,
        -1.0,
        f32::NAN,
        f32::INFINITY,
        1e-45,
        2e-39,
        9e37,
        f32::MAX,
    ] {
        assert!(
            matches!(
                call(RowsShape::contiguous(2, 10), t),
                Err(Error::BadTemperature(_))
            ),
            "{t}"
        );
    }
}

#[test]
fn device_philox_matches_known_answers_and_the_cpu() {
    let Some(gpu) = gpu_or_skip("device_philox_matches_known_answers_and_the_cpu") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let mut counters = vec![
        [0u32; 4],
        [u32::MAX; 4],
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    ];
    let mut keys = vec![[0u32; 2], [u32::MAX; 2], [0xa4093822, 0x299f31d0]];
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..1000 {
        counters.push([rng.random(), rng.random(), rng.random(), rng.random()]);
        keys.push([rng.random(), rng.random()]);
    }
    let kernels = asps::cuda::testing::TestKernels::new(&gpu).unwrap();
    let got = kernels.philox(&stream, &counters, &keys).unwrap();
    assert_eq!(got[0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(got[1], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    assert_eq!(got[2], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
    for i in 0..counters.len() {
        assert_eq!(got[i], philox4x32_10(counters[i], keys[i]));
    }
}

/// The launch-floor kernel of the benches: launches of any valid shape run, and a shape no
/// device could launch is refused before the driver sees it.
#[test]
fn empty_launches_run_and_refuse_impossible_shapes() {
    let Some(gpu) = gpu_or_skip("empty_launches_run_and_refuse_impossible_shapes") else {
        return;
    };
    let stream = gpu.context().default_stream();
    let kernels = asps::cuda::testing::TestKernels::new(&gpu).unwrap();
    kernels.empty(&stream, 3, 512).unwrap();
    kernels.empty(&stream, 1, 1).unwrap();
    stream.synchronize().unwrap();
    for (blocks, threads) in [(0, 512), (1, 0), (1, 1025)] {
        assert!(
            matches!(
                kernels.empty(&stream, blocks, threads),
                Err(Error::Shape(_))
            ),
            "{blocks} blocks of {threads}"
        );
    }
}
