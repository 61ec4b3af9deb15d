//! GPU benches: every entry point (ASpS, SpS and greedy verification; ASpS and SpS also with
//! truncation, [`TRUNCATED`] on target and draft rows; softmax statistics, normalised residual)
//! over V in {32000, 128256, 151936}, n in {1, 4, 8, 16}, B in {1, 8, 64, 256}, bf16 and f32
//! logits; GPU time by CUDA events; verification also under CUDA graph replay at B = 1. In the
//! same run: the device's read bandwidth (a read-only reduction over 2 GiB, larger than any L2)
//! and, per case, the floor: the bytes the call must read once at that bandwidth; and the
//! launch floor, a graph of two empty launches replayed (what two dependent launches cost
//! before any work: the floor of a call at B = 1).
//!
//!     cargo bench --bench gpu                  # everything; writes bench/results/gpu-*.json
//!     ASPS_BENCH_QUICK=1 cargo bench --bench gpu   # the two target shapes only
//!
//! Criterion reports the target shapes of BENCHMARKS.md; the JSON file holds every case
//! (median and p90 of 50 event-timed calls after 10 warm-up calls). Without a GPU the bench
//! prints why it skipped and exits successfully.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use asps::cuda::testing::TestKernels;
use asps::cuda::{
    BatchLogits, Gpu, RowsShape, SamplingInputs, SoftmaxStats, TruncationInputs, Verifier,
    VerifyInputs, VerifyOutputs,
};
use asps::reference::Truncation;
use asps::{Dtype, Logit, Method, Result};
use criterion::Criterion;
use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, sys};
use half::bf16;

#[path = "../tests/common/batch.rs"]
mod batch;
#[path = "../tests/common/gpu.rs"]
mod gpu;
use gpu::gpu_or_skip;

const VOCABS: [usize; 3] = [32_000, 128_256, 151_936];
const DRAFTS: [usize; 4] = [1, 4, 8, 16];
const BATCHES: [usize; 4] = [1, 8, 64, 256];
/// The truncation of the `verify_*_truncated` entries, on every request's target and draft rows:
/// all three rules, so that the entry pays every pass truncation can add.
const TRUNCATED: Truncation = Truncation {
    top_k: 50,
    top_p: 0.9,
    min_p: 0.05,
};
const WARMUP: usize = 10;
const REPS: usize = 50;

/// One measured case, a line of the JSON file.
struct Case {
    entry: String,
    dtype: Dtype,
    batch: usize,
    n: usize,
    vocab: usize,
    graph: bool,
    median_us: f64,
    p90_us: f64,
    bytes: u64,
    floor_us: f64,
}

/// Times `f` (which queues work on `stream`) REPS times with CUDA events; (median, p90) in µs.
fn time_events(stream: &Arc<CudaStream>, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    for _ in 0..WARMUP {
        f()?;
    }
    let ctx = stream.context();
    let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    let mut pairs = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let (start, end) = (ctx.new_event(flags)?, ctx.new_event(flags)?);
        start.record(stream)?;
        f()?;
        end.record(stream)?;
        pairs.push((start, end));
    }
    stream.synchronize()?;
    let mut us: Vec<f64> = pairs
        .iter()
        .map(|(s, e)| s.elapsed_ms(e).map(|ms| f64::from(ms) * 1e3))
        .collect::<std::result::Result<_, _>>()?;
    us.sort_by(f64::total_cmp);
    Ok((us[REPS / 2], us[REPS * 9 / 10]))
}

/// Criterion's view of the same work: GPU time of `iters` calls by CUDA events.
fn criterion_events(
    stream: &Arc<CudaStream>,
    iters: u64,
    mut f: impl FnMut() -> Result<()>,
) -> Duration {
    let ctx = stream.context();
    let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    let (start, end) = (ctx.new_event(flags).unwrap(), ctx.new_event(flags).unwrap());
    start.record(stream).unwrap();
    for _ in 0..iters {
        f().unwrap();
    }
    end.record(stream).unwrap();
    end.synchronize().unwrap();
    Duration::from_secs_f64(f64::from(start.elapsed_ms(&end).unwrap()) / 1e3)
}

/// Read bandwidth in bytes per µs, from the median of timed reads of a 2 GiB buffer.
fn read_bandwidth(gpu: &Gpu, stream: &Arc<CudaStream>) -> Result<f64> {
    let bytes = 2usize << 30;
    let data = stream.alloc_zeros::<u8>(bytes)?;
    let mut sink = stream.alloc_zeros::<u32>(1)?;
    let kernels = TestKernels::new(gpu)?;
    let (median, _) = time_events(stream, || kernels.read_probe(stream, &data, &mut sink))?;
    Ok(bytes as f64 / median)
}

/// Deterministic pseudo-random logits in [-4, 4).
fn fill<T: Logit>(len: usize, salt: u64) -> Vec<T> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            T::from_f64((x >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0)
        })
        .collect()
}

/// Buffers for the largest batch and draft at one vocabulary; smaller cases use a prefix.
struct Buffers<T> {
    target: CudaSlice<T>,
    draft: CudaSlice<T>,
    tokens: CudaSlice<i32>,
    temps: CudaSlice<f32>,
    seeds: CudaSlice<u64>,
    offsets: CudaSlice<u64>,
    probs: CudaSlice<f32>,
}

fn buffers<T: Logit + DeviceRepr>(
    stream: &Arc<CudaStream>,
    vocab: usize,
    bmax: usize,
    nmax: usize,
) -> Result<Buffers<T>> {
    let target_host: Vec<T> = fill(bmax * (nmax + 1) * vocab, 1);
    // The draft is the target plus noise, so that acceptance is realistic.
    let noise: Vec<T> = fill(bmax * nmax * vocab, 2);
    let draft_host: Vec<T> = (0..bmax * nmax * vocab)
        .map(|i| {
            let (b, rest) = (i / (nmax * vocab), i % (nmax * vocab));
            let t = target_host[b * (nmax + 1) * vocab + rest].to_f64();
            T::from_f64(t + 0.25 * noise[i].to_f64())
        })
        .collect();
    let tokens: Vec<i32> = (0..bmax * nmax)
        .map(|i| {
            let row = &draft_host[i * vocab..(i + 1) * vocab];
            asps::reference::argmax(row.iter().map(|x| x.to_f64())).unwrap() as i32
        })
        .collect();
    Ok(Buffers {
        target: stream.clone_htod(&target_host)?,
        draft: stream.clone_htod(&draft_host)?,
        tokens: stream.clone_htod(&tokens)?,
        temps: stream.clone_htod(&vec![1.0f32; bmax])?,
        seeds: stream.clone_htod(&(0..bmax as u64).collect::<Vec<_>>())?,
        offsets: stream.alloc_zeros(bmax)?,
        probs: stream.clone_htod(&vec![1.0f32 / vocab as f32; bmax * nmax * vocab])?,
    })
}

#[allow(clippy::too_many_arguments)]
fn bench_shape<T: Logit + DeviceRepr>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    buf: &mut Buffers<T>,
    (b, n, v): (usize, usize, usize),
    nmax: usize,
    bandwidth: f64,
    criterion: Option<&mut Criterion>,
    cases: &mut Vec<Case>,
) -> Result<()> {
    let elem = T::DTYPE.size() as u64;
    let lens = stream.clone_htod(&vec![n as i32; b])?;
    let tokens = stream.clone_htod(&{
        let all = stream.clone_dtoh(&buf.tokens)?;
        (0..b)
            .flat_map(|i| all[i * nmax..i * nmax + n].to_vec())
            .collect::<Vec<_>>()
    })?;
    let mut verifier = Verifier::new(gpu, stream, b, n)?;
    let mut out = VerifyOutputs::new(stream, b, n)?;
    let verify_bytes = (b * (2 * n + 1) * v) as u64 * elem;
    let mut record = |entry: String, graph: bool, (median_us, p90_us): (f64, f64), bytes: u64| {
        let floor_us = bytes as f64 / bandwidth;
        cases.push(Case {
            entry,
            dtype: T::DTYPE,
            batch: b,
            n,
            vocab: v,
            graph,
            median_us,
            p90_us,
            bytes,
            floor_us,
        });
    };
    let mut criterion = criterion;
    // Every request truncates both models' rows by TRUNCATED (the `_truncated` entries).
    let top_k = stream.clone_htod(&vec![TRUNCATED.top_k; b])?;
    let top_p = stream.clone_htod(&vec![TRUNCATED.top_p; b])?;
    let min_p = stream.clone_htod(&vec![TRUNCATED.min_p; b])?;
    let truncation = |on: bool| {
        if !on {
            return TruncationInputs::default();
        }
        TruncationInputs {
            top_k: Some(top_k.as_view()),
            top_p: Some(top_p.as_view()),
            min_p: Some(min_p.as_view()),
        }
    };
    // Every method plain; ASpS and SpS truncated too (greedy ignores truncation).
    let runs = Method::ALL
        .into_iter()
        .map(|m| (m, false))
        .chain([(Method::Asps, true), (Method::Sps, true)]);
    for (method, truncated) in runs {
        let suffix = if truncated { "_truncated" } else { "" };
        let entry = format!("verify_{method:?}{suffix}").to_lowercase();
        let mut call = || -> Result<()> {
            let inputs = VerifyInputs {
                method,
                batch: b,
                max_draft: n,
                vocab: v,
                target: BatchLogits {
                    data: buf.target.as_view(),
                    batch_stride: (nmax + 1) * v,
                    row_stride: v,
                },
                draft: BatchLogits {
                    data: buf.draft.as_view(),
                    batch_stride: nmax * v,
                    row_stride: v,
                },
                draft_tokens: tokens.as_view(),
                draft_lens: lens.as_view(),
                seeds: buf.seeds.slice(..b),
                sampling: SamplingInputs {
                    target: truncation(truncated),
                    draft: truncation(truncated),
                    ..SamplingInputs::plain(buf.temps.slice(..b))
                },
            };
            verifier.verify(&inputs, &mut buf.offsets, &mut out)
        };
        record(
            entry.clone(),
            false,
            time_events(stream, &mut call)?,
            verify_bytes,
        );
        if let Some(c) = criterion.as_deref_mut() {
            let id = format!("{entry}/{:?}/B={b}/n={n}/V={v}", T::DTYPE);
            c.bench_function(&id, |bench| {
                bench.iter_custom(|iters| criterion_events(stream, iters, &mut call))
            });
        }
        if b == 1 {
            stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
            call()?;
            let graph = stream
                .end_capture(sys::CUgraphInstantiate_flags(0))?
                .expect("a captured verification");
            record(
                entry.clone(),
                true,
                time_events(stream, || Ok(graph.launch()?))?,
                verify_bytes,
            );
            if let Some(c) = criterion.as_deref_mut() {
                let id = format!("{entry}_graph/{:?}/B={b}/n={n}/V={v}", T::DTYPE);
                c.bench_function(&id, |bench| {
                    bench.iter_custom(|iters| {
                        criterion_events(stream, iters, || Ok(graph.launch()?))
                    })
                });
            }
        }
    }
    // Softmax statistics of every target row of the batch.
    let rows = b * (n + 1);
    let mut stats = SoftmaxStats::new(stream, rows)?;
    let shape = RowsShape {
        rows,
        vocab: v,
        row_stride: v,
    };
    let timing = time_events(stream, || {
        gpu.softmax_stats(stream, &buf.target, shape, 1.0, &mut stats)
    })?;
    record(
        "softmax_stats".into(),
        false,
        timing,
        rows as u64 * v as u64 * elem,
    );
    // Normalised residual of B * n rows of f32 probabilities (p and q read, the result written).
    let rows = b * n;
    let mut res = stream.alloc_zeros::<f32>(rows * v)?;
    let mut mass = stream.alloc_zeros::<f32>(rows)?;
    let q = buf.probs.slice(..rows * v);
    let shape = RowsShape::contiguous(rows, v);
    let timing = time_events(stream, || {
        gpu.normalized_residual(stream, &buf.probs, &q, shape, 0.9, &mut res, &mut mass)
    })?;
    record(
        "normalized_residual".into(),
        false,
        timing,
        3 * (rows * v) as u64 * 4,
    );
    Ok(())
}

/// The launch floor: the median time of replaying a graph of two dependent launches of an
/// empty kernel, two blocks of 512 threads per SM each (the shape of a small call's launches),
/// µs.
fn launch_floor(gpu: &Gpu, stream: &Arc<CudaStream>) -> Result<f64> {
    let kernels = TestKernels::new(gpu)?;
    let sms = gpu
        .context()
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let blocks = 2 * sms.max(1) as u32;
    stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
    kernels.empty(stream, blocks, 512)?;
    kernels.empty(stream, blocks, 512)?;
    let graph = stream
        .end_capture(sys::CUgraphInstantiate_flags(0))?
        .expect("a captured pair of launches");
    let (median, _) = time_events(stream, || Ok(graph.launch()?))?;
    Ok(median)
}

fn json(device: &str, driver: i32, bandwidth: f64, launch_floor_us: f64, cases: &[Case]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{{");
    let _ = writeln!(s, "  \"device\": {device:?},");
    let _ = writeln!(s, "  \"driver_cuda_version\": {driver},");
    let _ = writeln!(s, "  \"crate_commit\": {:?},", env!("ASPS_GIT_COMMIT"));
    // What the `_truncated` entries truncate by: bench/baselines.py truncates its rows the same.
    let _ = writeln!(
        s,
        "  \"truncation\": {{\"top_k\": {}, \"top_p\": {}, \"min_p\": {}}},",
        TRUNCATED.top_k, TRUNCATED.top_p, TRUNCATED.min_p
    );
    let _ = writeln!(
        s,
        "  \"read_bandwidth_gb_s\": {:.1},",
        bandwidth * 1e6 / 1e9
    );
    let _ = writeln!(s, "  \"launch_floor_us\": {launch_floor_us:.2},");
    let _ = writeln!(s, "  \"cases\": [");
    for (i, c) in cases.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"entry\": {:?}, \"dtype\": \"{}\", \"batch\": {}, \"n\": {}, \"vocab\": {}, \"graph\": {}, \
             \"median_us\": {:.2}, \"p90_us\": {:.2}, \"bytes\": {}, \"floor_us\": {:.2}, \"ratio_to_floor\": {:.3}}}",
            c.entry,
            c.dtype.kernel_suffix(),
            c.batch,
            c.n,
            c.vocab,
            c.graph,
            c.median_us,
            c.p90_us,
            c.bytes,
            c.floor_us,
            c.median_us / c.floor_us
        );
        let _ = writeln!(s, "{}", if i + 1 < cases.len() { "," } else { "" });
    }
    let _ = writeln!(s, "  ]");
    let _ = writeln!(s, "}}");
    s
}

fn run_dtype<T: Logit + DeviceRepr>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    quick: bool,
    bandwidth: f64,
    criterion: &mut Criterion,
    cases: &mut Vec<Case>,
) -> Result<()> {
    let targets = [(64, 8, 128_256), (1, 4, 32_000)];
    for v in VOCABS {
        let shapes: Vec<(usize, usize, usize)> = if quick {
            targets.iter().copied().filter(|s| s.2 == v).collect()
        } else {
            BATCHES
                .iter()
                .flat_map(|&b| DRAFTS.iter().map(move |&n| (b, n, v)))
                .collect()
        };
        if shapes.is_empty() {
            continue;
        }
        let bmax = shapes.iter().map(|s| s.0).max().unwrap();
        let nmax = shapes.iter().map(|s| s.1).max().unwrap();
        let mut buf = buffers::<T>(stream, v, bmax, nmax)?;
        for shape in shapes {
            let headline = targets.contains(&shape) && T::DTYPE == Dtype::BF16;
            let c = headline.then_some(&mut *criterion);
            bench_shape(gpu, stream, &mut buf, shape, nmax, bandwidth, c, cases)?;
        }
    }
    Ok(())
}

fn main() {
    let Some(gpu) = gpu_or_skip("gpu benches") else {
        return;
    };
    // The emulated device of tests/emu is a CPU: it has no GPU timings to give (its launch and
    // byte counts are `tests/emu/gpu cargo test --release --test emu_counts`).
    if gpu.emulated {
        eprintln!(
            "SKIPPED gpu benches: the emulated device times nothing (see tests/emu_counts.rs)"
        );
        return;
    }
    if let Err(e) = run(&gpu) {
        eprintln!("gpu benches failed: {e}");
        std::process::exit(1);
    }
}

fn run(gpu: &Gpu) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::var("ASPS_BENCH_QUICK").is_ok_and(|v| v == "1");
    // Everything below runs on one stream, so cudarc's cross-stream events are not needed; off,
    // they cannot break graph capture (a capture may not wait on events recorded outside it).
    // SAFETY: no buffer is used from two streams.
    unsafe { gpu.context().disable_event_tracking() };
    let stream = gpu.context().new_stream()?; // capturable, unlike the legacy stream
    let (device, driver) = gpu.describe()?;
    let bandwidth = read_bandwidth(gpu, &stream)?;
    let floor_us = launch_floor(gpu, &stream)?;
    println!(
        "{device}, driver CUDA {driver}: read bandwidth {:.0} GB/s; two empty launches in a \
         graph {floor_us:.2} us",
        bandwidth * 1e6 / 1e9
    );
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let mut cases = Vec::new();
    run_dtype::<bf16>(gpu, &stream, quick, bandwidth, &mut criterion, &mut cases)?;
    run_dtype::<f32>(gpu, &stream, quick, bandwidth, &mut criterion, &mut cases)?;
    criterion.final_summary();

    println!(
        "{:<22} {:>5} {:>4} {:>3} {:>7} {:>5} {:>10} {:>10} {:>10} {:>6}",
        "entry", "dtype", "B", "n", "V", "graph", "median_us", "p90_us", "floor_us", "ratio"
    );
    for c in &cases {
        println!(
            "{:<22} {:>5} {:>4} {:>3} {:>7} {:>5} {:>10.2} {:>10.2} {:>10.2} {:>6.2}",
            c.entry,
            c.dtype.kernel_suffix(),
            c.batch,
            c.n,
            c.vocab,
            c.graph,
            c.median_us,
            c.p90_us,
            c.floor_us,
            c.median_us / c.floor_us
        );
    }
    let text = json(&device, driver, bandwidth, floor_us, &cases);
    let slug: String = device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = format!("gpu-{slug}-{stamp}.json");
    std::fs::create_dir_all("bench/results")?;
    std::fs::write(format!("bench/results/{name}"), &text)?;
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/{name}"), &text);
    }
    println!("wrote bench/results/{name}");
    Ok(())
}
