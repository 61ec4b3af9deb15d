//! The speculative decoding loop: draft n tokens from q, score them with the target in one
//! pass, verify with asps, keep what it emits, roll the caches back, repeat.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use asps::reference::{Sampling, argmax, step_law_from_logits, truncated_softmax};
use asps::{Method, NoiseKey, Outcome};
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::llama::{KvCache, Llama};

/// Verifies one step: `target` holds the target's logits `[n + 1, V]` at the positions after
/// the committed text and after each draft token, `draft` the draft's `[n, V]` from which
/// `tokens` were drawn. Both tensors are on the models' device.
pub trait Verify {
    /// The outcome of `method` for this step, with the noise of `key`.
    fn verify(
        &mut self,
        method: Method,
        target: &Tensor,
        draft: &Tensor,
        tokens: &[u32],
        sampling: &Sampling,
        key: NoiseKey,
    ) -> Result<Outcome>;
}

/// asps's CPU reference (f64): copies the logits to the host.
pub struct CpuVerify;

impl Verify for CpuVerify {
    fn verify(
        &mut self,
        method: Method,
        target: &Tensor,
        draft: &Tensor,
        tokens: &[u32],
        sampling: &Sampling,
        key: NoiseKey,
    ) -> Result<Outcome> {
        let (target, draft) = host_rows(target, draft)?;
        Ok(asps::reference::verify_logits_sampled(
            method, &target, &draft, tokens, sampling, key,
        )?)
    }
}

/// Logits rows copied to the host.
type HostRows = Vec<Vec<f32>>;

fn host_rows(target: &Tensor, draft: &Tensor) -> Result<(HostRows, HostRows)> {
    Ok((target.to_vec2()?, draft.to_vec2()?))
}

/// How one generation runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The verification rule (greedy also when `sampling.temperature` is 0).
    pub method: Method,
    /// n, the draft tokens per step (the last step may emit past `max_new`; the output is cut).
    pub draft_len: usize,
    /// Each model's temperature and truncation: the drafter samples its tokens as the draft's
    /// say, the target as the target's.
    pub sampling: Sampling,
    /// The request's seed: its draft sampler's and, with the step as offset, asps's noise key.
    pub seed: u64,
    /// Tokens to generate at most.
    pub max_new: usize,
    /// Stops after emitting this token (included in the output).
    pub stop: Option<u32>,
    /// Records each step's exact expected tokens under SpS and under ASpS (a host copy of the
    /// logits, for measurement only: verification does not need it).
    pub record_laws: bool,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Draft tokens asps kept (before the output is cut at `max_new` or the stop token, so it
    /// may exceed `emitted - 1`): with `+ 1`, this step's sampled tokens per step.
    pub accepted: usize,
    /// Tokens appended (accepted + 1, fewer where the output was cut).
    pub emitted: usize,
    /// The exact expected tokens per step given this step's drafts and logits, under SpS and
    /// under ASpS (when recorded): the law of asps's reference, `E[accepted] + 1`.
    pub expected: Option<[f64; 2]>,
}

/// A generation: its new tokens, its steps and its wall time.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated tokens (the prompt excluded).
    pub tokens: Vec<u32>,
    /// One record per target pass.
    pub steps: Vec<StepRecord>,
    /// Wall time of decoding: from the first step on, the prompt's prefill and the recording
    /// of exact expectations ([`Settings::record_laws`]) excluded.
    pub elapsed: Duration,
    /// Wall time of the prompt's prefill (both models' caches).
    pub prefill: Duration,
}

/// Draws a token from `logits` as the request samples: argmax at temperature 0, else from the
/// truncated softmax with one uniform of `rng` (inverse CDF in f64).
pub fn sample_token(
    logits: &[f32],
    temperature: f64,
    truncation: &asps::reference::Truncation,
    rng: &mut StdRng,
) -> Result<u32> {
    if temperature == 0.0 {
        // asps's greedy rule: the lowest id on ties.
        let best = argmax(logits.iter().map(|&x| f64::from(x)));
        return Ok(best.context("an empty row of logits")? as u32);
    }
    let probs = truncated_softmax(logits, temperature, truncation)?;
    let u: f64 = rng.random();
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            acc += p;
            last = i;
            if u < acc {
                return Ok(i as u32);
            }
        }
    }
    // u within rounding of 1: the last token with mass.
    Ok(last as u32)
}

/// The seed of a request's draft sampler, apart from asps's Philox stream of the same seed.
fn draft_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0xD1B5_4A32_D192_ED03)
}

/// Fills `cache` with every committed token but the last (which the next pass feeds).
fn prefill(model: &Llama, cache: &mut KvCache, prompt: &[u32]) -> Result<()> {
    if prompt.len() > 1 {
        model.forward(&prompt[..prompt.len() - 1], cache)?;
    }
    Ok(())
}

/// One sequence being decoded speculatively: the committed tokens, both models' caches and the
/// draft sampler. Between steps the target's cache holds every committed token but the last
/// (which the next pass feeds); the draft's holds at most as many (after a step that kept every
/// draft, it lacks the last draft token too, and its next pass feeds both). Cloning it is cheap (the
/// caches' tensors are shared, never written in place), so a test can branch one prefix into
/// many continuations.
#[derive(Clone)]
pub struct Session<'m> {
    target: &'m Llama,
    draft: &'m Llama,
    target_cache: KvCache,
    draft_cache: KvCache,
    seq: Vec<u32>,
    prompt_len: usize,
    rng: StdRng,
    seed: u64,
    steps: u64,
}

/// What one step appended.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The tokens appended: the kept drafts, then the target's token (cut to the room left).
    pub emitted: Vec<u32>,
    /// The step's record.
    pub record: StepRecord,
    /// Time spent on the record's exact expectations (measurement, not decoding).
    pub law_time: Duration,
}

impl<'m> Session<'m> {
    /// Prefills both caches with `prompt`; `seed` keys the draft sampler and asps's noise.
    pub fn new(target: &'m Llama, draft: &'m Llama, prompt: &[u32], seed: u64) -> Result<Self> {
        if prompt.is_empty() {
            bail!("a generation needs a prompt");
        }
        let (mut target_cache, mut draft_cache) = (target.new_cache(), draft.new_cache());
        prefill(target, &mut target_cache, prompt)?;
        prefill(draft, &mut draft_cache, prompt)?;
        Ok(Session {
            target,
            draft,
            target_cache,
            draft_cache,
            seq: prompt.to_vec(),
            prompt_len: prompt.len(),
            rng: draft_rng(seed),
            seed,
            steps: 0,
        })
    }

    /// This session with another seed (for the draft sampler and asps's noise), steps counted
    /// from 0 again.
    pub fn reseeded(&self, seed: u64) -> Self {
        Session {
            rng: draft_rng(seed),
            seed,
            steps: 0,
            ..self.clone()
        }
    }

    /// The tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.seq[self.prompt_len..]
    }

    /// One step: draft `settings.draft_len` tokens, score them with the target in one pass,
    /// verify, append at most `room` tokens, roll the caches back to the committed tokens.
    ///
    /// On an error (a refused step) no token is appended, the caches are rolled back to the
    /// committed tokens and the step's offset is not used up (the draft sampler has moved on).
    pub fn step(
        &mut self,
        verifier: &mut dyn Verify,
        settings: &Settings,
        room: usize,
    ) -> Result<Step> {
        let step = self.try_step(verifier, settings, room);
        if step.is_err() {
            let committed = self.seq.len() - 1;
            self.target_cache.truncate(committed)?;
            self.draft_cache.truncate(committed)?;
        }
        step
    }

    fn try_step(
        &mut self,
        verifier: &mut dyn Verify,
        settings: &Settings,
        room: usize,
    ) -> Result<Step> {
        let n = settings.draft_len;
        if n == 0 || room == 0 {
            bail!("a step drafts at least one token and appends at least one");
        }
        let sampling = &settings.sampling;
        sampling.check()?;
        // Draft: the draft model catches up on committed tokens it has not seen, then draws
        // n tokens, one pass each.
        let mut feed = self.seq[self.draft_cache.len()..].to_vec();
        let mut drafts = Vec::with_capacity(n);
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let logits = self.draft.forward(&feed, &mut self.draft_cache)?;
            let row = logits.get(logits.dim(0)? - 1)?;
            let host: Vec<f32> = row.to_vec1()?;
            // The drafter samples as the request says it does (its own temperature and
            // truncation), which is the law asps verifies the drafts against.
            let temperature = sampling.draft_temperature();
            let x = sample_token(&host, temperature, &sampling.draft, &mut self.rng)?;
            rows.push(row);
            drafts.push(x);
            feed = vec![x];
        }
        let draft_rows = Tensor::stack(&rows, 0)?;
        // Target: one pass over the last committed token and the n drafts.
        let mut feed = self.seq[self.target_cache.len()..].to_vec();
        feed.extend_from_slice(&drafts);
        let logits = self.target.forward(&feed, &mut self.target_cache)?;
        let target_rows = logits.narrow(0, feed.len() - (n + 1), n + 1)?;
        // The step's offset: one per step, as an engine advances it.
        let key = NoiseKey::new(self.seed, self.steps);
        let outcome = verifier.verify(
            settings.method,
            &target_rows,
            &draft_rows,
            &drafts,
            sampling,
            key,
        )?;
        self.steps += 1;
        let law_start = Instant::now();
        let expected = if settings.record_laws {
            Some(expected_tokens(
                &target_rows,
                &draft_rows,
                &drafts,
                sampling,
            )?)
        } else {
            None
        };
        let law_time = law_start.elapsed();
        let mut emitted = outcome.emitted(&drafts);
        emitted.truncate(room);
        if let Some(stop) = settings.stop
            && let Some(at) = emitted.iter().position(|&t| t == stop)
        {
            emitted.truncate(at + 1);
        }
        self.seq.extend_from_slice(&emitted);
        // Roll back: the caches keep at most the committed tokens but the last.
        self.target_cache.truncate(self.seq.len() - 1)?;
        self.draft_cache.truncate(self.seq.len() - 1)?;
        Ok(Step {
            record: StepRecord {
                accepted: outcome.accepted,
                emitted: emitted.len(),
                expected,
            },
            emitted,
            law_time,
        })
    }
}

/// Speculative decoding of `prompt` with `target` and `draft`, verified by `verifier`.
pub fn generate(
    target: &Llama,
    draft: &Llama,
    verifier: &mut dyn Verify,
    prompt: &[u32],
    settings: &Settings,
) -> Result<Generation> {
    let start = Instant::now();
    let mut session = Session::new(target, draft, prompt, settings.seed)?;
    let prefill = start.elapsed();
    let start = Instant::now();
    let mut steps = Vec::new();
    let mut law_time = Duration::ZERO;
    while session.generated().len() < settings.max_new {
        let room = settings.max_new - session.generated().len();
        let step = session.step(verifier, settings, room)?;
        law_time += step.law_time;
        steps.push(step.record);
        if settings.stop.is_some() && step.emitted.last() == settings.stop.as_ref() {
            break;
        }
    }
    Ok(Generation {
        tokens: session.generated().to_vec(),
        steps,
        elapsed: start.elapsed() - law_time,
        prefill,
    })
}

/// The exact expected tokens per step under SpS and under ASpS for these drafts and logits.
fn expected_tokens(
    target: &Tensor,
    draft: &Tensor,
    drafts: &[u32],
    sampling: &Sampling,
) -> Result<[f64; 2]> {
    let (target, draft) = host_rows(target, draft)?;
    let law = |m| -> Result<f64> {
        Ok(step_law_from_logits(m, &target, &draft, drafts, sampling)?.expected_tokens())
    };
    Ok([law(Method::Sps)?, law(Method::Asps)?])
}

/// Plain decoding of `prompt` with `model` alone, one pass per token, sampling as the request
/// does (`settings.method`, `draft_len` and `record_laws` are not used).
pub fn generate_plain(model: &Llama, prompt: &[u32], settings: &Settings) -> Result<Generation> {
    if prompt.is_empty() {
        bail!("a generation needs a prompt");
    }
    let start = Instant::now();
    let mut rng = draft_rng(settings.seed);
    let mut cache = model.new_cache();
    prefill(model, &mut cache, prompt)?;
    let prefill = start.elapsed();
    let start = Instant::now();
    let mut seq = prompt.to_vec();
    let mut steps = Vec::new();
    while seq.len() - prompt.len() < settings.max_new {
        let logits = model.forward(&seq[cache.len()..], &mut cache)?;
        let row: Vec<f32> = logits.get(logits.dim(0)? - 1)?.to_vec1()?;
        let s = &settings.sampling;
        let x = sample_token(&row, s.temperature, &s.target, &mut rng)?;
        seq.push(x);
        steps.push(StepRecord {
            accepted: 0,
            emitted: 1,
            expected: None,
        });
        if settings.stop == Some(x) {
            break;
        }
    }
    Ok(Generation {
        tokens: seq[prompt.len()..].to_vec(),
        steps,
        elapsed: start.elapsed(),
        prefill,
    })
}
