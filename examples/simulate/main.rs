//! The main job: a speculative-decoding simulation on the CPU reference.
//!
//! A synthetic target model over a LLaMA-3-sized vocabulary (Zipf-shaped logits plus
//! prefix-dependent noise) and a draft model that is the target blurred by more noise. For each
//! trial the draft proposes 8 tokens; for every n = 1..8 the first n are verified by SpS and by
//! ASpS. The table gives tokens per step: the exact expectation from the law of each step
//! (averaged over the drafts) beside the mean of the sampled outcomes.
//!
//!     cargo run --release --example simulate [-- --trials 40 --vocab 128256 --blur 1.0 --temperature 1.0 --draft-temperature 0.7]
//!
//! Sampling, as an engine's parameters (docs/design.md, "Truncation"): `--temperature T` for
//! the target, `--draft-temperature T` for the drafter (by default the target's; 0 is a greedy
//! drafter, which proposes its argmax), `--top-k K --top-p P --min-p M` for the target's rows and
//! `--draft-top-k K --draft-top-p P --draft-min-p M` for the draft's (the draft tokens are drawn
//! from the draft rows as the drafter samples them, and verified against the target rows as the
//! target samples them), e.g. `--top-k 50 --top-p 0.9 --draft-top-k 50 --draft-top-p 0.9`; with
//! `--gpu` the kernels take the same sampling, and a draw that differs from the CPU's must be a
//! near-tie of a decision or of a truncation threshold.
//!
//! `--tree` runs draft trees instead (tree.rs: TV and RRS over three tree shapes beside a chain
//! with as many target rows); with `--gpu`, every shape's trees are also verified in one tree
//! call per rule, which must draw the CPU's outcomes.
//!
//! With `--gpu`, the same steps are also verified by the CUDA kernels, all drafts of one n in
//! one batched call (ragged: the draft buffers hold 8 tokens, each request uses n), with the
//! same seeds and offsets as the CPU draws, and the GPU's sampled means are printed beside.
//! Sharing the noise, the GPU draws the CPU's outcomes except on float near-ties; a draw that
//! differs without one makes the run fail (exit status 1).

use std::time::Instant;

use asps::cuda::{
    BatchLogits, Gpu, SamplingInputs, TruncationInputs, Verifier, VerifyInputs, VerifyOutputs,
};
use asps::reference::{
    PreparedStep, Sampling, Truncation, argmax, threshold_near_tie, truncated_softmax,
};
use asps::rng::{NoiseKey, Purpose};
use asps::{Method, Outcome, Result};
use cudarc::driver::{CudaSlice, CudaStream};
use std::sync::Arc;

mod tree;

const MAX_DRAFT: usize = 8;
/// The rules the table compares, in its column order.
const METHODS: [Method; 2] = [Method::Sps, Method::Asps];
/// Largest gap between the reference's keys of two outcomes that counts as a float near-tie.
const NEAR_TIE: f64 = 1e-3;
/// Relative move of top-p or min-p that, changing a row's kept set, marks a threshold near-tie.
const NEAR_TIE_THRESHOLD: f32 = 1e-4;

const USAGE: &str = "\
usage: cargo run --release --example simulate -- [flags]
  --trials N              drafts per n, or trees per shape (default 40)
  --vocab V               vocabulary size (default 128256)
  --blur B                the draft's noise over the target's logits (default 1)
  --temperature T         the target's temperature (default 1; 0 is refused: greedy)
  --draft-temperature T   the drafter's (default: the target's; 0 is a greedy drafter)
  --top-k K --top-p P --min-p M
                          the target rows' truncation (default off)
  --draft-top-k K --draft-top-p P --draft-min-p M
                          the draft rows' truncation (default off)
  --tree                  draft trees (TV and RRS over three shapes) instead of chains
  --gpu                   also verify on the GPU with the same noise (needs a CUDA device)
  --help                  this text
";

struct Args {
    trials: u64,
    vocab: usize,
    blur: f64,
    /// How the target and the drafter sample.
    sampling: Sampling,
    gpu: bool,
    /// Draft trees instead of chains (tree.rs).
    tree: bool,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        trials: 40,
        vocab: 128_256,
        blur: 1.0,
        sampling: Sampling::plain(1.0),
        gpu: false,
        tree: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--gpu" {
            args.gpu = true;
            continue;
        }
        if flag == "--tree" {
            args.tree = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        let s = &mut args.sampling;
        match flag.as_str() {
            "--trials" => args.trials = value.parse().map_err(|e| bad(&e))?,
            "--vocab" => args.vocab = value.parse().map_err(|e| bad(&e))?,
            "--blur" => args.blur = value.parse().map_err(|e| bad(&e))?,
            "--temperature" => s.temperature = value.parse().map_err(|e| bad(&e))?,
            "--draft-temperature" => {
                s.draft_temperature = Some(value.parse().map_err(|e| bad(&e))?)
            }
            "--top-k" => s.target.top_k = value.parse().map_err(|e| bad(&e))?,
            "--top-p" => s.target.top_p = value.parse().map_err(|e| bad(&e))?,
            "--min-p" => s.target.min_p = value.parse().map_err(|e| bad(&e))?,
            "--draft-top-k" => s.draft.top_k = value.parse().map_err(|e| bad(&e))?,
            "--draft-top-p" => s.draft.top_p = value.parse().map_err(|e| bad(&e))?,
            "--draft-min-p" => s.draft.min_p = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag} (--help lists them)")),
        }
    }
    if args.trials == 0 || args.vocab < 2 {
        return Err("need --trials >= 1 and --vocab >= 2".into());
    }
    args.sampling.check().map_err(|e| e.to_string())?;
    if args.sampling.is_greedy() {
        return Err("--temperature 0 is greedy: the simulation compares sampling rules".into());
    }

    Ok(args)
}

/// Deterministic pseudo-random numbers for the synthetic models (not the verification noise).
fn hash_uniform(seed: u64, row: usize, token: u32) -> f64 {
    NoiseKey::new(seed, 0xC0FFEE).tile_uniforms(Purpose::Bonus, row, token >> 1)[token as usize & 1]
}

/// A seed for the context `prefix` of model `which` (0: target, 1: draft).
fn context_seed(prefix: &[u32], which: u64) -> u64 {
    prefix.iter().fold(0x9E37_79B9_7F4A_7C15 ^ which, |h, &t| {
        (h ^ u64::from(t))
            .wrapping_mul(0x100_0000_01B3)
            .rotate_left(17)
    })
}

/// Target logits after `prefix`: a Zipf shape plus noise that depends on the context.
fn target_logits(prefix: &[u32], vocab: usize) -> Vec<f32> {
    let seed = context_seed(prefix, 0);
    (0..vocab)
        .map(|v| {
            let zipf = -1.1 * ((v + 1) as f64).ln();
            (zipf + 3.0 * hash_uniform(seed, 0, v as u32)) as f32
        })
        .collect()
}

/// Draft logits after `prefix`: the target's, blurred by `blur` times more noise.
fn draft_logits(prefix: &[u32], vocab: usize, blur: f64) -> Vec<f32> {
    let seed = context_seed(prefix, 1);
    target_logits(prefix, vocab)
        .into_iter()
        .enumerate()
        .map(|(v, x)| (f64::from(x) + blur * 3.0 * (hash_uniform(seed, 1, v as u32) - 0.5)) as f32)
        .collect()
}

/// Draws a draft token as the drafter samples (`sampling`'s draft temperature and truncation), by
/// inversion of `u`; the argmax for a greedy drafter.
fn draw(logits: &[f32], sampling: &Sampling, u: f64) -> Result<u32> {
    let temperature = sampling.draft_temperature();
    if temperature == 0.0 {
        return Ok(argmax(logits.iter().map(|&x| f64::from(x))).expect("a row") as u32);
    }
    let p = truncated_softmax(logits, temperature, &sampling.draft)?;
    let mut acc = 0.0;
    for (v, pv) in p.iter().enumerate() {
        acc += pv;
        if u < acc {
            return Ok(v as u32);
        }
    }
    Ok(p.iter().rposition(|&x| x > 0.0).unwrap_or(0) as u32)
}

/// One trial's rows: MAX_DRAFT + 1 target rows, MAX_DRAFT draft rows, the draft tokens.
struct Trial {
    target: Vec<Vec<f32>>,
    draft: Vec<Vec<f32>>,
    tokens: Vec<u32>,
}

/// One model's truncation arrays (top-k, top-p, min-p) on the device.
type TruncationArrays = (CudaSlice<i32>, CudaSlice<f32>, CudaSlice<f32>);

/// The arrays as a call's truncation inputs (all off without them).
fn views(arrays: &Option<TruncationArrays>) -> TruncationInputs<'_> {
    match arrays {
        None => TruncationInputs::default(),
        Some((k, p, m)) => TruncationInputs {
            top_k: Some(k.as_view()),
            top_p: Some(p.as_view()),
            min_p: Some(m.as_view()),
        },
    }
}

/// `sampling` for each of `b` requests, on the device: the temperatures, and each model's
/// truncation arrays where that model truncates.
struct DeviceSampling {
    temps: CudaSlice<f32>,
    draft_temps: Option<CudaSlice<f32>>,
    truncation: [Option<TruncationArrays>; 2],
}

impl DeviceSampling {
    fn new(stream: &Arc<CudaStream>, sampling: &Sampling, b: usize) -> Result<Self> {
        let truncation = |t: &Truncation| -> Result<Option<TruncationArrays>> {
            Ok(if t.is_off() {
                None
            } else {
                Some((
                    stream.clone_htod(&vec![t.top_k; b])?,
                    stream.clone_htod(&vec![t.top_p; b])?,
                    stream.clone_htod(&vec![t.min_p; b])?,
                ))
            })
        };
        Ok(DeviceSampling {
            temps: stream.clone_htod(&vec![sampling.temperature as f32; b])?,
            draft_temps: sampling
                .draft_temperature
                .map(|t| stream.clone_htod(&vec![t as f32; b]))
                .transpose()?,
            truncation: [truncation(&sampling.target)?, truncation(&sampling.draft)?],
        })
    }

    fn inputs(&self) -> SamplingInputs<'_> {
        SamplingInputs {
            temperature: self.temps.as_view(),
            target: views(&self.truncation[0]),
            draft: views(&self.truncation[1]),
            draft_temperature: self.draft_temps.as_ref().map(CudaSlice::as_view),
        }
    }
}

/// Outcomes of every trial, `[n - 1][method of METHODS][trial]`.
type Draws = Vec<[Vec<Outcome>; 2]>;

/// The GPU's draws for n = 1..=MAX_DRAFT, every trial in one batch per call, request i keyed by
/// (seed i, offset n) as on the CPU; and the device's name.
fn gpu_outcomes(trials: &[Trial], vocab: usize, args: &Args) -> Result<(Draws, String)> {
    let gpu = Gpu::new(0)?;
    let (device, _) = gpu.describe()?;
    let stream = gpu.context().default_stream();
    let b = trials.len();
    let rows = |pick: &dyn Fn(&Trial) -> &Vec<Vec<f32>>| -> Vec<f32> {
        trials
            .iter()
            .flat_map(|t| pick(t).iter().flatten().copied())
            .collect()
    };
    let target = stream.clone_htod(&rows(&|t| &t.target))?;
    let draft = stream.clone_htod(&rows(&|t| &t.draft))?;
    let tokens: Vec<i32> = trials
        .iter()
        .flat_map(|t| t.tokens.iter().map(|&x| x as i32))
        .collect();
    let tokens = stream.clone_htod(&tokens)?;
    let sampling = DeviceSampling::new(&stream, &args.sampling, b)?;
    let seeds = stream.clone_htod(&(0..b as u64).collect::<Vec<_>>())?;
    let mut verifier = Verifier::new(&gpu, &stream, b, MAX_DRAFT)?;
    let mut out = VerifyOutputs::new(&stream, b, MAX_DRAFT)?;
    let mut outcomes = Vec::new();
    for n in 1..=MAX_DRAFT {
        let lens = stream.clone_htod(&vec![n as i32; b])?;
        let mut draw = |method| -> Result<Vec<Outcome>> {
            let mut offsets = stream.clone_htod(&vec![n as u64; b])?;
            let inputs = VerifyInputs {
                method,
                batch: b,
                max_draft: MAX_DRAFT,
                vocab,
                target: BatchLogits::packed(target.as_view(), MAX_DRAFT + 1, vocab),
                draft: BatchLogits::packed(draft.as_view(), MAX_DRAFT, vocab),
                draft_tokens: tokens.as_view(),
                draft_lens: lens.as_view(),
                seeds: seeds.as_view(),
                sampling: sampling.inputs(),
            };
            verifier.verify(&inputs, &mut offsets, &mut out)?;
            out.read(&stream)?
                .into_iter()
                .map(|r| match r.tokens.last() {
                    Some(&token) => Ok(Outcome {
                        accepted: r.accepted,
                        token,
                    }),
                    None => Err(asps::Error::InvalidArgument(format!(
                        "the GPU refused a request: {:?}",
                        r.status
                    ))),
                })
                .collect()
        };
        outcomes.push([draw(METHODS[0])?, draw(METHODS[1])?]);
    }
    Ok((outcomes, device))
}

#[derive(Default, Clone, Copy)]
struct Tally {
    exact: f64,
    sampled: f64,
}

fn main() -> Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("simulate: {msg}");
            std::process::exit(2);
        }
    };
    let sampling = args.sampling;
    if args.tree {
        return tree::run(args.trials, args.vocab, args.blur, &sampling, args.gpu);
    }
    println!(
        "asps simulate (CPU reference): V = {}, temperature {}, draft temperature {}, draft blur \
         {}, {} drafts per n",
        args.vocab,
        sampling.temperature,
        sampling.draft_temperature(),
        args.blur,
        args.trials
    );
    for (model, t) in [("target", &sampling.target), ("draft", &sampling.draft)] {
        if !t.is_off() {
            println!(
                "{model} truncation: top-k {}, top-p {}, min-p {}",
                t.top_k, t.top_p, t.min_p
            );
        }
    }
    let start = Instant::now();
    let mut sps = [Tally::default(); MAX_DRAFT];
    let mut asps = [Tally::default(); MAX_DRAFT];
    let mut kept = Vec::new();
    // The CPU's outcome of every draw, [n - 1][method][trial], to hold the GPU's to.
    let mut cpu: Draws = vec![[Vec::new(), Vec::new()]; MAX_DRAFT];
    for trial in 0..args.trials {
        // The draft model proposes MAX_DRAFT tokens after a trial-specific context.
        let mut context = vec![trial as u32];
        let mut draft_rows = Vec::new();
        let mut tokens = Vec::new();
        for r in 0..MAX_DRAFT {
            let row = draft_logits(&context, args.vocab, args.blur);
            let u = hash_uniform(trial, 2 + r, 0);
            let token = draw(&row, &sampling, u)?;
            draft_rows.push(row);
            tokens.push(token);
            context.push(token);
        }
        let target_rows: Vec<Vec<f32>> = (0..=MAX_DRAFT)
            .map(|r| target_logits(&context[..1 + r], args.vocab))
            .collect();
        for n in 1..=MAX_DRAFT {
            let step = PreparedStep::from_sampling(
                &target_rows[..=n],
                &draft_rows[..n],
                &tokens[..n],
                &sampling,
            )?;
            let key = NoiseKey::new(trial, n as u64);
            for (m, tally) in [&mut sps, &mut asps].into_iter().enumerate() {
                let outcome = step.sample(METHODS[m], key)?;
                tally[n - 1].exact += step.law(METHODS[m]).expected_tokens();
                tally[n - 1].sampled += outcome.num_emitted() as f64;
                cpu[n - 1][m].push(outcome);
            }
        }
        if args.gpu {
            kept.push(Trial {
                target: target_rows,
                draft: draft_rows,
                tokens,
            });
        }
    }
    let t = args.trials as f64;
    println!("  n | SpS exact | SpS sampled | ASpS exact | ASpS sampled | ASpS / SpS (exact)");
    for n in 1..=MAX_DRAFT {
        let (s, a) = (sps[n - 1], asps[n - 1]);
        println!(
            "  {n} | {:9.4} | {:11.3} | {:10.4} | {:12.3} | {:+.2}%",
            s.exact / t,
            s.sampled / t,
            a.exact / t,
            a.sampled / t,
            100.0 * (a.exact / s.exact - 1.0)
        );
    }
    println!(
        "exact: mean over the drafts of each step's expected tokens from its law; sampled: mean of \
         one draw per draft. {:.1} s.",
        start.elapsed().as_secs_f64()
    );
    if args.gpu {
        let (gpu, device) = gpu_outcomes(&kept, args.vocab, &args).unwrap_or_else(|e| {
            eprintln!("simulate --gpu: {e}");
            std::process::exit(1);
        });
        println!("GPU kernels on {device}: the same drafts, seeds and offsets");
        println!("  n | SpS sampled | ASpS sampled | draws equal to the CPU's | near-ties");
        let mut unexplained = 0;
        for n in 1..=MAX_DRAFT {
            let mut means = [0.0; 2];
            let (mut same, mut ties) = (0, 0);
            for m in 0..2 {
                for (trial, (g, c)) in gpu[n - 1][m].iter().zip(&cpu[n - 1][m]).enumerate() {
                    means[m] += g.num_emitted() as f64 / t;
                    if g == c {
                        same += 1;
                        continue;
                    }
                    let k = &kept[trial];
                    let step = PreparedStep::from_sampling(
                        &k.target[..=n],
                        &k.draft[..n],
                        &k.tokens[..n],
                        &sampling,
                    )?;
                    let key = NoiseKey::new(trial as u64, n as u64);
                    let margin = step.decision_margin(METHODS[m], key, *c, *g);
                    let (t, d) = (sampling.temperature, sampling.draft_temperature());
                    let tie = |r: &Vec<f32>, t: f64, trunc: &Truncation| {
                        t > 0.0 && threshold_near_tie(r, t, trunc, NEAR_TIE_THRESHOLD)
                    };
                    let threshold_tie = k.target[..=n].iter().any(|r| tie(r, t, &sampling.target))
                        || k.draft[..n].iter().any(|r| tie(r, d, &sampling.draft));
                    if margin < NEAR_TIE || threshold_tie {
                        ties += 1;
                    } else {
                        unexplained += 1;
                        eprintln!(
                            "simulate --gpu: n = {n}, {:?}, trial {trial}: GPU {g:?}, CPU {c:?}, \
                             key gap {margin} (not a near-tie)",
                            METHODS[m]
                        );
                    }
                }
            }
            println!(
                "  {n} | {:11.3} | {:12.3} | {same:>16} of {:<4} | {ties}",
                means[0],
                means[1],
                2 * kept.len()
            );
        }
        if unexplained > 0 {
            eprintln!(
                "simulate --gpu: {unexplained} GPU draws differ from the CPU's without a near-tie"
            );
            std::process::exit(1);
        }
    }
    Ok(())
}
