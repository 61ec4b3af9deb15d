//! # asps: speculative-decoding verification on the GPU, exact
//!
//! An inference engine drafts `n` tokens with a small model, scores them with the large model in
//! one pass, and hands this crate both models' logits. The crate decides which draft tokens to
//! keep and samples the next token, so that the output is distributed exactly as the large model
//! alone would have sampled it. Two rules are offered ([`Method`]): Accelerated Speculative
//! Sampling (ASpS, Hu & Huang, ICML 2024), which couples draft and target over whole
//! continuations and accepts more tokens for n >= 2, and token-wise speculative sampling (SpS);
//! plus greedy verification for temperature 0.
//!
//! * [`reference`](mod@reference): the CPU reference in f64: softmax, residuals, the exact law of a step, and
//!   samplers that draw exactly as the kernels do.
//! * [`rng`]: Philox4x32-10 and the layout of its counters.
//! * [`cuda`]: the kernels, compiled by build.rs into one embedded fatbin and loaded with cudarc:
//!   batched verification ([`cuda::Verifier`]), softmax, residuals.
//! * [`capi`]: the C ABI of include/asps.h, for C and C++ engines.
//!
//! The design, the math and the randomness scheme are described in docs/design.md.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod capi;
pub mod cuda;
mod dtype;
mod error;
mod method;
pub mod reference;
pub mod rng;

pub use dtype::{Dtype, Logit};
pub use error::{Error, Model, Result, RowProblem};
pub use method::{Method, Outcome};
pub use rng::NoiseKey;

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
