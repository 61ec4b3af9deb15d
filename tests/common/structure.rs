//! The structure of one verify call as the emulated device (tests/emu/device) counts it: its
//! launches (kernel, grid, block) and the global memory each one moves through the kernels'
//! ld()/st() helpers, read back from the device's trace (ASPS_EMU_TRACE). Shared by
//! tests/emu_counts.rs (checks) and benches/structure.rs (the table of BENCHMARKS.md).
#![allow(dead_code)]

use std::fs;

use asps::cuda::{RequestStatus, ResidualForm, Verifier, VerifyOutputs};
use asps::reference::Truncation;
use asps::{Logit, Method};
use cudarc::driver::DeviceRepr;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::batch::Batch;
use super::gpu::{DeviceBatch, TestGpu, run};

/// One launch of a verify call.
pub struct Launch {
    pub kernel: String,
    pub grid: String,
    pub block: String,
    /// Every byte the threads loaded (a value all threads of a block load counts once each).
    pub loaded: u64,
    /// 32-byte sectors read, once each per launch: what DRAM moves if nothing stays in cache.
    pub unique_read: u64,
    pub unique_written: u64,
    /// Philox blocks the noise streams computed.
    pub philox: u64,
    /// Float exponentials and logarithms evaluated.
    pub exps: u64,
    /// The most bytes one block loaded.
    pub block_read_max: u64,
    /// The blocks that loaded at least half of `block_read_max`, and the bytes they loaded.
    pub busy_blocks: u64,
    pub busy_read: u64,
}

impl Launch {
    /// Blocks in the grid.
    pub fn blocks(&self) -> Result<u64, String> {
        volume(&self.grid).ok_or_else(|| format!("unreadable grid `{}`", self.grid))
    }

    /// Threads per block.
    pub fn threads(&self) -> Result<u64, String> {
        volume(&self.block).ok_or_else(|| format!("unreadable block `{}`", self.block))
    }
}

/// The product of dimensions written `XxYxZ`, as the trace writes grids and blocks.
fn volume(dims: &str) -> Option<u64> {
    dims.split('x').map(|d| d.parse::<u64>().ok()).product()
}

/// The launches the trace holds past byte `from`.
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
                exps: field("exps")?.parse().ok()?,
                block_read_max: field("block_read_max")?.parse().ok()?,
                busy_blocks: field("busy_blocks")?.parse().ok()?,
                busy_read: field("busy_read")?.parse().ok()?,
            })
        })
        .collect()
}

/// Which drafts a counted call verifies. All at temperature 1, with seeded logits uniform in
/// [-4, 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drafts {
    /// Independent target and draft rows: acceptance is random (seeded).
    Random,
    /// Draft rows equal to the target rows: every draft token is kept (rho = 1, certainly).
    Accepted,
    /// As `Accepted`, but the first draft token is one the draft model was confident of (its
    /// draft logit raised to 8) and the target masks (logit -inf): the first row rejects,
    /// certainly, and ASpS gives every later row weight 0.
    Rejected,
    /// The GPU bench's workload (benches/gpu.rs): draft rows the target rows plus a quarter of
    /// an independent row of the same law, each draft token its draft row's argmax, so that
    /// acceptance is high but not certain. The rows a call reads are then those the timed
    /// calls read, up to the noise of each call.
    Bench,
}

impl Drafts {
    /// The name the structure table and its JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Drafts::Random => "random",
            Drafts::Accepted => "accepted",
            Drafts::Rejected => "rejected",
            Drafts::Bench => "bench",
        }
    }
}

/// Seeded logits in [-4, 4).
fn logits<T: Logit>(len: usize, seed: u64) -> Vec<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| T::from_f64(8.0 * rng.random::<f64>() - 4.0))
        .collect()
}

/// The bytes of one read of a call's logits: B (2n + 1) rows of V values of T.
pub fn logits_bytes<T>((b, n, v): (usize, usize, usize)) -> u64 {
    (b * (2 * n + 1) * v * std::mem::size_of::<T>()) as u64
}

/// The emulated device's trace file for this process, set for every later launch.
pub fn start_trace(name: &str) -> String {
    let trace = std::env::temp_dir().join(format!("asps-{name}-{}.trace", std::process::id()));
    let trace = trace.to_str().expect("a UTF-8 temp dir").to_string();
    // SAFETY: called before the caller spawns threads (the callers have no test harness); the
    // emulated device reads the variable at each launch.
    unsafe { std::env::set_var("ASPS_EMU_TRACE", &trace) };
    trace
}

/// Runs one verify call of `method` over `drafts` at (B, n, V) with every request drafting n
/// tokens, and returns its launches as the trace at `trace_path` recorded them: in the decide
/// step's form `form` (`None`: the verifier's choice) and, with `truncation`, every request
/// truncating its target and draft rows by it (the draft tokens are then the draft rows'
/// argmaxes, which every truncation keeps).
pub fn count_call_in_form<T: Logit + DeviceRepr>(
    gpu: &TestGpu,
    trace_path: &str,
    method: Method,
    (b, n, v): (usize, usize, usize),
    drafts: Drafts,
    form: Option<ResidualForm>,
    truncation: Option<Truncation>,
) -> Vec<Launch> {
    let stream = gpu.context().default_stream();
    let mut tokens: Vec<i32> = (0..b * n).map(|i| (i * 7919 % v) as i32).collect();
    let mut target = logits::<T>(b * (n + 1) * v, 1);
    let mut draft = match drafts {
        Drafts::Random => logits::<T>(b * n * v, 2),
        Drafts::Accepted | Drafts::Rejected => (0..b)
            .flat_map(|i| target[i * (n + 1) * v..][..n * v].to_vec())
            .collect(),
        Drafts::Bench => {
            let noise = logits::<T>(b * n * v, 2);
            (0..b * n * v)
                .map(|i| {
                    let t = target[(i / (n * v)) * (n + 1) * v + i % (n * v)].to_f64();
                    T::from_f64(t + 0.25 * noise[i].to_f64())
                })
                .collect()
        }
    };
    if drafts == Drafts::Rejected {
        // (A token the draft gave probability ~1e-7 would not do: with the rows otherwise
        // equal, p - q is then below f32's resolution of the two rows' normalisers.)
        for i in 0..b {
            let x = tokens[i * n] as usize;
            target[i * (n + 1) * v + x] = T::from_f64(f64::NEG_INFINITY);
            draft[i * n * v + x] = T::from_f64(8.0);
        }
    }
    if truncation.is_some() || drafts == Drafts::Bench {
        for (i, t) in tokens.iter_mut().enumerate() {
            let row = draft[i * v..][..v].iter().map(|x| x.to_f64());
            *t = asps::reference::argmax(row).expect("a row") as i32;
        }
    }
    let h = Batch {
        b,
        n,
        v,
        target,
        draft,
        tokens,
        lens: vec![n as i32; b],
        temps: vec![1.0; b],
        seeds: (0..b as u64).collect(),
        offsets: vec![0; b],
        draft_temps: None,
        truncs: truncation.map(|t| vec![(t, t); b]),
    };
    let mut d = DeviceBatch::new(&stream, &h);
    let mut verifier = Verifier::new(gpu, &stream, b, n).unwrap();
    verifier.set_residual_form(form);
    let mut out = VerifyOutputs::new(&stream, b, n).unwrap();
    stream.synchronize().unwrap();
    let from = fs::read_to_string(trace_path).unwrap_or_default().len();
    let results = run(&mut verifier, method, &h, &mut d, &mut out);
    let calls = launches(&fs::read_to_string(trace_path).unwrap(), from);
    if matches!(drafts, Drafts::Accepted | Drafts::Rejected) && method != Method::Greedy {
        // The drafts were built to give a known outcome (greedy's depends on argmaxes, which
        // these tokens are not); a count of another outcome would be mislabelled.
        let want = if drafts == Drafts::Accepted { n } else { 0 };
        for (i, r) in results.iter().enumerate() {
            assert_eq!(
                r.status,
                RequestStatus::Ok,
                "{method:?} {drafts:?} request {i}"
            );
            assert_eq!(r.accepted, want, "{method:?} {drafts:?} request {i}");
        }
    }
    calls
}

/// A tree call of the structure table: `b` requests, each the same shape of `nodes` nodes (a
/// binary tree: node i's parent is (i - 1) / 2), children drawn from draft rows under `law`
/// (the k-th child of u the draft row's k-th most probable token: distinct, as without
/// replacement requires) or deterministic, verified under `rule` at temperature 1 through the
/// safe front. Draft rows are the target's plus noise of a quarter of its spread (a drafter
/// close to the target). Returns the call's launches and the bytes of one read of the rows it
/// must read: every node's target row, and the internal nodes' draft rows when its children
/// were drawn from them.
pub fn count_tree_call<T: Logit + DeviceRepr>(
    gpu: &TestGpu,
    trace_path: &str,
    rule: asps::reference::TreeRule,
    law: asps::reference::SiblingLaw,
    (b, nodes, v): (usize, usize, usize),
) -> (Vec<Launch>, u64) {
    use asps::capi::AspsTreeVerifyArgs;
    use asps::cuda::{BatchLogits, SamplingInputs, TreeInputs, TreeOutputs, TreeVerifier};
    use asps::reference::SiblingLaw;
    let stream = gpu.context().default_stream();
    let target = logits::<T>(b * nodes * v, 1);
    let noise = logits::<T>(b * nodes * v, 2);
    let draft: Vec<T> = target
        .iter()
        .zip(&noise)
        .map(|(t, e)| T::from_f64(t.to_f64() + 0.25 * e.to_f64()))
        .collect();
    let mut parents = vec![0i32; b * nodes];
    let mut tokens = vec![0i32; b * nodes];
    for r in 0..b {
        for c in 1..nodes {
            let u = (c - 1) / 2;
            let row = &draft[(r * nodes + u) * v..][..v];
            let mut order: Vec<usize> = (0..v).collect();
            order.select_nth_unstable_by(1, |&x, &y| row[y].to_f64().total_cmp(&row[x].to_f64()));
            order[..2].sort_by(|&x, &y| row[y].to_f64().total_cmp(&row[x].to_f64()));
            parents[r * nodes + c] = u as i32;
            tokens[r * nodes + c] = order[(c - 1) % 2] as i32;
        }
    }
    let up_i32 = |x: &[i32]| stream.clone_htod(x).unwrap();
    let (d_target, d_draft) = (
        stream.clone_htod(&target).unwrap(),
        stream.clone_htod(&draft).unwrap(),
    );
    let (d_nodes, d_parents, d_tokens) = (
        up_i32(&vec![nodes as i32; b]),
        up_i32(&parents),
        up_i32(&tokens),
    );
    let d_laws = up_i32(&vec![AspsTreeVerifyArgs::sibling_law_code(law); b]);
    let d_seeds = stream
        .clone_htod(&(0..b as u64).collect::<Vec<_>>())
        .unwrap();
    let d_temps = stream.clone_htod(&vec![1.0f32; b]).unwrap();
    let mut d_offsets = stream.alloc_zeros::<u64>(b).unwrap();
    let sampled = law != SiblingLaw::Deterministic;
    let inputs = TreeInputs {
        rule,
        batch: b,
        max_nodes: nodes,
        vocab: v,
        target: BatchLogits::packed(d_target.as_view(), nodes, v),
        draft: sampled.then(|| BatchLogits::packed(d_draft.as_view(), nodes, v)),
        num_nodes: d_nodes.as_view(),
        parents: d_parents.as_view(),
        tokens: d_tokens.as_view(),
        sibling_laws: d_laws.as_view(),
        seeds: d_seeds.as_view(),
        sampling: SamplingInputs::plain(d_temps.as_view()),
    };
    let mut verifier = TreeVerifier::new(gpu, &stream, b, nodes).unwrap();
    let mut out = TreeOutputs::new(&stream, b).unwrap();
    stream.synchronize().unwrap();
    let from = fs::read_to_string(trace_path).unwrap_or_default().len();
    verifier.verify(&inputs, &mut d_offsets, &mut out).unwrap();
    for (i, r) in out.read(&stream).unwrap().iter().enumerate() {
        assert_eq!(r.status, RequestStatus::Ok, "tree request {i}");
    }
    let calls = launches(&fs::read_to_string(trace_path).unwrap(), from);
    // Internal nodes: in this binary tree, node u has a child when 2u + 1 < nodes.
    let internal = (0..nodes).filter(|u| 2 * u + 1 < nodes).count();
    let rows = b * (nodes + if sampled { internal } else { 0 });
    (calls, (rows * v * std::mem::size_of::<T>()) as u64)
}
