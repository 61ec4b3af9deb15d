//! The exact law of one verification step: the probability of every outcome, in f64.

use super::greedy::greedy;
use super::request::SampledStep;
use super::sampling::Sampling;
use super::step::{PreparedStep, min0};
use crate::dtype::Logit;
use crate::error::Result;
use crate::method::{Method, Outcome};

/// The law of one verification step of one request, given its draft.
///
/// `reject[k][v]` is P(the first k draft tokens are kept and v is emitted next), for k < n;
/// `accept_all` is P(all n draft tokens are kept), after which the bonus token follows `bonus`
/// (p_{n+1} for ASpS and SpS, a point mass on its argmax for greedy).
#[derive(Debug, Clone, PartialEq)]
pub struct StepLaw {
    /// `reject[k][v]` = P(keep x_1..x_k, then emit v), k = 0..n-1.
    pub reject: Vec<Vec<f64>>,
    /// P(keep all n draft tokens).
    pub accept_all: f64,
    /// The law of the bonus token after a full accept.
    pub bonus: Vec<f64>,
}

impl StepLaw {
    /// The draft length n.
    pub fn draft_len(&self) -> usize {
        self.reject.len()
    }

    /// The total probability: 1 up to rounding.
    pub fn total(&self) -> f64 {
        self.reject.iter().flatten().sum::<f64>() + self.accept_all
    }

    /// P(exactly k draft tokens are kept), k = 0..=n.
    pub fn accepted_law(&self) -> Vec<f64> {
        let mut out: Vec<f64> = self.reject.iter().map(|row| row.iter().sum()).collect();
        out.push(self.accept_all);
        out
    }

    /// The expected number of tokens emitted by the step: sum over k of (k + 1) P(k kept).
    pub fn expected_tokens(&self) -> f64 {
        self.accepted_law()
            .iter()
            .enumerate()
            .map(|(k, pk)| (k + 1) as f64 * pk)
            .sum()
    }

    /// The probability of one outcome (with the bonus drawn from `bonus` after a full accept).
    pub fn prob(&self, outcome: Outcome) -> f64 {
        let v = outcome.token as usize;
        match self.reject.get(outcome.accepted) {
            Some(row) => row.get(v).copied().unwrap_or(0.0),
            None if outcome.accepted == self.draft_len() => {
                self.accept_all * self.bonus.get(v).copied().unwrap_or(0.0)
            }
            None => 0.0,
        }
    }
}

impl PreparedStep {
    /// The exact law of this step under `method`.
    pub fn law(&self, method: Method) -> StepLaw {
        match method {
            Method::Asps => self.asps_law(),
            Method::Sps => self.sps_law(),
            Method::Greedy => self.greedy_law(),
        }
    }

    /// The closed form of docs/design.md ("The math"): P(keep x_1..x_k, emit v) =
    /// T_{k+1} res_{k+1}(v), P(keep all) = s_n.
    fn asps_law(&self) -> StepLaw {
        let reject = self
            .res_asps
            .iter()
            .zip(&self.log_big_t)
            .map(|(res, log_t)| {
                let t = log_t.exp();
                res.iter().map(|r| t * r).collect()
            })
            .collect();
        StepLaw {
            reject,
            accept_all: self.log_s[self.draft_len()].exp(),
            bonus: self.p[self.draft_len()].clone(),
        }
    }

    /// Row by row: keep x_r with probability min(1, rho_r); at the first rejection emit from
    /// norm(max(0, p_r - q_r)).
    fn sps_law(&self) -> StepLaw {
        let mut keep = 1.0;
        let mut reject = Vec::with_capacity(self.draft_len());
        for (res, &log_rho) in self.res_sps.iter().zip(&self.log_rho) {
            let log_acc = min0(log_rho);
            let reject_prob = -log_acc.exp_m1();
            let mass: f64 = res.iter().sum();
            let scale = if mass > 0.0 {
                keep * reject_prob / mass
            } else {
                0.0
            };
            reject.push(res.iter().map(|r| scale * r).collect());
            keep *= log_acc.exp();
        }
        StepLaw {
            reject,
            accept_all: keep,
            bonus: self.p[self.draft_len()].clone(),
        }
    }

    /// A point mass: keep while the draft token is the target's argmax (lowest id on ties).
    fn greedy_law(&self) -> StepLaw {
        point_mass(self.greedy_outcome(), self.draft_len(), self.vocab())
    }

    /// Greedy verification on the target probabilities.
    pub(crate) fn greedy_outcome(&self) -> Outcome {
        greedy(self.p.iter().map(|row| row.iter().copied()), &self.tokens)
    }
}

/// The law that gives `outcome` with probability 1 (n draft tokens, V tokens).
fn point_mass(outcome: Outcome, n: usize, vocab: usize) -> StepLaw {
    let mut reject = vec![vec![0.0; vocab]; n];
    let mut bonus = vec![0.0; vocab];
    if outcome.accepted < n {
        reject[outcome.accepted][outcome.token as usize] = 1.0;
    } else {
        bonus[outcome.token as usize] = 1.0;
    }
    StepLaw {
        reject,
        accept_all: if outcome.accepted == n { 1.0 } else { 0.0 },
        bonus,
    }
}

/// The exact law of one verification step under `method`, from probabilities: `target` holds
/// p_1..p_{n+1}, `draft` holds q_1..q_n and `tokens` the n draft tokens (`tokens[r]` drawn from
/// `draft[r]`). Errors as [`PreparedStep::from_probs`].
///
/// ```
/// use asps::{reference::step_law, Method};
/// // The binary example of the tests: p = (1/3, 2/3), q = (2/3, 1/3) at every prefix, n = 2,
/// // and the draft (0, 0).
/// let p = [1.0 / 3.0, 2.0 / 3.0];
/// let q = [2.0 / 3.0, 1.0 / 3.0];
/// let law = step_law(Method::Sps, &[p, p, p], &[q, q], &[0, 0]).unwrap();
/// // SpS keeps token 0 with probability p(0) / q(0) = 1/2, then rejects or keeps again.
/// assert!((law.reject[0][1] - 0.5).abs() < 1e-15);
/// assert!((law.accept_all - 0.25).abs() < 1e-15);
/// assert!((law.total() - 1.0).abs() < 1e-15);
/// assert!((law.expected_tokens() - (1.0 * 0.5 + 2.0 * 0.25 + 3.0 * 0.25)).abs() < 1e-15);
/// ```
pub fn step_law(
    method: Method,
    target: &[impl AsRef<[f64]>],
    draft: &[impl AsRef<[f64]>],
    tokens: &[u32],
) -> Result<StepLaw> {
    Ok(PreparedStep::from_probs(target, draft, tokens)?.law(method))
}

/// The exact law of one verification step under `method`, from logits as an engine samples
/// ([`Sampling`]): each model's temperature and truncation (top-k, top-p, min-p:
/// [`super::Truncation`]), the target's applied to its n + 1 rows, the draft's to its n rows
/// (the draft's temperature is the target's unless `sampling.draft_temperature` says
/// otherwise; 0 is a greedy drafter). A target temperature of 0, or [`Method::Greedy`], is
/// greedy on the raw logits: a point mass, the rest ignored. Errors as
/// [`PreparedStep::from_sampling`] (greedy: as [`super::verify_logits`]).
///
/// ```
/// use asps::reference::{Sampling, Truncation, step_law_from_logits};
/// use asps::{Method, Outcome};
/// // V = 3, n = 1. The draft proposed token 2 from its row under top-k = 2 (tokens 1 and 2);
/// // the target samples under top-k = 1, so only its argmax (token 0) can follow an empty
/// // prefix: token 2 is always rejected and token 0 emitted.
/// let target = [[2.0f32, 1.0, 0.0], [0.0, 0.0, 0.0]];
/// let draft = [[0.0f32, 1.0, 1.5]];
/// let sampling = Sampling {
///     target: Truncation { top_k: 1, ..Truncation::OFF },
///     draft: Truncation { top_k: 2, ..Truncation::OFF },
///     ..Sampling::plain(1.0)
/// };
/// let law = step_law_from_logits(Method::Asps, &target, &draft, &[2], &sampling).unwrap();
/// assert_eq!(law.prob(Outcome { accepted: 0, token: 0 }), 1.0);
/// // Without the target's top-k, token 2 is kept with probability p(2) / q(2) < 1.
/// let sampling = Sampling { target: Truncation::OFF, ..sampling };
/// let law = step_law_from_logits(Method::Asps, &target, &draft, &[2], &sampling).unwrap();
/// assert!(law.accept_all > 0.0 && law.accept_all < 1.0);
/// // A greedy drafter (draft temperature 0) proposes its argmax, token 2, with probability 1:
/// // it is kept with probability p(2).
/// let greedy_drafter = Sampling { draft_temperature: Some(0.0), ..Sampling::plain(1.0) };
/// let law = step_law_from_logits(Method::Asps, &target, &draft, &[2], &greedy_drafter).unwrap();
/// let p2 = 1.0 / (1.0 + 1f64.exp() + 2f64.exp());
/// assert!((law.accept_all - p2).abs() < 1e-12);
/// ```
pub fn step_law_from_logits<T: Logit>(
    method: Method,
    target: &[impl AsRef<[T]>],
    draft: &[impl AsRef<[T]>],
    tokens: &[u32],
    sampling: &Sampling,
) -> Result<StepLaw> {
    Ok(
        match SampledStep::new(method, target, draft, tokens, sampling)? {
            SampledStep::Greedy { outcome, vocab } => point_mass(outcome, tokens.len(), vocab),
            SampledStep::Sampling(step) => step.law(method),
        },
    )
}
