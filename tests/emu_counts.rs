//! The structure of one verify call, counted by the emulated device (tests/emu/device): its
//! launches (kernel, grid, block) and the global memory each one moves through the kernels'
//! ld()/st() helpers, beside one read of the logits (the floor of docs/design.md's performance
//! model). Two measures: "loaded", every byte the threads loaded (a value all 512 threads of a
//! block load counts 512 times), and "unique", the 32-byte sectors touched, once each per launch
//! (what DRAM would move if nothing stayed in cache between launches). These are the numbers
//! performance work is judged on until a GPU runs.
//!
//!     tests/emu/gpu cargo test --release --test emu_counts                       # the defaults
//!     tests/emu/gpu cargo test --release --test emu_counts -- sps f16 64 8 128256  # METHOD DTYPE B N V
//!
//! Defaults: ASpS, SpS and greedy at bf16, B = 8, n = 4, V = 32000, every request drafting n
//! tokens at temperature 1, in every form of the decide step (src/cuda/verify/form.rs). Besides
//! printing, it checks what the structure promises: two launches per call in the parallel and
//! lazy forms, with a row pass that reads every logits row exactly once (plus a few bytes of
//! per-row metadata), one launch reading every row at least once in the fused form, and, for
//! ASpS with every draft token kept, a parallel decide launch that reads only the bonus rows and
//! draws one Philox block per tile of 16 of their tokens; and with top-k 50, top-p 0.9 and
//! min-p 0.05 on every row, still two launches, whose row launch loads each row about once. Elsewhere than on the emulated device
//! it prints SKIPPED. (benches/structure.rs counts the whole grid of shapes.)

#[path = "common/batch.rs"]
mod batch;
#[path = "common/gpu.rs"]
mod gpu;
#[path = "common/structure.rs"]
mod structure;

use std::fs;
use std::process::ExitCode;

use asps::cuda::ResidualForm;
use asps::{Dtype, Logit, Method};
use cudarc::driver::DeviceRepr;
use gpu::{TestGpu, gpu_or_skip};
use half::{bf16, f16};
use structure::{Drafts, Launch, count_call_in_form, logits_bytes, start_trace};

/// What a thread of the row kernel may load besides its share of the row: its request's draft
/// length and temperature.
const ROW_THREAD_METADATA: u64 = 8;
/// What a block of the row kernel may load besides: the draft token and its logit, ...
const ROW_BLOCK_METADATA: u64 = 8;
/// ... and, for a target row, the tile of 16 logits that holds the max, read again by one
/// thread to find the argmax's lowest index (kernels/online_softmax.cuh).
const ROW_BLOCK_ARGMAX_TILE: u64 = 16;
/// What a block of the truncating row kernel loads besides (one thread for the block): both
/// models' top_k, top_p and min_p.
const TRUNCATION_BLOCK_METADATA: u64 = 24;

fn report<T: Logit + DeviceRepr>(
    gpu: &TestGpu,
    trace: &str,
    methods: &[Method],
    shape: (usize, usize, usize),
) -> Result<(), String> {
    let (b, n, v) = shape;
    let logits_bytes = logits_bytes::<T>(shape);
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
    for (&method, form) in methods
        .iter()
        .flat_map(|m| ResidualForm::ALL.map(|f| (m, f)))
    {
        let calls =
            count_call_in_form::<T>(gpu, trace, method, shape, Drafts::Random, Some(form), None);
        let line = |kernel: &str, grid: &str, block: &str, loaded, read, written, philox| {
            println!(
                "  {:<7} {kernel:<28} {grid:>9} {block:>9} {loaded:>12} {read:>12} {written:>10} {:>8.3} {philox:>9}",
                format!("{method:?}"),
                read as f64 / logits_bytes as f64
            );
        };
        println!("  {form:?} form:");
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
        if form == ResidualForm::Fused {
            // One launch, which reads every row and, in each request's last block, the rows
            // the outcome needs.
            let fused = calls.first().filter(|_| calls.len() == 1);
            match fused {
                Some(l) if l.kernel.starts_with("asps_verify_fused") => {
                    if l.unique_read < logits_bytes {
                        return Err(format!(
                            "{method:?}, fused: read {} bytes, less than the logits' {logits_bytes}",
                            l.unique_read
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "{method:?}, fused: {} launches, expected 1",
                        calls.len()
                    ));
                }
            }
            continue;
        }
        if calls.len() != 2 {
            return Err(format!("{method:?}: {} launches, expected 2", calls.len()));
        }
        // The row pass loads every logits row exactly once.
        let rows = &calls[0];
        // Blocks as launched: B (2n + 1) rows, each in as many parts as the verifier split it.
        let blocks = rows.blocks()?;
        if blocks % (b * (2 * n + 1)) as u64 != 0 {
            return Err(format!(
                "{method:?}: a row launch of {blocks} blocks for {b} x {} rows",
                2 * n + 1
            ));
        }
        // Threads per block as launched (VERIFY_THREADS of kernels/launch_config.h).
        let row_threads = rows.threads()?;
        let argmax_tile = ROW_BLOCK_ARGMAX_TILE * std::mem::size_of::<T>() as u64;
        let most = logits_bytes
            + blocks * (row_threads * ROW_THREAD_METADATA + ROW_BLOCK_METADATA + argmax_tile);
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
    }
    // Truncating every target and draft row, still two launches. With top-k 50, top-p 0.9 and
    // min-p 0.05 the truncating row kernel loads every row once, plus the few tiles that can
    // hold each row's top-k set (at most 1/8 of a row more: about k tiles of 16 tokens here);
    // with top-p 0.9 alone, every row twice (the row pass, and the pass that sums the masses of
    // the buckets around the threshold), plus at most 1/4 of a row for the rows whose
    // threshold's bucket the row pass's counts misjudged (read again); the same metadata (each
    // row in one part).
    let truncations = [
        (
            asps::reference::Truncation {
                top_k: 50,
                top_p: 0.9,
                min_p: 0.05,
            },
            logits_bytes / 8,
        ),
        (
            asps::reference::Truncation {
                top_k: 0,
                top_p: 0.9,
                min_p: 0.0,
            },
            logits_bytes + logits_bytes / 4,
        ),
    ];
    for (truncation, rereads) in truncations {
        for method in methods.iter().filter(|&&m| m != Method::Greedy) {
            for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
                let calls = count_call_in_form::<T>(
                    gpu,
                    trace,
                    *method,
                    shape,
                    Drafts::Random,
                    Some(form),
                    Some(truncation),
                );
                let kernels: Vec<&str> = calls.iter().map(|l| l.kernel.as_str()).collect();
                let rows = calls.first().ok_or("no launch")?;
                let blocks = rows.blocks()?;
                let threads = rows.threads()?;
                let argmax_tile = ROW_BLOCK_ARGMAX_TILE * std::mem::size_of::<T>() as u64;
                let most = logits_bytes
                    + rereads
                    + blocks
                        * (threads * ROW_THREAD_METADATA
                            + ROW_BLOCK_METADATA
                            + TRUNCATION_BLOCK_METADATA
                            + argmax_tile);
                println!(
                    "  {method:?}, {form:?} form, {truncation:?}: {} launches, the row launch \
                     loaded {:.3}x the logits",
                    calls.len(),
                    rows.loaded as f64 / logits_bytes as f64
                );
                if calls.len() != 2
                    || !rows.kernel.starts_with("asps_verify_rows_truncating")
                    || rows.loaded > most
                {
                    return Err(format!(
                        "{method:?}, {form:?}, {truncation:?}: launches {kernels:?}, the row \
                         launch loaded {} bytes (at most {most}: the logits, the rereads, the \
                         metadata)",
                        rows.loaded
                    ));
                }
            }
        }
    }
    // ASpS with every draft token kept reads only the bonus rows again (the parallel form), and
    // draws race noise on
    // them alone: one Philox block per tile of 16 tokens, so a row costs at most ceil(V / 16)
    // blocks (per token, or per token pair as before the tiles, would cost V or V / 2); besides,
    // each decide block's plan draws n + 1 scalar uniforms, and a block that raced picks its
    // token with one more.
    if methods.contains(&Method::Asps) {
        let calls = count_call_in_form::<T>(
            gpu,
            trace,
            Method::Asps,
            shape,
            Drafts::Accepted,
            Some(ResidualForm::Parallel),
            None,
        );
        let decide = calls.get(1).ok_or("no decide launch")?;
        let row_bytes = (v * std::mem::size_of::<T>()) as u64;
        let bonus_rows = b as u64 * row_bytes;
        let read = decide.unique_read;
        println!(
            "  ASpS, every draft kept: the decide launch read {read} bytes (the bonus rows: {bonus_rows}), \
             {} Philox blocks",
            decide.philox
        );
        if read < bonus_rows || read > bonus_rows + bonus_rows / 8 {
            return Err(format!(
                "ASpS, every draft kept: the decide launch read {read} bytes; the bonus rows are \
                 {bonus_rows}"
            ));
        }
        let most = (b * v.div_ceil(16)) as u64 + decide.blocks()? * (n as u64 + 2);
        if decide.philox > most {
            return Err(format!(
                "ASpS, every draft kept: the decide launch computed {} Philox blocks for {b} \
                 bonus rows of {v} tokens (at most {most}: one per tile of 16, the plans' \
                 scalars and the picks)",
                decide.philox
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
    let trace = start_trace("emu-counts");
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
