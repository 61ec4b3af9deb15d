//! Speculative decoding of SmolLM2-135M-Instruct in candle, verified by asps: SpS and ASpS for
//! n in {1, 2, 4, 8} on a few prompts, with the exact expected tokens per step from each
//! step's law beside the sampled means, and the wall time per generated token.
//!
//!     engines/candle/fetch-model.sh
//!     cargo run --release -p asps-candle -- [flags]
//!
//! Flags (defaults in brackets): --tokens N [96] new tokens per generation; --n LIST [1,2,4,8]
//! draft lengths; --temperatures LIST [1]; --draft-temperature T [each run's temperature] for
//! the drafter (0: it proposes its argmax); --top-k K, --top-p P, --min-p M [off] for both
//! models; --draft-quant f32|q8_0|q5_0|q5_1|q4_0|q4_1 [q4_0] and --draft-blocks LIST [0-29]
//! (e.g. 0-9 or 0-5,28,29) make the draft; --seed S [1]; --prompts translation,qa,story [all]
//! picks built-in prompts, --prompt TEXT and --prompt-file FILE add the user's own (each
//! repeatable; with either, only the built-ins --prompts names run);
//! --out FILE.md writes the report; --model PATH (else $ASPS_SMOLLM2, else the cache);
//! --gpu (build with `--features cuda`) runs both models on candle's CUDA device and verifies
//! in asps's kernels on the device logits.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use asps::Method;
use asps::reference::{Sampling, Truncation};
use asps_candle::llama::{Llama, Weights};
use asps_candle::model_file::model_path;
use asps_candle::prompts::{PROMPTS, Prompt, chat};
use asps_candle::speculative::{CpuVerify, Generation, Settings, Verify, generate, generate_plain};
use asps_candle::tokenizer::Tokenizer;
use candle_core::Device;
use candle_core::quantized::GgmlDType;

struct Args {
    model: Option<PathBuf>,
    tokens: usize,
    draft_lens: Vec<usize>,
    temperatures: Vec<f64>,
    /// The drafter's temperature; `None`: each run's temperature.
    draft_temperature: Option<f64>,
    draft_blocks: Vec<usize>,
    draft_quant: Option<GgmlDType>,
    truncation: Truncation,
    seed: u64,
    prompts: Vec<RunPrompt>,
    out: Option<PathBuf>,
    gpu: bool,
}

/// A prompt of the run: a built-in one, or the user's (named `user1`, `user2`, ...).
#[derive(Debug, Clone)]
struct RunPrompt {
    name: String,
    text: String,
}

impl From<Prompt> for RunPrompt {
    fn from(p: Prompt) -> Self {
        RunPrompt {
            name: p.name.into(),
            text: p.text.into(),
        }
    }
}

/// "0-9" or "0-5,28,29": block indices.
fn parse_blocks(spec: &str) -> Result<Vec<usize>> {
    let mut blocks = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
                if a > b {
                    bail!("block range {a}-{b} is empty");
                }
                blocks.extend(a..=b);
            }
            None => blocks.push(part.trim().parse()?),
        }
    }
    Ok(blocks)
}

const USAGE: &str = "\
usage: asps-candle [flags]   (cargo run --release -p asps-candle -- [flags])
  --tokens N            new tokens per generation [96]
  --n LIST              draft lengths, e.g. 1,2,4,8 [1,2,4,8]
  --temperatures LIST   e.g. 0.5,1 [1]
  --draft-temperature T the drafter's temperature, 0 for its argmax [each run's temperature]
  --top-k K --top-p P --min-p M   truncation of both models [off]
  --draft-quant Q       the draft's weights: f32, q8_0, q5_0, q5_1, q4_0, q4_1 [q4_0]
  --draft-blocks LIST   the draft's blocks, e.g. 0-9 or 0-5,28,29 [0-29]
  --seed S              [1]
  --prompts LIST        of translation, qa, story [all, unless --prompt or --prompt-file]
  --prompt TEXT         a prompt of your own (repeatable)
  --prompt-file FILE    a prompt of your own, the file's whole text (repeatable)
  --out FILE.md         write the report there
  --model PATH          the GGUF file [$ASPS_SMOLLM2, else the cache of fetch-model.sh]
  --gpu                 candle's CUDA device and asps's kernels (build with --features cuda)
";

/// "f32" (no requantization), "q8_0", "q4_0" and the other block formats of 32 values.
fn parse_quant(value: &str) -> Result<Option<GgmlDType>> {
    Ok(match value {
        "f32" => None,
        "q8_0" => Some(GgmlDType::Q8_0),
        "q5_0" => Some(GgmlDType::Q5_0),
        "q5_1" => Some(GgmlDType::Q5_1),
        "q4_0" => Some(GgmlDType::Q4_0),
        "q4_1" => Some(GgmlDType::Q4_1),
        _ => bail!("--draft-quant {value}: one of f32, q8_0, q5_0, q5_1, q4_0, q4_1"),
    })
}

/// `value` of `flag`, parsed.
fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{flag} {value}: {e}"))
}

/// A comma-separated list of values of `flag`.
fn parse_list<T: std::str::FromStr>(flag: &str, value: &str) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    value.split(',').map(|v| parse(flag, v)).collect()
}

/// A run's request: the target at `temperature`, the drafter at `draft_temperature` (`None`:
/// the same), both with `truncation`.
fn sampling(temperature: f64, draft_temperature: Option<f64>, truncation: Truncation) -> Sampling {
    Sampling {
        temperature,
        draft_temperature,
        target: truncation,
        draft: truncation,
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        model: None,
        tokens: 96,
        draft_lens: vec![1, 2, 4, 8],
        temperatures: vec![1.0],
        draft_temperature: None,
        draft_blocks: parse_blocks(DEFAULT_DRAFT_BLOCKS)?,
        draft_quant: DEFAULT_DRAFT_QUANT,
        truncation: Truncation::OFF,
        seed: 1,
        prompts: Vec::new(),
        out: None,
        gpu: false,
    };
    // The built-in prompts --prompts names (`None`: all, unless the user gives their own).
    let mut builtin: Option<Vec<RunPrompt>> = None;
    let mut user: Vec<RunPrompt> = Vec::new();
    let add_user = |text: String, user: &mut Vec<RunPrompt>| -> Result<()> {
        if text.trim().is_empty() {
            bail!("an empty prompt");
        }
        user.push(RunPrompt {
            name: format!("user{}", user.len() + 1),
            text,
        });
        Ok(())
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--gpu" => args.gpu = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--model" => args.model = Some(PathBuf::from(value()?)),
            "--tokens" => args.tokens = parse(&flag, &value()?)?,
            "--n" => args.draft_lens = parse_list(&flag, &value()?)?,
            "--temperatures" => args.temperatures = parse_list(&flag, &value()?)?,
            "--draft-temperature" => args.draft_temperature = Some(parse(&flag, &value()?)?),
            "--draft-blocks" => args.draft_blocks = parse_blocks(&value()?)?,
            "--draft-quant" => args.draft_quant = parse_quant(&value()?)?,
            "--top-k" => args.truncation.top_k = parse(&flag, &value()?)?,
            "--top-p" => args.truncation.top_p = parse(&flag, &value()?)?,
            "--min-p" => args.truncation.min_p = parse(&flag, &value()?)?,
            "--seed" => args.seed = parse(&flag, &value()?)?,
            "--out" => args.out = Some(PathBuf::from(value()?)),
            "--prompts" => {
                builtin = Some(
                    value()?
                        .split(',')
                        .map(|name| {
                            PROMPTS
                                .iter()
                                .find(|p| p.name == name)
                                .map(|&p| RunPrompt::from(p))
                                .with_context(|| format!("no prompt named {name}"))
                        })
                        .collect::<Result<_>>()?,
                )
            }
            "--prompt" => add_user(value()?, &mut user)?,
            "--prompt-file" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("--prompt-file {path}"))?;
                add_user(text, &mut user)?
            }
            _ => bail!("unknown flag {flag} (see --help)"),
        }
    }
    if args.tokens == 0 || args.draft_lens.contains(&0) || args.draft_lens.is_empty() {
        bail!("--tokens and every --n must be at least 1");
    }
    // The built-ins --prompts names, then the user's; all built-ins when neither is given.
    let all = || PROMPTS.iter().map(|&p| RunPrompt::from(p)).collect();
    args.prompts = match builtin {
        Some(b) => b,
        None if user.is_empty() => all(),
        None => Vec::new(),
    };
    args.prompts.extend(user);
    // Each request checked before the model loads.
    for &temperature in &args.temperatures {
        sampling(temperature, args.draft_temperature, args.truncation).check()?;
    }
    #[cfg(not(feature = "cuda"))]
    if args.gpu {
        bail!(
            "--gpu needs the cuda feature: cargo run --release -p asps-candle --features cuda -- --gpu"
        );
    }
    #[cfg(feature = "cuda")]
    if args.gpu
        && args
            .draft_lens
            .iter()
            .any(|&n| n > asps_candle::gpu::MAX_DRAFT)
    {
        bail!(
            "--gpu takes draft lengths up to {}",
            asps_candle::gpu::MAX_DRAFT
        );
    }
    Ok(args)
}

/// The draft's blocks by default (see README).
const DEFAULT_DRAFT_BLOCKS: &str = "0-29";
/// The draft's weight format by default.
const DEFAULT_DRAFT_QUANT: Option<GgmlDType> = Some(GgmlDType::Q4_0);

/// One (prompt, temperature, n) cell: both rules' generations.
struct Cell {
    prompt: String,
    temperature: f64,
    n: usize,
    sps: Generation,
    asps: Generation,
}

/// Sums over generations: tokens kept by asps (accepted + 1 per step), tokens generated,
/// steps, wall milliseconds, and per rule (0: SpS, 1: ASpS) the
/// sum and count of the steps' exact expected tokens.
#[derive(Default)]
struct Totals {
    sampled: usize,
    tokens: usize,
    steps: usize,
    ms: f64,
    exact: [(f64, usize); 2],
}

impl Totals {
    fn of(g: &Generation) -> Self {
        let mut totals = Totals::default();
        totals.add(g);
        totals
    }

    fn add(&mut self, g: &Generation) {
        // Sampled tokens per step from asps's outcomes before the output is cut at the stop
        // token or the token budget, as the exact expectations are.
        self.sampled += g.steps.iter().map(|s| s.accepted + 1).sum::<usize>();
        self.tokens += g.tokens.len();
        self.steps += g.steps.len();
        self.ms += g.elapsed.as_secs_f64() * 1e3;
        for s in &g.steps {
            if let Some(e) = s.expected {
                for (total, e) in self.exact.iter_mut().zip(e) {
                    total.0 += e;
                    total.1 += 1;
                }
            }
        }
    }

    fn sampled(&self) -> f64 {
        self.sampled as f64 / self.steps as f64
    }

    fn exact(&self, m: usize) -> f64 {
        self.exact[m].0 / self.exact[m].1 as f64
    }

    fn ms_per_token(&self) -> f64 {
        self.ms / self.tokens as f64
    }
}

const TABLE_HEAD: &str = "| prompt | T | n | SpS exact | SpS sampled | ASpS exact | ASpS sampled | ASpS / SpS (exact, same steps) | ms/token SpS | ms/token ASpS | ms/token target alone |
|---|---|---|---|---|---|---|---|---|---|---|";

/// A row of the table over `cells`: each rule's exact (over its own steps) and sampled tokens
/// per step, the ratio of both rules' exact expectations over the steps of both runs (the same
/// drafts and logits for both rules, so the ratio is paired), and wall times.
fn table_row(label: &str, temperature: f64, n: usize, cells: &[&Cell], plain_ms: f64) -> String {
    let (mut sps, mut asps) = (Totals::default(), Totals::default());
    for c in cells {
        sps.add(&c.sps);
        asps.add(&c.asps);
    }
    let mut both = Totals::default();
    for c in cells {
        both.add(&c.sps);
        both.add(&c.asps);
    }
    format!(
        "| {label} | {temperature} | {n} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} | {plain_ms:.1} |",
        sps.exact(0),
        sps.sampled(),
        asps.exact(1),
        asps.sampled(),
        both.exact(1) / both.exact(0),
        sps.ms_per_token(),
        asps.ms_per_token(),
    )
}

fn verifier(gpu: bool, device: &Device) -> Result<Box<dyn Verify>> {
    if !gpu {
        return Ok(Box::new(CpuVerify));
    }
    #[cfg(feature = "cuda")]
    {
        Ok(Box::new(asps_candle::gpu::GpuVerify::new(device)?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        unreachable!("parse_args refuses --gpu without the cuda feature")
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let path = model_path(args.model.clone())?;
    let device = if args.gpu {
        Device::new_cuda(0).context("candle's CUDA device")?
    } else {
        Device::Cpu
    };
    let tokenizer = Tokenizer::from_gguf_file(&path)?;
    let weights: Arc<Weights> = Weights::load(&path, &device)?;
    let target = Llama::full(&weights);
    let draft = Llama::draft(&weights, args.draft_blocks.clone(), args.draft_quant)?;
    let mut verify = verifier(args.gpu, &device)?;
    let layers = weights.config().layers;
    let mut report = String::new();
    writeln!(
        report,
        "{} in candle 0.11.1 on the {}. Target: all {layers} blocks, f32 \
         weights. Draft: blocks {} ({} of {layers}) with the final norm and head, {} weights. \
         Verification: {}. Up to {} new tokens per generation (stopping at {}), seed {}, \
         draft temperature {}, truncation of both models: top-k {}, top-p {}, min-p {}.\n",
        path.file_name().unwrap_or_default().to_string_lossy(),
        if args.gpu { "GPU" } else { "CPU" },
        format_blocks(draft.blocks()),
        draft.blocks().len(),
        draft.format(),
        if args.gpu {
            "asps's kernels on candle's device logits"
        } else {
            "asps's CPU reference"
        },
        args.tokens,
        tokenizer.token(tokenizer.eos()).unwrap_or("the end token"),
        args.seed,
        args.draft_temperature
            .map_or("each run's temperature".to_string(), |t| t.to_string()),
        args.truncation.top_k,
        args.truncation.top_p,
        args.truncation.min_p,
    )?;
    let costs = pass_costs(
        &target,
        &draft,
        &tokenizer.encode(&chat(&args.prompts[0].text))?,
        &args.draft_lens,
    )?;
    writeln!(report, "{costs}")?;
    print!("{report}");
    let mut cells = Vec::new();
    let mut plain_ms = Vec::new();
    // Prefill wall times (ms): both models' (every speculative run), the target's alone.
    let (mut prefill_both, mut prefill_plain) = (Vec::new(), Vec::new());
    let mut texts = String::new();
    for prompt in &args.prompts {
        let ids = tokenizer.encode(&chat(&prompt.text))?;
        for &temperature in &args.temperatures {
            let base = Settings {
                method: Method::Sps,
                draft_len: 1,
                sampling: sampling(temperature, args.draft_temperature, args.truncation),
                seed: args.seed,
                max_new: args.tokens,
                stop: Some(tokenizer.eos()),
                record_laws: true,
            };
            let plain = generate_plain(&target, &ids, &base)?;
            prefill_plain.push(plain.prefill.as_secs_f64() * 1e3);
            plain_ms.push((
                prompt.name.clone(),
                temperature,
                plain.elapsed.as_secs_f64() * 1e3 / plain.tokens.len() as f64,
            ));
            for &n in &args.draft_lens {
                let mut run = |method| {
                    let settings = Settings {
                        method,
                        draft_len: n,
                        ..base.clone()
                    };
                    generate(&target, &draft, verify.as_mut(), &ids, &settings)
                };
                let sps = run(Method::Sps)?;
                let asps = run(Method::Asps)?;
                prefill_both.push(sps.prefill.as_secs_f64() * 1e3);
                prefill_both.push(asps.prefill.as_secs_f64() * 1e3);
                let line = format!(
                    "[{} T={temperature} n={n}] tokens per step: SpS {:.2}, ASpS {:.2}",
                    prompt.name,
                    Totals::of(&sps).sampled(),
                    Totals::of(&asps).sampled(),
                );
                println!("{line}");
                if n == *args.draft_lens.iter().max().expect("checked non-empty") {
                    let text = tokenizer.decode(&asps.tokens)?;
                    let shown = format!(
                        "{} (T = {temperature}, ASpS, n = {n}): {}",
                        prompt.name,
                        text.trim_end().replace('\n', " / ")
                    );
                    println!("  {shown}");
                    writeln!(texts, "- {shown}")?;
                }
                cells.push(Cell {
                    prompt: prompt.name.clone(),
                    temperature,
                    n,
                    sps,
                    asps,
                });
            }
        }
    }
    writeln!(
        report,
        "Generated text (the built-in prompts are in src/prompts.rs):\n\n{texts}"
    )?;
    for p in args.prompts.iter().filter(|p| p.name.starts_with("user")) {
        writeln!(
            report,
            "- {}'s prompt: {}",
            p.name,
            p.text.trim().replace('\n', " / ")
        )?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    writeln!(
        report,
        "Wall times per token are of decoding alone. The prompts' prefill, not in them, took {:.0} ms \
         on average for both models' caches and {:.0} ms for the target's alone.\n",
        mean(&prefill_both),
        mean(&prefill_plain)
    )?;
    writeln!(report, "{TABLE_HEAD}")?;
    for &temperature in &args.temperatures {
        let plain = |name: Option<&str>| {
            let v: Vec<f64> = plain_ms
                .iter()
                .filter(|p| p.1 == temperature && name.is_none_or(|n| n == p.0.as_str()))
                .map(|p| p.2)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let names: Vec<Option<&str>> = std::iter::once(None)
            .chain(args.prompts.iter().map(|p| Some(p.name.as_str())))
            .collect();
        for name in names {
            for &n in &args.draft_lens {
                let chosen: Vec<&Cell> = cells
                    .iter()
                    .filter(|c| {
                        c.temperature == temperature
                            && c.n == n
                            && name.is_none_or(|p| p == c.prompt.as_str())
                    })
                    .collect();
                writeln!(
                    report,
                    "{}",
                    table_row(name.unwrap_or("all"), temperature, n, &chosen, plain(name))
                )?;
            }
        }
    }
    println!();
    print!("{}", &report[report.find("| prompt").expect("the table")..]);
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Wall time of the passes a step makes, after the first prompt (median of 5): a one-token
/// pass of each model, and the target's pass over n + 1 tokens for each n.
fn pass_costs(target: &Llama, draft: &Llama, prompt: &[u32], lens: &[usize]) -> Result<String> {
    let time = |model: &Llama, len: usize| -> Result<f64> {
        let mut cache = model.new_cache();
        model.forward(prompt, &mut cache)?;
        let feed: Vec<u32> = prompt[..len].to_vec();
        let mut ms = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            model.forward(&feed, &mut cache)?;
            ms.push(start.elapsed().as_secs_f64() * 1e3);
            cache.truncate(prompt.len())?;
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[2])
    };
    let (t1, d1) = (time(target, 1)?, time(draft, 1)?);
    let mut line = format!(
        "Pass costs (ms, median of 5, after the first prompt): draft one token {d1:.1} \
         ({:.2} of the target's), target one token {t1:.1}",
        d1 / t1
    );
    for &n in lens {
        let tn = time(target, (n + 1).min(prompt.len()))?;
        line += &format!(
            ", target {} tokens {tn:.1} ({:.2} one-token passes)",
            n + 1,
            tn / t1
        );
    }
    line.push('.');
    Ok(line)
}

/// Block indices as ranges: "0-9, 20-29".
fn format_blocks(blocks: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i;
        while j + 1 < blocks.len() && blocks[j + 1] == blocks[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            blocks[i].to_string()
        } else {
            format!("{}-{}", blocks[i], blocks[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}
