//! The CUDA front: the embedded kernels, loaded with cudarc, and their checked launchers.
//!
//! * [`Gpu`]: a CUDA context with the kernels loaded. [`Gpu::new`] returns an error, never a
//!   panic, when the crate was built without kernels or the machine has no driver or device.
//! * [`Verifier`]: batched ASpS / SpS / greedy verification (safe and raw fronts; the raw one
//!   takes the C ABI's [`AspsVerifyArgs`](crate::capi::AspsVerifyArgs)).
//! * [`TreeVerifier`]: batched verification of draft trees (Traversal Verification, RRS,
//!   greedy; safe and raw fronts, the raw one takes [`AspsTreeVerifyArgs`](crate::capi::AspsTreeVerifyArgs)).
//! * [`Gpu::softmax_stats`]: the fused softmax statistics of a batch of rows.
//! * [`Gpu::softmax`]: logits to probabilities or log-probabilities.
//! * [`Gpu::normalized_residual`]: `max(0, s p - q)` normalised, from probabilities.
//!
//! Every launcher checks its arguments on the host before launching and never synchronises
//! the stream; results are read back by the caller when it needs them.

mod call_args;
mod launch_config;
mod module;
mod residual;
mod softmax;
mod softmax_stats;
mod status;
#[cfg(feature = "testing")]
mod test_kernels;
mod tree;
mod verify;

pub use module::{Gpu, driver_available, kernel_archs, kernels_available};
pub use softmax::SoftmaxOutput;
pub use softmax_stats::{RowsShape, SoftmaxStats};
pub use status::{RequestStatus, RowStatus};
pub use tree::{
    TREE_MAX_NODES, TREE_VERIFY_ARGS_MIN_SIZE, TreeInputs, TreeOutputs, TreeShape, TreeVerifier,
    VerifiedTree,
};
pub use verify::{
    BatchLogits, CallShape, ResidualForm, SamplingInputs, TruncationInputs, VERIFY_ARGS_MAX_SIZE,
    VERIFY_ARGS_MIN_SIZE, VerifiedRequest, Verifier, VerifyInputs, VerifyOutputs,
};
/// Hooks for this crate's own tests and benches (the `testing` feature; not a stable API): the
/// test and bench kernels, the verification launch plan and the kernels' parameters.
#[cfg(feature = "testing")]
pub mod testing {
    pub use super::test_kernels::TestKernels;
    pub use super::tree::testing::*;
    pub use super::verify::testing::*;
}

/// The largest vocabulary (V, entries per row) any kernel accepts: 2^30. Every entry point that
/// takes V refuses more with [`Error::TooLarge`](crate::Error::TooLarge) before launching: the
/// verification fronts ([`AspsVerifyArgs::check`](crate::capi::AspsVerifyArgs::check)), the
/// standalone launchers ([`RowsShape`]) and the C ABI (`ASPS_MAX_VOCAB`, `ASPS_ERR_TOO_LARGE`).
///
/// Why: the kernels walk a row with 32-bit counters, `for (int v = threadIdx.x; v < V; v +=
/// blockDim.x)`, whose last value is below `V + blockDim.x`. With V up to `i32::MAX` that sum
/// overflows, which is undefined behaviour in CUDA C++; with V <= 2^30 and at most 1024 threads
/// per block it stays below 2^31. (The largest vocabularies in use are near 2^18.)
pub const MAX_VOCAB: usize = 1 << 30;

// CUDA allows at most 1024 threads per block (build.rs also holds kernels/launch_config.h to
// that), so no row loop counter reaches 2^31.
const _: () = assert!(MAX_VOCAB + 1024 <= i32::MAX as usize);
