//! Batched verification on the GPU: ASpS, SpS and greedy over f32, f16 or bf16 logits.
//!
//! * [`Verifier::verify`]: the safe front (cudarc buffers, lengths checked).
//! * [`Verifier::verify_raw`]: the raw front (`u64` device pointers, a borrowed stream).
//! * [`RawVerifyArgs::check`]: the host-side checks both run before launching.
//!
//! A call queues two kernels (kernels/verify.cu) on one stream, allocates nothing and never
//! synchronises, so it can be captured in a CUDA graph; each request's offset is advanced on
//! the device, so graph replays draw fresh noise.

mod args;
mod form;
mod params;
mod safe;
mod split;
mod verifier;
mod workspace;

pub use args::{RawTruncationArgs, RawVerifyArgs};
pub use form::ResidualForm;
#[doc(hidden)]
pub use params::VerifyParams;
pub use safe::{BatchLogits, TruncationInputs, VerifiedRequest, VerifyInputs, VerifyOutputs};
#[doc(hidden)]
pub use split::row_parts;
pub use verifier::Verifier;
