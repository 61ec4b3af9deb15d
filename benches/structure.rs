//! The structure of a verify call, counted on the emulated device (tests/emu/device): launches,
//! blocks per launch, and global bytes read beside one read of the logits (the floor of
//! docs/design.md, "Performance model"), with exponentials and Philox blocks per logit, for ASpS,
//! SpS and greedy over bf16 logits at B in {1, 8, 64, 256}, n in {1, 4, 8}, V in {32000, 128256},
//! with drafts fully accepted and drafts rejected at the first row (tests/common/structure.rs
//! builds both); the two target shapes again with every request truncating its target and draft
//! rows (top-k 50, top-p 0.9, min-p 0.05, as the GPU bench's truncated entries; and top-p 0.9
//! or 0.99 alone), whose row launch finds the kept sets; the instructions per element of the
//! kernels' vocabulary loops (bench/sass_loops.py) and their registers and spills
//! (ptxas, sm_90); the time model of tests/common/model.rs, first checked against the H100
//! times of the kernels it was calibrated on, then applied to these kernels; and ASpS and SpS
//! in every form of the decide step (src/cuda/verify/form.rs); and a tree call through the safe
//! front (8 requests of 32-node binary trees at V = 128256: TV and RRS over children drawn
//! without replacement, and deterministic children), its launches and bytes loaded over one
//! read of the rows it must read. Counts, not times: `model_us` is the model's, not a
//! measurement.
//!
//!     tests/emu/gpu cargo bench --bench structure                 # writes bench/results/structure.json
//!     ASPS_STRUCTURE_QUICK=1 tests/emu/gpu cargo bench --bench structure   # the two target shapes
//!
//! ASPS_STRUCTURE_OUT=<file> writes the JSON elsewhere. The SASS, the registers and so the model
//! need nvcc (NVCC, CUDA_HOME or PATH) and cuobjdump; without them those parts are skipped, with
//! a note. Ends with the countable targets of docs/design.md (at most 2 launches, truncated
//! calls included; at B = 1, n = 4, V = 32000 at least 264 blocks in the launch that reads the
//! logits; at B = 64, n = 8, V = 128256 the bytes, exponentials and Philox blocks per logit,
//! untruncated and truncated; the loops' instructions per
//! element; no spills; the model within 25% of every calibration time) and fails if one is
//! missed. Elsewhere than on the emulated device it prints SKIPPED.

#[path = "../tests/common/batch.rs"]
mod batch;
#[path = "../tests/common/gpu.rs"]
mod gpu;
#[path = "../tests/common/model.rs"]
mod model;
#[path = "../tests/common/model_counts.rs"]
mod model_counts;
#[path = "../tests/common/structure.rs"]
mod structure;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use asps::Method;
use asps::cuda::ResidualForm;
use asps::reference::Truncation;
use gpu::gpu_or_skip;
use half::bf16;
use model::VerifyCode;
use structure::{Drafts, count_call_in_form, count_tree_call, logits_bytes, start_trace};

/// The truncation of the table's truncated rows, for target and draft alike (the GPU bench's
/// truncated entries), and the two without top-k, which the kernels find from the row pass's
/// counts per bucket and one more pass (kernels/truncate.cuh); each with its name in the table
/// and the JSON.
const TRUNCATIONS: [(&str, Truncation); 3] = [
    (
        "top_k=50,top_p=0.9,min_p=0.05",
        Truncation {
            top_k: 50,
            top_p: 0.9,
            min_p: 0.05,
        },
    ),
    (
        "top_p=0.9",
        Truncation {
            top_k: 0,
            top_p: 0.9,
            min_p: 0.0,
        },
    ),
    (
        "top_p=0.99",
        Truncation {
            top_k: 0,
            top_p: 0.99,
            min_p: 0.0,
        },
    ),
];

/// One counted call, a line of the table and an object of the JSON list.
struct Case {
    method: Method,
    /// Whether every request truncates its rows, by which of [`TRUNCATIONS`] (its name).
    truncation: Option<&'static str>,
    shape: (usize, usize, usize),
    drafts: Drafts,
    blocks: Vec<u64>,
    logits_launch_blocks: u64,
    read_over_floor: f64,
    /// Every byte the threads loaded over one read of the logits.
    loaded_over_floor: f64,
    /// The same for the launch that reads the logits rows alone.
    rows_loaded_over_floor: f64,
    /// Float exponentials and logarithms evaluated, per logit of the call.
    exps_per_logit: f64,
    /// Philox blocks computed, per logit of the call.
    philox_per_logit: f64,
    /// The time model's µs (tests/common/model.rs) for an untruncated call, when the SASS and
    /// registers it needs could be read.
    model_us: Option<f64>,
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Asps => "asps",
        Method::Sps => "sps",
        Method::Greedy => "greedy",
    }
}

fn shapes(quick: bool) -> Vec<(usize, usize, usize)> {
    if quick {
        return vec![(1, 4, 32_000), (64, 8, 128_256)];
    }
    let mut out = Vec::new();
    for b in [1, 8, 64, 256] {
        for n in [1, 4, 8] {
            for v in [32_000, 128_256] {
                // B = 256 (where the lazy residual form is chosen) at n = 8 only.
                if b < 256 || n == 8 {
                    out.push((b, n, v));
                }
            }
        }
    }
    out
}

fn count(
    gpu: &gpu::TestGpu,
    trace: &str,
    quick: bool,
    code: Option<&VerifyCode>,
) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    println!(
        "{:<7} {:>4} {:>3} {:>7} {:<9} {:<12} {:>8} {:<18} {:>10} {:>11} {:>9} {:>9} {:>9}",
        "method",
        "B",
        "n",
        "V",
        "drafts",
        "truncate",
        "launches",
        "blocks",
        "read/floor",
        "loaded/floor",
        "exps/lgt",
        "phlx/lgt",
        "model_us"
    );
    let truncated_shapes = [(1, 4, 32_000), (64, 8, 128_256)];
    let plain = shapes(quick).into_iter().map(|s| (s, None));
    let cases_to_count: Vec<_> = plain
        .chain(
            truncated_shapes
                .into_iter()
                .flat_map(|s| TRUNCATIONS.map(|t| (s, Some(t)))),
        )
        .collect();
    for (shape, truncation) in cases_to_count {
        let truncated = truncation.is_some();
        for drafts in [Drafts::Accepted, Drafts::Rejected] {
            for method in Method::ALL {
                let calls = count_call_in_form::<bf16>(
                    gpu,
                    trace,
                    method,
                    shape,
                    drafts,
                    None,
                    truncation.map(|(_, t)| t),
                );
                let blocks = calls
                    .iter()
                    .map(|l| l.blocks())
                    .collect::<Result<Vec<_>, _>>()?;
                let rows = calls
                    .iter()
                    .position(|l| {
                        l.kernel.starts_with("asps_verify_rows")
                            || l.kernel.starts_with("asps_verify_fused")
                    })
                    .ok_or("no launch reads the logits rows")?;
                let read: u64 = calls.iter().map(|l| l.unique_read).sum();
                let loaded: u64 = calls.iter().map(|l| l.loaded).sum();
                let floor = logits_bytes::<bf16>(shape) as f64;
                let logits = floor / std::mem::size_of::<bf16>() as f64;
                let exps: u64 = calls.iter().map(|l| l.exps).sum();
                let philox: u64 = calls.iter().map(|l| l.philox).sum();
                let case = Case {
                    method,
                    truncation: truncation.map(|(name, _)| name),
                    shape,
                    drafts,
                    logits_launch_blocks: blocks[rows],
                    blocks,
                    read_over_floor: read as f64 / logits_bytes::<bf16>(shape) as f64,
                    loaded_over_floor: loaded as f64 / floor,
                    rows_loaded_over_floor: calls[rows].loaded as f64 / floor,
                    exps_per_logit: exps as f64 / logits,
                    philox_per_logit: philox as f64 / logits,
                    model_us: match code {
                        Some(code) if !truncated => Some(model::call_us(
                            &model::H100,
                            &calls,
                            code,
                            method == Method::Greedy,
                        )?),
                        _ => None,
                    },
                };
                let (b, n, v) = shape;
                let blocks: Vec<String> = case.blocks.iter().map(u64::to_string).collect();
                println!(
                    "{:<7} {b:>4} {n:>3} {v:>7} {:<9} {:<12} {:>8} {:<18} {:>10.3} {:>11.2} {:>9.3} {:>9.4} {:>9}",
                    method_name(method),
                    drafts.name(),
                    case.truncation
                        .unwrap_or("off")
                        .replace("top_", "")
                        .replace(",min_", ",m"),
                    calls.len(),
                    blocks.join("+"),
                    case.read_over_floor,
                    case.loaded_over_floor,
                    case.exps_per_logit,
                    case.philox_per_logit,
                    case.model_us.map_or("-".to_string(), |t| format!("{t:.1}"))
                );
                if truncated {
                    println!(
                        "        the row launch loaded {:.2}x the logits",
                        case.rows_loaded_over_floor
                    );
                }
                cases.push(case);
            }
        }
    }
    Ok(cases)
}

/// One tree call of the table: its rule and sibling law, launches, and the bytes loaded over
/// one read of the rows it must read.
struct TreeCase {
    rule: &'static str,
    law: &'static str,
    shape: (usize, usize, usize),
    blocks: Vec<u64>,
    loaded_over_floor: f64,
    exps_per_row_element: f64,
}

/// The tree calls' shape: 8 requests of a 32-node binary tree over V = 128256.
const TREE_SHAPE: (usize, usize, usize) = (8, 32, 128_256);

/// Counts a tree call through the safe front for each rule and sibling law (TV and RRS
/// without replacement; deterministic children, which both rules verify alike), bf16,
/// temperature 1, drafts near the target (tests/common/structure.rs, `count_tree_call`).
fn trees(gpu: &gpu::TestGpu, trace: &str) -> Vec<TreeCase> {
    use asps::reference::{SiblingLaw, TreeRule};
    println!(
        "\nstructure of one tree call, counted on the emulated device (not a GPU); bf16, B = {}, \
         {}-node binary trees, V = {}, temperature 1",
        TREE_SHAPE.0, TREE_SHAPE.1, TREE_SHAPE.2
    );
    println!(
        "{:<5} {:<22} {:>8} {:<12} {:>12} {:>9}",
        "rule", "siblings", "launches", "blocks", "loaded/read", "exps/elt"
    );
    let calls = [
        (
            "TV",
            TreeRule::Tv,
            "without replacement",
            SiblingLaw::WithoutReplacement,
        ),
        (
            "RRS",
            TreeRule::Rrs,
            "without replacement",
            SiblingLaw::WithoutReplacement,
        ),
        (
            "TV",
            TreeRule::Tv,
            "deterministic",
            SiblingLaw::Deterministic,
        ),
    ];
    calls
        .into_iter()
        .map(|(rule_name, rule, law_name, law)| {
            let (launches, floor) = count_tree_call::<bf16>(gpu, trace, rule, law, TREE_SHAPE);
            let loaded: u64 = launches.iter().map(|l| l.loaded).sum();
            let exps: u64 = launches.iter().map(|l| l.exps).sum();
            let blocks: Vec<u64> = launches.iter().map(|l| l.blocks().unwrap_or(0)).collect();
            let case = TreeCase {
                rule: rule_name,
                law: law_name,
                shape: TREE_SHAPE,
                loaded_over_floor: loaded as f64 / floor as f64,
                exps_per_row_element: exps as f64 / (floor as f64 / 2.0),
                blocks,
            };
            let blocks: Vec<String> = case.blocks.iter().map(u64::to_string).collect();
            println!(
                "{:<5} {:<22} {:>8} {:<12} {:>12.3} {:>9.3}",
                case.rule,
                case.law,
                case.blocks.len(),
                blocks.join("+"),
                case.loaded_over_floor,
                case.exps_per_row_element
            );
            case
        })
        .collect()
}

/// The structure JSON: the counted cases, the tree calls, the static instructions per element of the kernels'
/// vocabulary loops (bench/sass_loops.py --json), and the time model's check and predictions
/// (`null` where they could not be made).
fn json(cases: &[Case], trees: &[TreeCase], sass: Option<&str>, model: Option<&str>) -> String {
    let mut s = String::from("{\"cases\": [\n");
    for (i, c) in cases.iter().enumerate() {
        let (b, n, v) = c.shape;
        let blocks: Vec<String> = c.blocks.iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "  {{\"method\": \"{}\", \"dtype\": \"bf16\", \"B\": {b}, \"n\": {n}, \"V\": {v}, \
             \"drafts\": \"{}\", \"truncation\": \"{}\", \"launches\": {}, \"logits_launch_blocks\": {}, \
             \"bytes_read_over_floor\": {:.4}, \"bytes_loaded_over_floor\": {:.3}, \
             \"rows_launch_loaded_over_floor\": {:.3}, \"blocks_per_launch\": [{}], \
             \"exps_per_logit\": {:.4}, \"philox_per_logit\": {:.5}, \"model_us\": {}}}{}",
            method_name(c.method),
            c.drafts.name(),
            c.truncation.unwrap_or("off"),
            c.blocks.len(),
            c.logits_launch_blocks,
            c.read_over_floor,
            c.loaded_over_floor,
            c.rows_loaded_over_floor,
            blocks.join(", "),
            c.exps_per_logit,
            c.philox_per_logit,
            c.model_us.map_or("null".to_string(), |t| format!("{t:.2}")),
            if i + 1 < cases.len() { "," } else { "" }
        );
    }
    s.push_str("],\n\"trees\": [\n");
    for (i, t) in trees.iter().enumerate() {
        let (b, nodes, v) = t.shape;
        let blocks: Vec<String> = t.blocks.iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "  {{\"rule\": \"{}\", \"siblings\": \"{}\", \"dtype\": \"bf16\", \"B\": {b}, \
             \"nodes\": {nodes}, \"V\": {v}, \"launches\": {}, \"blocks_per_launch\": [{}], \
             \"bytes_loaded_over_one_read\": {:.4}, \"exps_per_row_element\": {:.4}}}{}",
            t.rule,
            t.law,
            t.blocks.len(),
            blocks.join(", "),
            t.loaded_over_floor,
            t.exps_per_row_element,
            if i + 1 < trees.len() { "," } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "],\n\"sass_per_element\": {},\n\"model\": {}}}",
        sass.unwrap_or("null").trim(),
        model.unwrap_or("null")
    );
    s
}

/// The time model's view of this checkout's kernels: the bf16 row pass's loop, the cheaper
/// half of the bf16 decide kernel's residual loops (the untruncated ones), and both kernels'
/// registers. `None` if one is missing.
fn current_code(loops: &[SassLoop], resources: &[Resources]) -> Option<VerifyCode> {
    let most = |v: &[f64]| v.iter().copied().reduce(f64::max);
    let rows: Vec<f64> = loops
        .iter()
        .filter(|l| l.kernel == "rows_bf16" && l.rows == 1)
        .map(|l| l.sass_per_element)
        .collect();
    let residual = untruncated_residual_loops(loops);
    let registers = |kernel: &str| resources.iter().find(|r| r.name == kernel)?.registers;
    Some(model::current_code(
        most(&rows)?,
        registers("asps_verify_rows_bf16")?,
        most(&residual)?,
        registers("asps_verify_decide_bf16")?,
        registers("asps_verify_fused_bf16")?,
    ))
}

/// The decide kernel's residual loops (bf16) without truncation: they read a target and a draft
/// tile, and each comes in an untruncated and a truncated instantiation (the latter tests kept
/// sets) per call site; the untruncated ones are the cheaper half.
fn untruncated_residual_loops(loops: &[SassLoop]) -> Vec<f64> {
    let mut pairs: Vec<f64> = loops
        .iter()
        .filter(|l| l.kernel == "decide_bf16" && l.rows == 2)
        .map(|l| l.sass_per_element)
        .collect();
    pairs.sort_by(f64::total_cmp);
    pairs.truncate(pairs.len() / 2);
    pairs
}

/// The launches of the counted call of method `name` at `shape`.
fn find<'a>(
    calls: &'a [model_counts::CountedCall],
    name: &str,
    shape: (usize, usize, usize),
) -> Result<&'a [structure::Launch], String> {
    calls
        .iter()
        .find(|c| method_name(c.method) == name && c.shape == shape)
        .map(|c| c.launches.as_slice())
        .ok_or_else(|| format!("no counts for {name} at {shape:?}"))
}

/// The committed counts of the kernels that calibrate the model (commit dffd685's code, counted
/// by `cargo bench --bench model_counts` on a checkout of commit 196e4fb, whose kernels are
/// those of dffd685, with this emulator).
const CALIBRATION_COUNTS: &str = "bench/results/model-calibration-counts.json";

/// The time model, checked and used: over the calibration counts it must land within 25% of
/// each H100 time of [`model::CALIBRATION_TIMES`]; then it predicts this checkout's kernels at
/// the same shapes, counted now over the same workload. Returns the JSON of both and the
/// worst relative error of the calibration, with its call.
fn model_report(
    gpu: &gpu::TestGpu,
    trace: &str,
    root: &Path,
    code: &VerifyCode,
) -> Result<(String, (f64, String)), String> {
    let path = root.join(CALIBRATION_COUNTS);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let before = model_counts::parse_calls_json(&text)?;
    let now = model_counts::count_model_shapes(gpu, trace);
    let device = &model::H100;
    println!(
        "\nthe time model ({}; tests/common/model.rs) over the GPU bench's workload: checked \
         on commit dffd685's kernels against its H100 times, then this checkout's prediction",
        device.name
    );
    println!(
        "{:<7} {:>4} {:>3} {:>7} {:>12} {:>12} {:>7} {:>12}",
        "method", "B", "n", "V", "H100_us", "model_us", "error", "model_now_us"
    );
    let mut rows = Vec::new();
    let mut worst = (0.0, String::new());
    for (name, shape, measured) in model::CALIBRATION_TIMES {
        let greedy = name == "greedy";
        let then = model::call_us(device, find(&before, name, shape)?, &model::DFFD685, greedy)?;
        let predicted = model::call_us(device, find(&now, name, shape)?, code, greedy)?;
        let error = then / measured - 1.0;
        let (b, n, v) = shape;
        println!(
            "{name:<7} {b:>4} {n:>3} {v:>7} {measured:>12.2} {then:>12.2} {:>6.1}% {predicted:>12.2}",
            100.0 * error
        );
        if error.abs() >= worst.0 {
            worst = (error.abs(), format!("{name} at B = {b}, n = {n}, V = {v}"));
        }
        rows.push(format!(
            "{{\"method\": \"{name}\", \"B\": {b}, \"n\": {n}, \"V\": {v}, \
             \"h100_dffd685_us\": {measured}, \"model_dffd685_us\": {then:.2}, \
             \"model_now_us\": {predicted:.2}}}"
        ));
    }
    let json = format!(
        "{{\"device\": \"{}\", \"launch_us\": {}, \"step_us\": {}, \"warp_ipc\": {}, \
         \"calls\": [\n  {}\n]}}",
        device.name,
        device.launch_us,
        device.step_us,
        device.warp_ipc,
        rows.join(",\n  ")
    );
    Ok((json, worst))
}

/// bench/sass_loops.py --json: the vocabulary loops of the verify kernels' SASS (sm_90), with
/// their instructions per element. Needs python3, nvcc and cuobjdump.
fn sass_per_element(root: &Path) -> Result<String, String> {
    let nvcc = nvcc().ok_or("nvcc not found (NVCC, CUDA_HOME or PATH)")?;
    let out = Command::new("python3")
        .arg(root.join("bench/sass_loops.py"))
        .arg("--json")
        .env("NVCC", &nvcc)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// Every method over the GPU bench's workload in every form of the decide step, whatever the
/// verifier would choose (src/cuda/verify/form.rs): what the lazy walk saves in bytes over
/// reading every candidate row at once, and what the time model makes of each form.
fn forms(gpu: &gpu::TestGpu, trace: &str, code: Option<&VerifyCode>) -> Result<(), String> {
    println!("\nthe GPU bench's drafts, by form of the decide step:");
    println!(
        "{:<7} {:>4} {:>3} {:>7} {:<9} {:<18} {:>10} {:>9}",
        "method", "B", "n", "V", "form", "blocks", "read/floor", "model_us"
    );
    let shapes = [
        (1, 4, 32_000),
        (1, 4, 128_256),
        (8, 4, 32_000),
        (8, 8, 32_000),
        (64, 8, 32_000),
        (256, 4, 32_000),
        (256, 8, 32_000),
    ];
    for shape in shapes {
        for form in ResidualForm::ALL {
            for method in Method::ALL {
                let calls = count_call_in_form::<bf16>(
                    gpu,
                    trace,
                    method,
                    shape,
                    Drafts::Bench,
                    Some(form),
                    None,
                );
                let blocks: Vec<String> = calls
                    .iter()
                    .map(|l| l.blocks().map_or("?".into(), |b| b.to_string()))
                    .collect();
                let read: u64 = calls.iter().map(|l| l.unique_read).sum();
                let model_us = match code {
                    Some(code) => {
                        let greedy = method == Method::Greedy;
                        format!("{:.1}", model::call_us(&model::H100, &calls, code, greedy)?)
                    }
                    None => "-".to_string(),
                };
                let (b, n, v) = shape;
                println!(
                    "{:<7} {b:>4} {n:>3} {v:>7} {:<9} {:<18} {:>10.3} {model_us:>9}",
                    method_name(method),
                    format!("{form:?}"),
                    blocks.join("+"),
                    read as f64 / logits_bytes::<bf16>(shape) as f64
                );
            }
        }
    }
    Ok(())
}

/// nvcc as build.rs finds it: NVCC, CUDA_HOME/bin, CUDA_PATH/bin, then PATH.
fn nvcc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            let p = Path::new(&home).join("bin/nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("nvcc"))
        .find(|p| p.is_file())
}

/// One function's resources for sm_90, from `ptxas -v`: a kernel, or a device function that
/// is not inlined (`ASPS_NOINLINE`), whose registers count in its callers'.
struct Resources {
    name: String,
    /// Registers per thread (kernels only).
    registers: Option<u32>,
    /// Bytes of the stack frame (local memory, per thread): none unless the code needs it (an
    /// array indexed at run time, registers saved around a call, a kernel parameter whose
    /// address a non-inlined function takes).
    stack: u32,
    /// Spill stores + spill loads, in bytes.
    spilled: u32,
}

/// The resources of every function in kernels/verify.cu for sm_90, from `ptxas -v`: each
/// "Function properties for NAME" line starts NAME's entry, and the lines after it (its stack
/// frame and spills; a kernel's registers) belong to it.
fn registers(root: &Path) -> Result<Vec<Resources>, String> {
    let nvcc = nvcc().ok_or("no nvcc (set NVCC)")?;
    let out = Command::new(&nvcc)
        .current_dir(root)
        .args([
            "-cubin",
            "-arch=sm_90",
            "-O3",
            "-Xptxas",
            "-v",
            "-std=c++17",
        ])
        .args(["-o", "/dev/null", "kernels/verify.cu"])
        .output()
        .map_err(|e| format!("{}: {e}", nvcc.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let number_before = |line: &str, unit: &str| -> Option<u32> {
        let end = line.find(unit)?;
        line[..end].split_whitespace().last()?.parse().ok()
    };
    let mut rows: Vec<Resources> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            rows.push(Resources {
                name: short_name(rest.trim()),
                registers: None,
                stack: 0,
                spilled: 0,
            });
        } else if let Some(last) = rows.last_mut() {
            if let Some(r) = number_before(line, " registers") {
                last.registers = Some(r);
            }
            if line.contains("spill stores") {
                last.stack = number_before(line, " bytes stack frame").unwrap_or(0);
                last.spilled = number_before(line, " bytes spill stores").unwrap_or(0)
                    + number_before(line, " bytes spill loads").unwrap_or(0);
            }
        }
    }
    Ok(rows)
}

/// A device function's name without its mangling (`_ZN4asps12plan_requestE...` gives
/// `asps::plan_request`); a kernel's (extern "C") unchanged.
fn short_name(symbol: &str) -> String {
    if let Some(rest) = symbol.strip_prefix("_ZN4asps") {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if let Ok(len) = rest[..digits].parse::<usize>()
            && let Some(name) = rest.get(digits..digits + len)
        {
            return format!("asps::{name}");
        }
    }
    symbol.to_string()
}

fn main() -> ExitCode {
    // Cargo passes --bench; nothing else is taken.
    let Some(gpu) = gpu_or_skip("structure") else {
        return ExitCode::SUCCESS;
    };
    if !gpu.emulated {
        eprintln!("SKIPPED structure: launch and byte counts come from the emulated device");
        return ExitCode::SUCCESS;
    }
    let quick = std::env::var("ASPS_STRUCTURE_QUICK").is_ok_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missed = Vec::new();

    // What the time model needs of the code: the SASS of the vocabulary loops, the registers.
    println!("vocabulary loops of the verify kernels (bench/sass_loops.py --json, sm_90):");
    let sass = match sass_per_element(root) {
        Ok(s) => {
            print_sass(&s);
            Some(s)
        }
        Err(e) => {
            println!("  skipped: {e}");
            None
        }
    };
    println!(
        "\nregisters per thread, stack frame and spills (ptxas -v, sm_90, kernels/verify.cu):"
    );
    let mut spills = Vec::new();
    let resources = match registers(root) {
        Ok(rows) => {
            for r in &rows {
                let registers = r.registers.map_or("-".to_string(), |n| n.to_string());
                println!(
                    "  {:<32} {registers:>4} registers {:>4} bytes stack {:>6} bytes spilled",
                    r.name, r.stack, r.spilled
                );
                if r.spilled > 0 {
                    spills.push(format!("{} spills {} bytes", r.name, r.spilled));
                }
            }
            rows
        }
        Err(e) => {
            println!("  skipped: {e}");
            Vec::new()
        }
    };
    let code = sass
        .as_deref()
        .and_then(|s| current_code(&sass_loops(s), &resources));

    let trace = start_trace("structure");
    println!("\nstructure of one verify call, counted on the emulated device (not a GPU); bf16");
    println!(
        "model_us: the time model of tests/common/model.rs for an {}, not a measurement",
        model::H100.name
    );
    let cases = count(&gpu, &trace, quick, code.as_ref());
    let cases = match cases {
        Ok(c) => c,
        Err(e) => {
            eprintln!("structure: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tree_cases = trees(&gpu, &trace);
    let mut calibration = None;
    let model = match &code {
        Some(code) => match model_report(&gpu, &trace, root, code) {
            Ok((json, worst)) => {
                calibration = Some(worst);
                Some(json)
            }
            Err(e) => {
                eprintln!("structure: FAILED: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => {
            println!("\nthe time model: skipped (no SASS or registers to read)");
            None
        }
    };
    let out = std::env::var_os("ASPS_STRUCTURE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("bench/results/structure.json"));
    if let Err(e) = std::fs::write(
        &out,
        json(&cases, &tree_cases, sass.as_deref(), model.as_deref()),
    ) {
        eprintln!("structure: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", out.display());

    if !quick && let Err(e) = forms(&gpu, &trace, code.as_ref()) {
        eprintln!("structure: FAILED: {e}");
        return ExitCode::FAILURE;
    }
    let _ = std::fs::remove_file(&trace);

    println!("\ntargets (the structure, and the instruction budget of docs/design.md):");
    let find = |m: Method, shape, d: Drafts| {
        cases
            .iter()
            .find(|c| c.method == m && c.shape == shape && c.drafts == d && c.truncation.is_none())
    };
    let most_launches = cases.iter().map(|c| c.blocks.len()).max().unwrap_or(0);
    let mut check = |ok: bool, what: String| {
        println!("  {} {what}", if ok { "met   " } else { "MISSED" });
        if !ok {
            missed.push(what);
        }
    };
    if let Some((error, call)) = &calibration {
        check(
            *error <= 0.25,
            format!(
                "the time model within 25% of every H100 time it was calibrated on (worst: {:.1}%, {call})",
                100.0 * error
            ),
        );
    }
    if !resources.is_empty() {
        check(
            spills.is_empty(),
            format!(
                "no kernel spills ({})",
                if spills.is_empty() {
                    "none".to_string()
                } else {
                    spills.join(", ")
                }
            ),
        );
    }
    check(
        most_launches <= 2,
        format!("launches per call, truncated ones included, <= 2 (most: {most_launches})"),
    );
    for t in &tree_cases {
        check(
            t.blocks.len() <= 2 && t.loaded_over_floor <= 1.5,
            format!(
                "tree call, B = 8, 32 nodes, V = 128256, {} ({}): <= 2 launches ({}) and loaded \
                 <= 1.5x one read of its rows ({:.3}x)",
                t.rule,
                t.law,
                t.blocks.len(),
                t.loaded_over_floor
            ),
        );
    }
    // Truncated calls at the large shape: top-k 50 / top-p 0.9 / min-p 0.05 within reach of
    // the untruncated call; without top-k, one more read of the rows at most.
    for c in cases.iter().filter(|c| c.shape == (64, 8, 128_256)) {
        let Some(name) = c.truncation else { continue };
        if c.method == Method::Greedy {
            continue;
        }
        let what = format!(
            "B = 64, n = 8, V = 128256, {}, drafts {}, {name}:",
            method_name(c.method),
            c.drafts.name()
        );
        let loaded_bound = if name == TRUNCATIONS[0].0 { 1.4 } else { 2.5 };
        check(
            c.loaded_over_floor <= loaded_bound,
            format!(
                "{what} loaded <= {loaded_bound}x the floor ({:.3}x)",
                c.loaded_over_floor
            ),
        );
        if name == TRUNCATIONS[0].0 {
            check(
                c.exps_per_logit <= 1.6,
                format!("{what} exps per logit <= 1.6 ({:.3})", c.exps_per_logit),
            );
        }
    }
    if let Some(c) = find(Method::Asps, (1, 4, 32_000), Drafts::Accepted) {
        // Two blocks per SM in a launch of its own; the fused form's blocks carry the decide
        // step's registers, one per SM, in one wave (9 rows in 14 parts: 126 of 132).
        let (fused, want) = if c.blocks.len() == 1 {
            ("fused form, ", 120)
        } else {
            ("", 264)
        };
        check(
            c.logits_launch_blocks >= want,
            format!(
                "B = 1, n = 4, V = 32000: >= {want} blocks read the logits ({fused}{})",
                c.logits_launch_blocks
            ),
        );
    }
    for (drafts, bound) in [(Drafts::Accepted, 1.1), (Drafts::Rejected, 2.0)] {
        if let Some(c) = find(Method::Asps, (64, 8, 128_256), drafts) {
            check(
                c.read_over_floor <= bound,
                format!(
                    "B = 64, n = 8, V = 128256, ASpS, drafts {}: read <= {bound}x the floor ({:.3}x)",
                    drafts.name(),
                    c.read_over_floor
                ),
            );
        }
    }
    // At the large shape, both methods, drafts kept or rejected at the first row.
    for method in [Method::Asps, Method::Sps] {
        for drafts in [Drafts::Accepted, Drafts::Rejected] {
            if let Some(c) = find(method, (64, 8, 128_256), drafts) {
                let what = format!(
                    "B = 64, n = 8, V = 128256, {}, drafts {}:",
                    method_name(method),
                    drafts.name()
                );
                check(
                    c.loaded_over_floor <= 1.15,
                    format!(
                        "{what} loaded <= 1.15x the floor ({:.3}x)",
                        c.loaded_over_floor
                    ),
                );
                check(
                    c.exps_per_logit <= 1.35,
                    format!("{what} exps per logit <= 1.35 ({:.3})", c.exps_per_logit),
                );
                check(
                    c.philox_per_logit <= 0.2,
                    format!("{what} Philox per logit <= 0.2 ({:.4})", c.philox_per_logit),
                );
            }
        }
    }
    if let Some(s) = &sass {
        let loops = sass_loops(s);
        let worst = |kernel: &str, rows: u32| {
            loops
                .iter()
                .filter(|l| l.kernel == kernel && l.rows == rows)
                .map(|l| l.sass_per_element)
                .collect::<Vec<f64>>()
        };
        let rows = worst("rows_bf16", 1);
        let most = rows.iter().copied().fold(0.0, f64::max);
        check(
            !rows.is_empty() && most <= 8.0,
            format!("the row pass's loop, bf16: <= 8 SASS per element ({most})"),
        );
        let untruncated = untruncated_residual_loops(&loops);
        let most = untruncated.iter().copied().fold(0.0, f64::max);
        check(
            !untruncated.is_empty() && most <= 30.0,
            format!(
                "the decide pass's residual loops, bf16, untruncated: <= 30 SASS per token ({most})"
            ),
        );
    }
    if missed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("structure: {} target(s) missed", missed.len());
        ExitCode::FAILURE
    }
}

/// One loop of the SASS report: its kernel (without the `asps_verify_` prefix), its line as
/// the script wrote it, the rows it reads and its instructions per element.
struct SassLoop {
    kernel: String,
    line: String,
    rows: u32,
    sass_per_element: f64,
}

/// The SASS report's loops.
fn sass_loops(json: &str) -> Vec<SassLoop> {
    // A reading of the script's fixed layout, not a JSON parser: one loop object per line.
    let mut kernel = "";
    let mut out = Vec::new();
    for line in json.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("\"asps_verify_") {
            kernel = name.split('"').next().unwrap_or("");
        }
        let field = |key: &str| {
            let rest = line.split(&format!("\"{key}\": ")).nth(1)?;
            rest.split([',', '}']).next()?.trim().parse::<f64>().ok()
        };
        if let (Some(rows), Some(spe)) = (field("rows"), field("sass_per_element")) {
            out.push(SassLoop {
                kernel: kernel.to_string(),
                line: line.trim_end_matches(',').to_string(),
                rows: rows as u32,
                sass_per_element: spe,
            });
        }
    }
    out
}

/// The SASS report, one line per loop: kernel, span, rows read, instructions per element.
fn print_sass(json: &str) {
    for l in sass_loops(json) {
        println!("  {:<24} {}", l.kernel, l.line);
    }
}
