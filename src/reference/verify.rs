//! One-call verification of one request, from logits or from probabilities.

use super::request::SampledStep;
use super::sampling::Sampling;
use super::step::PreparedStep;
use crate::dtype::Logit;
use crate::error::Result;
use crate::method::{Method, Outcome};
use crate::rng::NoiseKey;

/// Verifies one request from logits, as the GPU entry points do.
///
/// `target` holds the n + 1 target rows, `draft` the n draft rows (V logits each, f32, f16 or
/// bf16), `tokens` the n draft tokens. Temperature 0, or [`Method::Greedy`], verifies greedily on
/// the raw logits (ties go to the lowest token id) and draws no noise; otherwise the rows are
/// turned into probabilities by `softmax(logits / temperature)` in f64 and `method` draws the
/// outcome with the noise of `key`.
///
/// Errors: see [`PreparedStep::from_logits`]; a temperature that is neither 0 nor valid
/// ([`super::temperature_is_valid`]).
///
/// ```
/// use asps::{reference::verify_logits, Method, NoiseKey};
/// let target = [[0.0f32, 1.0, 2.0], [2.0, 1.0, 0.0]];
/// let draft = [[0.0f32, 0.0, 3.0]];
/// let out = verify_logits(Method::Asps, &target, &draft, &[2], 1.0, NoiseKey::new(42, 0)).unwrap();
/// assert!(out.accepted <= 1 && out.token < 3);
/// // Greedy: token 2 is the target's argmax at row 0, then token 0 at row 1.
/// let out = verify_logits(Method::Asps, &target, &draft, &[2], 0.0, NoiseKey::new(42, 0)).unwrap();
/// assert_eq!(out.emitted(&[2]), vec![2, 0]);
/// ```
pub fn verify_logits<T: Logit>(
    method: Method,
    target: &[impl AsRef<[T]>],
    draft: &[impl AsRef<[T]>],
    tokens: &[u32],
    temperature: f64,
    key: NoiseKey,
) -> Result<Outcome> {
    verify_logits_sampled(
        method,
        target,
        draft,
        tokens,
        &Sampling::plain(temperature),
        key,
    )
}

/// Verifies one request from probabilities (`target`: p_1..p_{n+1}, `draft`: q_1..q_n), drawing
/// the outcome with the noise of `key`. Errors: see [`PreparedStep::from_probs`].
pub fn verify_probs(
    method: Method,
    target: &[impl AsRef<[f64]>],
    draft: &[impl AsRef<[f64]>],
    tokens: &[u32],
    key: NoiseKey,
) -> Result<Outcome> {
    PreparedStep::from_probs(target, draft, tokens)?.sample(method, key)
}

/// [`verify_logits`] as an engine samples ([`Sampling`]: each model's temperature, top-k,
/// top-p and min-p), with the kernels' noise scheme. Greedy (temperature 0 or
/// [`Method::Greedy`]) ignores the draft's sampling and both truncations, though their values
/// are checked as for the other rules. Errors as [`PreparedStep::from_sampling`].
///
/// ```
/// use asps::reference::{Sampling, Truncation, verify_logits_sampled};
/// use asps::{Method, NoiseKey};
/// let target = [[2.0f32, 1.0, 0.0], [0.0, 0.0, 0.0]];
/// let draft = [[0.0f32, 1.0, 1.5]];
/// // The target keeps only its argmax, token 0: the draft token 2 is rejected, 0 emitted.
/// let sampling = Sampling {
///     target: Truncation { top_k: 1, ..Truncation::OFF },
///     ..Sampling::plain(1.0)
/// };
/// let out = verify_logits_sampled(Method::Sps, &target, &draft, &[2], &sampling, NoiseKey::new(7, 0));
/// assert_eq!(out.unwrap().emitted(&[2]), vec![0]);
/// ```
pub fn verify_logits_sampled<T: Logit>(
    method: Method,
    target: &[impl AsRef<[T]>],
    draft: &[impl AsRef<[T]>],
    tokens: &[u32],
    sampling: &Sampling,
    key: NoiseKey,
) -> Result<Outcome> {
    match SampledStep::new(method, target, draft, tokens, sampling)? {
        SampledStep::Greedy { outcome, .. } => Ok(outcome),
        SampledStep::Sampling(step) => step.sample(method, key),
    }
}
