//! The CUDA front: the embedded kernels, loaded with cudarc, and their checked launchers.
//!
//! * [`Gpu`]: a CUDA context with the kernels loaded. [`Gpu::new`] returns an error, never a
//!   panic, when the crate was built without kernels or the machine has no driver or device.
//! * [`Verifier`]: batched ASpS / SpS / greedy verification (safe and raw fronts).
//! * [`Gpu::softmax_stats`]: the fused softmax statistics of a batch of rows.
//! * [`Gpu::softmax`]: logits to probabilities or log-probabilities.
//! * [`Gpu::normalized_residual`]: `max(0, s p - q)` normalised, from probabilities.
//!
//! Every launcher checks its arguments on the host before launching and never synchronises
//! the stream; results are read back by the caller when it needs them.

mod bench;
mod module;
mod philox;
mod residual;
mod softmax;
mod softmax_stats;
mod status;
mod verify;

pub use module::{Gpu, driver_available, kernel_archs, kernels_available};
pub use softmax::SoftmaxOutput;
pub use softmax_stats::{RowsShape, SoftmaxStats};
pub use status::{RequestStatus, RowStatus};
#[doc(hidden)]
pub use verify::VerifyParams;
pub use verify::{
    BatchLogits, RawVerifyArgs, VerifiedRequest, Verifier, VerifyInputs, VerifyOutputs,
};
