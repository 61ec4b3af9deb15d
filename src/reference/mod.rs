//! The CPU reference: f64, simple, and the oracle that every kernel is checked against.
//!
//! * [`softmax`], [`log_softmax`], [`row_stats`]: softmax with temperature over one row.
//! * [`residual`], [`residual_mass`], [`normalized_residual`]: `max(0, s p - q)`.
//! * [`PreparedStep`]: one request's step, checked, with the ASpS scan of DESIGN.md.
//! * [`step_law`] / [`PreparedStep::law`]: the exact law of a step ([`StepLaw`]), and from it
//!   the expected number of emitted tokens.
//! * [`verify_logits`], [`verify_probs`], [`PreparedStep::sample`]: one step drawn with Philox
//!   noise keyed as the kernels key it ([`crate::rng`]).

mod law;
mod residual;
mod sample;
mod softmax;
mod step;
mod verify;

pub use law::{StepLaw, step_law};
pub use residual::{normalized_residual, residual, residual_mass};
pub use softmax::{RowStats, argmax, log_softmax, row_stats, softmax};
pub use step::{NORMALISATION_TOLERANCE, PreparedStep};
pub use verify::{verify_logits, verify_probs};
