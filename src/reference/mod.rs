//! The CPU reference: f64, simple, and the oracle that every kernel is checked against.
//!
//! * [`softmax`], [`log_softmax`], [`row_stats`]: softmax with temperature over one row.
//! * [`residual`], [`residual_mass`], [`normalized_residual`]: `max(0, s p - q)`.
//! * [`PreparedStep`]: one request's step, checked, with the ASpS scan of DESIGN.md.
//! * [`Truncation`], [`kept_tokens`], [`truncated_softmax`]: top-k, top-p and min-p over a row;
//!   [`Sampling`] (a request's temperature and both models' truncation) for
//!   [`step_law_from_logits`] and [`verify_logits_sampled`].
//! * [`step_law`] / [`PreparedStep::law`]: the exact law of a step ([`StepLaw`]), and from it
//!   the expected number of emitted tokens.
//! * [`verify_logits`], [`verify_probs`], [`PreparedStep::sample`]: one step drawn with Philox
//!   noise keyed as the kernels key it ([`crate::rng`]).

mod law;
mod residual;
mod sample;
mod softmax;
mod step;
mod truncate;
mod verify;

pub use law::{StepLaw, step_law, step_law_from_logits};
pub use residual::{normalized_residual, residual, residual_mass};
pub use softmax::{RowStats, argmax, log_softmax, row_stats, softmax};
pub use step::{NORMALISATION_TOLERANCE, PreparedStep};
#[doc(hidden)]
pub use truncate::threshold_near_tie;
pub use truncate::{Sampling, Truncation, kept_tokens, truncated_softmax};
pub use verify::{verify_logits, verify_logits_sampled, verify_probs};
