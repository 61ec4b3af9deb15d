//! A model of a verify call's time on a GPU, from what the emulated device counts of each launch
//! (blocks, bytes, how the loads spread over blocks, exponentials) and what the compiler says of
//! each kernel (SASS instructions per element of its vocabulary loop, registers, and the
//! dependent steps on one block's path). A model, not a measurement: the structure bench
//! prints it beside the H100's measured times it was calibrated on (docs/design.md,
//! "Performance model").
//!
//! A launch takes
//!
//!     launch_us + steps x step_us + max(dram, issue, latency, mufu)
//!
//! - dram: the 32-byte sectors it reads, once each, at the device's read bandwidth;
//! - issue: warp instructions of the vocabulary loops (elements loaded x SASS per element / 32)
//!   on the busiest SM, which runs ceil(busy blocks / SMs) blocks of the mean busy block's
//!   loads, at 4 warp instructions per cycle, or fewer when its resident warps cannot keep
//!   four schedulers busy (each sustains `warp_ipc`: the loops' dependent chains); and never
//!   less than the largest block's instructions at one block's rate;
//! - latency: the same loads at what the bytes a thread has in flight allow (Little's law:
//!   threads x bytes in flight / memory latency, per resident block);
//! - mufu: the exponentials and logarithms at 16 per cycle per SM, spread over the device.
//!
//! "Busy" blocks are those that loaded at least half of what the largest one did
//! (tests/emu/emu_runtime.h); a decide launch's planning blocks that read no row are not.
//! The steps are the launch's dependent global round trips and block-wide merges, counted by
//! reading the kernels (`KernelCode::steps`): they are what remains at B = 1, where no launch has
//! enough work to hide them.
#![allow(dead_code)]

use super::structure::Launch;

/// A device as the model sees it.
pub struct Device {
    pub name: &'static str,
    pub sms: f64,
    /// SM clock, cycles per microsecond.
    pub cycles_per_us: f64,
    /// DRAM read bandwidth, bytes per microsecond.
    pub bandwidth: f64,
    /// Latency of one dependent kernel launch under graph replay, µs.
    pub launch_us: f64,
    /// One dependent step on a block's path (a global round trip, a block merge), µs.
    pub step_us: f64,
    /// Warp instructions per cycle one warp of the verify loops sustains.
    pub warp_ipc: f64,
    /// Global load latency under load, µs.
    pub memory_latency_us: f64,
}

/// An H100 SXM (132 SMs at the 1980 MHz the GPU bench's clock log read, 3.10 TB/s read
/// bandwidth by the bench's read probe), with `launch_us`, `step_us` and `warp_ipc` fitted to
/// the H100 times of commit dffd685 ([`CALIBRATION_TIMES`]) over the counts of those kernels,
/// and a typical loaded DRAM latency.
pub const H100: Device = Device {
    name: "H100 SXM (model)",
    sms: 132.0,
    cycles_per_us: 1980.0,
    bandwidth: 3.10e6,
    launch_us: 2.5,
    step_us: 0.9,
    warp_ipc: 0.18,
    memory_latency_us: 0.8,
};

/// Per SM: warp schedulers (one instruction each per cycle), MUFU lanes, resident threads and
/// registers (sm_90).
const ISSUE_PER_SM: f64 = 4.0;
const MUFU_PER_SM: f64 = 16.0;
const THREADS_PER_SM: u64 = 2048;
const REGISTERS_PER_SM: u64 = 65536;

/// What the model needs of one kernel's code.
#[derive(Clone, Copy, Debug)]
pub struct KernelCode {
    /// SASS instructions of its vocabulary loop per logits element loaded (a thread's count: a
    /// warp issues each for 32 threads).
    pub sass_per_element: f64,
    /// Registers per thread (ptxas).
    pub registers: u32,
    /// Bytes of logits one thread has in flight in its loop.
    pub in_flight: f64,
    /// Dependent steps on one block's path.
    pub steps: f64,
}

/// The verify kernels' code, for one commit.
#[derive(Clone, Copy, Debug)]
pub struct VerifyCode {
    pub rows: KernelCode,
    /// The decide launch of a greedy call (merges only) and of a sampling call (its row passes:
    /// SASS per element of the residual race loop, per loaded element).
    pub decide_greedy: KernelCode,
    pub decide_sampled: KernelCode,
    /// The fused form's one launch, greedy and sampling (none before it existed).
    pub fused: Option<(KernelCode, KernelCode)>,
}

/// The kernels of commit dffd685, whose H100 times calibrate the model: the SASS figures are
/// bench/sass_loops.py on that code (BENCHMARKS.md, "Instructions per element": rows 44.6 per
/// element, 8 per iteration; the residual race 229 per token over two loaded elements), the
/// registers ptxas's (structure.txt of that commit). Steps: the row launch loads its part,
/// merges it across the block, stores it (3); the decide launch loads the request's sampling,
/// arrives at the request's counter and, in the last block, loads the parts, merges them and
/// stores the outcome (5 for greedy); a sampling call's blocks also merge the rows' parts and
/// plan (one thread), then run their part of a row and merge it across the block (+3).
pub const DFFD685: VerifyCode = VerifyCode {
    rows: KernelCode {
        sass_per_element: 44.6,
        registers: 23,
        in_flight: 16.0,
        steps: 3.0,
    },
    decide_greedy: KernelCode {
        sass_per_element: 229.0 / 2.0,
        registers: 116,
        in_flight: 32.0,
        steps: 5.0,
    },
    decide_sampled: KernelCode {
        sass_per_element: 229.0 / 2.0,
        registers: 116,
        in_flight: 32.0,
        steps: 8.0,
    },
    fused: None,
};

/// The H100's measured median times of commit dffd685 at the model's shapes (bf16; B = 1 under
/// graph replay), µs, from bench/results/gpu-nvidia-h100-2026-11-26-quick.json (the two target
/// shapes) and -full.json (B = 8 and 256): (method, (B, n, V), µs).
pub const CALIBRATION_TIMES: [(&str, (usize, usize, usize), f64); 15] = [
    ("asps", (1, 4, 32_000), 22.30),
    ("sps", (1, 4, 32_000), 21.31),
    ("greedy", (1, 4, 32_000), 15.36),
    ("asps", (8, 4, 32_000), 40.67),
    ("sps", (8, 4, 32_000), 38.56),
    ("greedy", (8, 4, 32_000), 21.95),
    ("asps", (8, 8, 128_256), 142.98),
    ("sps", (8, 8, 128_256), 140.38),
    ("greedy", (8, 8, 128_256), 53.15),
    ("asps", (64, 8, 128_256), 439.87),
    ("sps", (64, 8, 128_256), 396.67),
    ("greedy", (64, 8, 128_256), 196.70),
    ("asps", (256, 4, 128_256), 1147.52),
    ("sps", (256, 4, 128_256), 720.13),
    ("greedy", (256, 4, 128_256), 355.07),
];

/// Bytes per logit of the counted calls (bf16).
const ELEMENT_BYTES: f64 = 2.0;

/// Blocks of `threads` threads of `registers` registers each resident on one SM.
fn blocks_per_sm(threads: u64, registers: u32) -> u64 {
    let by_registers = REGISTERS_PER_SM / (threads * u64::from(registers.max(1)));
    by_registers.min(THREADS_PER_SM / threads).max(1)
}

/// One launch's time, µs.
pub fn launch_us(device: &Device, launch: &Launch, code: &KernelCode) -> Result<f64, String> {
    let threads = launch.threads()?;
    let warps = threads.div_ceil(32) as f64;
    let resident = blocks_per_sm(threads, code.registers) as f64;
    let busy = launch.busy_blocks.max(1) as f64;
    let mean = launch.busy_read as f64 / busy;
    let per_sm = (busy / device.sms).ceil();
    let together = per_sm.min(resident);
    let instructions = |bytes: f64| bytes / ELEMENT_BYTES * code.sass_per_element / 32.0;
    let block_rate = (warps * device.warp_ipc).min(ISSUE_PER_SM) * device.cycles_per_us;
    let sm_rate = (together * warps * device.warp_ipc).min(ISSUE_PER_SM) * device.cycles_per_us;
    let issue = (per_sm * instructions(mean) / sm_rate)
        .max(instructions(launch.block_read_max as f64) / block_rate);
    let block_bandwidth = threads as f64 * code.in_flight / device.memory_latency_us;
    let latency = (per_sm * mean / (together * block_bandwidth))
        .max(launch.block_read_max as f64 / block_bandwidth);
    let dram = launch.unique_read as f64 / device.bandwidth;
    let mufu = launch.exps as f64 / (device.sms * MUFU_PER_SM * device.cycles_per_us);
    Ok(device.launch_us + code.steps * device.step_us + dram.max(issue).max(latency).max(mufu))
}

/// A call's time, µs: its launches in turn (an untruncated call: the row launch, then the
/// decide launch; or the fused form's one launch).
pub fn call_us(
    device: &Device,
    launches: &[Launch],
    code: &VerifyCode,
    greedy: bool,
) -> Result<f64, String> {
    let mut total = 0.0;
    for l in launches {
        let kernel = if l.kernel.starts_with("asps_verify_rows") {
            &code.rows
        } else if l.kernel.starts_with("asps_verify_decide") {
            if greedy {
                &code.decide_greedy
            } else {
                &code.decide_sampled
            }
        } else if l.kernel.starts_with("asps_verify_fused") {
            let (greedy_code, sampled_code) = code
                .fused
                .as_ref()
                .ok_or("the model has no code for the fused launch")?;
            if greedy { greedy_code } else { sampled_code }
        } else {
            return Err(format!("the model has no code for {}", l.kernel));
        };
        total += launch_us(device, l, kernel)?;
    }
    Ok(total)
}

/// The kernels of this checkout, from their SASS and registers (read by the structure bench):
/// the row pass's loop loads a tile of 16 elements per iteration (32 bytes of bf16), the
/// residual race a target and a draft tile. Steps as for [`DFFD685`], and one more in each
/// launch that reads logits: the row pass's argmax, found by one thread in the tile holding the
/// row's max after the block's merge (target rows), and the race's token, picked by one thread
/// in the winning tile after the merge. The fused launch: the row pass's 4, its arrival (1),
/// then in the request's last block the merge (1) and, for a sampling call, the plan (1), one
/// row read, merged and picked (3), and the outcome (1); its loads all at the decide loop's
/// instructions (its largest block is the last one, whose second reads dominate) but the row
/// pass's bytes in flight (most of its loads are the row pass's).
pub fn current_code(
    rows_sass_per_element: f64,
    rows_registers: u32,
    residual_sass_per_token: f64,
    decide_registers: u32,
    fused_registers: u32,
) -> VerifyCode {
    let decide = KernelCode {
        sass_per_element: residual_sass_per_token / 2.0,
        registers: decide_registers,
        in_flight: 64.0,
        steps: 5.0,
    };
    VerifyCode {
        rows: KernelCode {
            sass_per_element: rows_sass_per_element,
            registers: rows_registers,
            in_flight: 32.0,
            steps: 4.0,
        },
        decide_greedy: decide,
        decide_sampled: KernelCode {
            steps: 9.0,
            ..decide
        },
        fused: Some((
            KernelCode {
                registers: fused_registers,
                in_flight: 32.0,
                steps: 4.0 + 1.0 + 2.0,
                ..decide
            },
            KernelCode {
                registers: fused_registers,
                in_flight: 32.0,
                steps: 4.0 + 1.0 + 6.0,
                ..decide
            },
        )),
    }
}
