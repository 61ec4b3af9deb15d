//! One request's step from logits as it samples ([`Sampling`]): greedy's outcome, or the step
//! of a sampling rule. The law (law.rs) and the samplers (verify.rs) both start here.

use super::greedy::greedy;
use super::sampling::Sampling;
use super::step::{PreparedStep, check_logit_rows};
use crate::dtype::Logit;
use crate::error::Result;
use crate::method::{Method, Outcome};

/// One request's step from logits as it samples: greedy's outcome (temperature 0 or
/// [`Method::Greedy`], on the raw logits, the draft's sampling and both truncations ignored),
/// or the prepared step of a sampling rule.
pub(crate) enum SampledStep {
    /// The greedy outcome over a vocabulary of `vocab` tokens.
    Greedy { outcome: Outcome, vocab: usize },
    /// The step of ASpS or SpS.
    Sampling(PreparedStep),
}

impl SampledStep {
    /// Checks the request ([`Sampling::check`]; for a sampling rule, in
    /// [`PreparedStep::from_sampling`]), then prepares the step.
    pub(crate) fn new<T: Logit>(
        method: Method,
        target: &[impl AsRef<[T]>],
        draft: &[impl AsRef<[T]>],
        tokens: &[u32],
        sampling: &Sampling,
    ) -> Result<Self> {
        if sampling.is_greedy() || method == Method::Greedy {
            sampling.check()?;
            let vocab = check_logit_rows(target, draft, tokens)?;
            let rows = target
                .iter()
                .map(|row| row.as_ref().iter().map(|x| x.to_f64()));
            let outcome = greedy(rows, tokens);
            return Ok(SampledStep::Greedy { outcome, vocab });
        }
        let step = PreparedStep::from_sampling(target, draft, tokens, sampling)?;
        Ok(SampledStep::Sampling(step))
    }
}
