//! Batched verification on the GPU: ASpS, SpS and greedy over f32, f16 or bf16 logits.
//!
//! * [`Verifier::verify`]: the safe front (cudarc buffers, lengths checked).
//! * [`Verifier::verify_raw`]: the raw front (an [`AspsVerifyArgs`] of device pointers, a
//!   borrowed stream), which the C ABI's `asps_verify` also calls.
//! * [`AspsVerifyArgs::check`]: the host-side checks every front runs before launching.
//!
//! A call queues one or two kernels (one in the fused form of the smallest calls, two
//! otherwise; kernels/verify.cu) on one stream, as the
//! call's launch plan says (plan.rs), allocates nothing and never synchronises, so it can be
//! captured in a CUDA graph; each request's offset is advanced on the device, so graph replays
//! draw fresh noise.
//!
//! [`AspsVerifyArgs`]: crate::capi::AspsVerifyArgs
//! [`AspsVerifyArgs::check`]: crate::capi::AspsVerifyArgs::check

mod args;
mod form;
#[rustfmt::skip]
mod params;
mod plan;
mod safe;
mod split;
mod verifier;
mod workspace;

pub use args::{CallShape, VERIFY_ARGS_MAX_SIZE, VERIFY_ARGS_MIN_SIZE};
pub use form::ResidualForm;
pub use safe::{
    BatchLogits, SamplingInputs, TruncationInputs, VerifiedRequest, VerifyInputs, VerifyOutputs,
};
pub(crate) use safe::{input, need, sampling_args};
pub use verifier::Verifier;
pub(crate) use verifier::{borrow_stream, launch_one};

/// The launch plan and the kernels' parameters, for this crate's kernel emulator tests, which
/// run the plan's launches on the CPU (the `testing` feature; not a stable API).
#[cfg(feature = "testing")]
pub mod testing {
    pub use super::params::{AspsVerifyLayout, AspsVerifyParams, AspsVerifyWorkspace};
    pub use super::plan::{Launch, LaunchPlan, PlanOptions, VerifyKernel, plan};
    pub use super::workspace::{Cells, Elem, build_workspace};
}
