//! The CPU reference: f64, simple, and the oracle that every kernel is checked against.
//!
//! * [`softmax`], [`log_softmax`], [`row_stats`]: softmax with temperature over one row.
//! * [`residual`], [`residual_mass`], [`normalized_residual`]: `max(0, s p - q)`.
//! * [`Sampling`]: how a request samples, per model (temperature and [`Truncation`]: top-k,
//!   top-p, min-p), with the domain of each parameter ([`temperature_is_valid`]).
//! * [`PreparedStep`]: one request's step, checked, with the ASpS scan of docs/design.md.
//! * [`kept_tokens`], [`truncated_softmax`]: one row's truncation.
//! * [`step_law`] / [`PreparedStep::law`]: the exact law of a step ([`StepLaw`]), and from it
//!   the expected number of emitted tokens.
//! * [`tree_law`], [`tree_law_from_logits`]: the exact law of one step over a draft [`Tree`]
//!   (RRS and Traversal Verification, greedy; the kernels verify them all, kernels/tree.cu),
//!   and [`tree_sample`], [`tree_sample_from_logits`]: one step drawn with the tree kernels'
//!   noise.
//! * [`verify_logits`], [`verify_probs`], [`PreparedStep::sample`]: one step drawn with Philox
//!   noise keyed as the kernels key it ([`crate::rng`]).

mod greedy;
mod law;
mod request;
mod residual;
mod sample;
mod sampling;
mod softmax;
mod step;
mod tree;
mod tree_sample;
mod truncate;
mod verify;

pub use law::{StepLaw, step_law, step_law_from_logits};
pub use residual::{normalized_residual, residual, residual_mass};
pub use sampling::{MAX_TEMPERATURE, MIN_TEMPERATURE, Sampling, Truncation, temperature_is_valid};
pub use softmax::{RowStats, argmax, log_softmax, row_stats, softmax};
pub use step::{NORMALISATION_TOLERANCE, PreparedStep};
pub use tree::{SiblingLaw, Tree, TreeLaw, TreeOutcome, TreeRule, tree_law, tree_law_from_logits};
pub use tree_sample::{tree_sample, tree_sample_from_logits};
pub use truncate::{kept_tokens, truncated_softmax};
#[cfg(feature = "testing")]
pub use truncate::{moved_thresholds, threshold_near_tie};
pub use verify::{verify_logits, verify_logits_sampled, verify_probs};
