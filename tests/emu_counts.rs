//! The structure of one verify call, counted by the emulated device (tests/emu/device): its
//! launches (kernel, grid, block) and the global memory each one moves through the kernels'
//! ld()/st() helpers, beside one read of the logits (the floor of DESIGN.md's performance
//! model). Two measures: "loaded", every byte the threads loaded (a value all 512 threads of a
//! block load counts 512 times), and "unique", the 32-byte sectors touched, once each per launch
//! (what DRAM would move if nothing stayed in cache between launches). These are the numbers
//! performance work is judged on until a GPU runs.
//!
//!     tests/emu/gpu cargo test --release --test emu_counts                       # the defaults
//!     tests/emu/gpu cargo test --release --test emu_counts -- sps f16 64 8 128256  # METHOD DTYPE B N V
//!
//! Defaults: ASpS, SpS and greedy at bf16, B = 8, n = 4, V = 32000, every request drafting n
//! tokens at temperature 1. Besides printing, it checks what the structure promises: three
//! launches per call, and a row pass that reads every logits row exactly once (plus a few bytes
//! of per-row metadata). Elsewhere than on the emulated device it prints SKIPPED.

#[path = "common/gpu.rs"]
mod gpu;

use std::fs;
use std::process::ExitCode;

use asps::cuda::{BatchLogits, Verifier, VerifyInputs, VerifyOutputs};
use asps::{Dtype, Logit, Method};
use cudarc::driver::DeviceRepr;
use gpu::{TestGpu, gpu_or_skip};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a thread of the row kernel may load besides its share of the row: its request's draft
/// length and temperature.
const ROW_THREAD_METADATA: u64 = 8;
/// What a block of the row kernel may load besides: the draft token and its logit.
const ROW_BLOCK_METADATA: u64 = 8;

struct Launch {
    kernel: String,
    grid: String,
    block: String,
    loaded: u64,
    unique_read: u64,
    unique_written: u64,
    philox: u64,
}

/// The product of dimensions written `XxYxZ`, as the trace writes grids and blocks.
fn volume(dims: &str) -> Option<u64> {
    dims.split('x').map(|d| d.parse::<u64>().ok()).product()
}

/// The launches ASPS_EMU_TRACE holds past byte `from`.
fn launches(trace: &str, from: usize) -> Vec<Launch> {
    trace[from..]
        .lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_string)
            };
            Some(Launch {
                kernel: field("kernel")?,
                grid: field("grid")?,
                block: field("block")?,
                loaded: field("bytes_read")?.parse().ok()?,
                unique_read: field("unique_read")?.parse().ok()?,
                unique_written: field("unique_written")?.parse().ok()?,
                philox: field("philox")?.parse().ok()?,
            })
        })
        .collect()
}

/// Seeded logits in [-4, 4).
fn logits<T: Logit>(len: usize, seed: u64) -> Vec<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| T::from_f64(8.0 * rng.random::<f64>() - 4.0))
        .collect()
}

/// Runs one verify call and returns its launches.
fn count<T: Logit + DeviceRepr>(
    gpu: &TestGpu,
    trace_path: &str,
    method: Method,
    (b, n, v): (usize, usize, usize),
) -> Vec<Launch> {
    let stream = gpu.context().default_stream();
    let target = stream.clone_htod(&logits::<T>(b * (n + 1) * v, 1)).unwrap();
    let draft = stream.clone_htod(&logits::<T>(b * n * v, 2)).unwrap();
    let tokens: Vec<i32> = (0..b * n).map(|i| (i * 7919 % v) as i32).collect();
    let tokens = stream.clone_htod(&tokens).unwrap();
    let lens = stream.clone_htod(&vec![n as i32; b]).unwrap();
    let temps = stream.clone_htod(&vec![1.0f32; b]).unwrap();
    let seeds = stream
        .clone_htod(&(0..b as u64).collect::<Vec<_>>())
        .unwrap();
    let mut offsets = stream.alloc_zeros::<u64>(b).unwrap();
    let mut verifier = Verifier::new(gpu, &stream, b, n).unwrap();
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    let inputs = VerifyInputs {
        batch: b,
        max_draft: n,
        vocab: v,
        target: BatchLogits::packed(target.as_view(), n + 1, v),
        draft: BatchLogits::packed(draft.as_view(), n, v),
        draft_tokens: tokens.as_view(),
        draft_lens: lens.as_view(),
        temperatures: temps.as_view(),
        seeds: seeds.as_view(),
    };
    let from = fs::read_to_string(trace_path).unwrap_or_default().len();
    verifier
        .verify(method, &inputs, &mut offsets, &mut out)
        .unwrap();
    stream.synchronize().unwrap();
    launches(&fs::read_to_string(trace_path).unwrap(), from)
}

fn report<T: Logit + DeviceRepr>(
    gpu: &TestGpu,
    trace: &str,
    methods: &[Method],
    shape: (usize, usize, usize),
) -> Result<(), String> {
    let (b, n, v) = shape;
    let logits_bytes = (b * (2 * n + 1) * v * std::mem::size_of::<T>()) as u64;
    println!(
        "one verify call: {:?}, B = {b}, n = {n}, V = {v}; one read of the logits = {logits_bytes} bytes",
        T::DTYPE
    );
    println!(
        "  {:<7} {:<28} {:>9} {:>9} {:>12} {:>12} {:>10} {:>8} {:>9}",
        "method",
        "kernel",
        "grid",
        "block",
        "loaded",
        "unique read",
        "written",
        "/ logits",
        "philox"
    );
    for &method in methods {
        let calls = count::<T>(gpu, trace, method, shape);
        let line = |kernel: &str, grid: &str, block: &str, loaded, read, written, philox| {
            println!(
                "  {:<7} {kernel:<28} {grid:>9} {block:>9} {loaded:>12} {read:>12} {written:>10} {:>8.3} {philox:>9}",
                format!("{method:?}"),
                read as f64 / logits_bytes as f64
            );
        };
        for l in &calls {
            line(
                &l.kernel,
                &l.grid,
                &l.block,
                l.loaded,
                l.unique_read,
                l.unique_written,
                l.philox,
            );
        }
        let sum = |f: fn(&Launch) -> u64| calls.iter().map(f).sum::<u64>();
        line(
            &format!("total: {} launches", calls.len()),
            "",
            "",
            sum(|l| l.loaded),
            sum(|l| l.unique_read),
            sum(|l| l.unique_written),
            sum(|l| l.philox),
        );
        if calls.len() != 3 {
            return Err(format!("{method:?}: {} launches, expected 3", calls.len()));
        }
        // The row pass loads every logits row exactly once.
        let rows = &calls[0];
        // Blocks as launched: B (2n + 1) rows, each in as many parts as the verifier split it.
        let blocks = volume(&rows.grid)
            .ok_or_else(|| format!("{method:?}: unreadable grid `{}`", rows.grid))?;
        if blocks % (b * (2 * n + 1)) as u64 != 0 {
            return Err(format!(
                "{method:?}: a row launch of {blocks} blocks for {b} x {} rows",
                2 * n + 1
            ));
        }
        // Threads per block as launched (VERIFY_THREADS of kernels/launch_config.h).
        let row_threads = volume(&rows.block)
            .ok_or_else(|| format!("{method:?}: unreadable block `{}`", rows.block))?;
        let most = logits_bytes + blocks * (row_threads * ROW_THREAD_METADATA + ROW_BLOCK_METADATA);
        if !rows.kernel.starts_with("asps_verify_rows")
            || rows.unique_read < logits_bytes
            || rows.loaded > most
        {
            return Err(format!(
                "{method:?}: the row pass {} loaded {} bytes ({} unique); every logits row once \
                 is {logits_bytes} (at most {most} with its metadata)",
                rows.kernel, rows.loaded, rows.unique_read
            ));
        }
        // ASpS draws per-token noise on every row of the residual pass. Tokens 2k and 2k + 1
        // share a Philox block, and a thread takes consecutive tokens, so where rows start on
        // 16-byte boundaries (packed rows of a multiple of 16 bytes) a row costs at most
        // ceil(V / 2) blocks; drawing each token's block anew costs up to V.
        let residual = &calls[1];
        let aligned = (v * std::mem::size_of::<T>()) % 16 == 0;
        let most = (b * (n + 1) * v.div_ceil(2)) as u64;
        if method == Method::Asps && aligned && residual.philox > most {
            return Err(format!(
                "{method:?}: the residual pass computed {} Philox blocks for {} rows of {v} \
                 tokens (at most {most}: one per token pair)",
                residual.philox,
                b * (n + 1)
            ));
        }
    }
    Ok(())
}

/// What to count: the rules, the logits' type, and (B, n, V).
type Request = (Vec<Method>, Dtype, (usize, usize, usize));

/// The request in `args` (METHOD DTYPE B N V, or nothing for the defaults); `None` for other
/// arguments, such as a test-name filter that `cargo test <filter>` passes to every test binary.
fn parse(args: &[String]) -> Option<Result<Request, String>> {
    match args {
        [] => Some(Ok((Method::ALL.to_vec(), Dtype::BF16, (8, 4, 32000)))),
        [method, dtype, b, n, v] => Some(parse_request(method, dtype, [b, n, v])),
        _ => None,
    }
}

fn parse_request(method: &str, dtype: &str, shape: [&String; 3]) -> Result<Request, String> {
    let [b, n, v] = shape;
    let methods = match method {
        "asps" => vec![Method::Asps],
        "sps" => vec![Method::Sps],
        "greedy" => vec![Method::Greedy],
        "all" => Method::ALL.to_vec(),
        m => return Err(format!("unknown method {m}")),
    };
    let dtype = match dtype {
        "f32" => Dtype::F32,
        "f16" => Dtype::F16,
        "bf16" => Dtype::BF16,
        d => return Err(format!("unknown dtype {d}")),
    };
    let num = |s: &String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
    Ok((methods, dtype, (num(b)?, num(n)?, num(v)?)))
}

fn main() -> ExitCode {
    // libtest's flags (cargo test -- --nocapture, --list, ...) mean nothing here.
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = all.into_iter().filter(|a| !a.starts_with('-')).collect();
    let (methods, dtype, shape) = match parse(&args) {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!(
                "emu_counts: {e}; arguments: METHOD (asps|sps|greedy|all) DTYPE (f32|f16|bf16) B N V"
            );
            return ExitCode::from(2);
        }
        None => {
            eprintln!("emu_counts: not a count request ({args:?}), nothing to do");
            return ExitCode::SUCCESS;
        }
    };
    let Some(gpu) = gpu_or_skip("emu_counts") else {
        return ExitCode::SUCCESS;
    };
    if !gpu.emulated {
        eprintln!("SKIPPED emu_counts: launch and byte counts come from the emulated device");
        return ExitCode::SUCCESS;
    }
    let trace = std::env::temp_dir().join(format!("asps-emu-counts-{}.trace", std::process::id()));
    let trace = trace.to_str().unwrap().to_string();
    // SAFETY: main is single-threaded here (this test has no harness and spawned nothing); the
    // emulated device reads the variable at each launch.
    unsafe { std::env::set_var("ASPS_EMU_TRACE", &trace) };
    let result = match dtype {
        Dtype::F32 => report::<f32>(&gpu, &trace, &methods, shape),
        Dtype::F16 => report::<f16>(&gpu, &trace, &methods, shape),
        Dtype::BF16 => report::<bf16>(&gpu, &trace, &methods, shape),
    };
    let _ = fs::remove_file(&trace);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emu_counts: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
