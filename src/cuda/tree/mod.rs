//! Batched verification of draft trees on the GPU (kernels/tree.cu; docs/design.md, "Draft
//! trees"): Traversal Verification, recursive rejection sampling and greedy over f32, f16 or
//! bf16 logits.
//!
//! * [`TreeVerifier::verify`]: the safe front (cudarc buffers, lengths checked).
//! * [`TreeVerifier::verify_raw`]: the raw front (an [`AspsTreeVerifyArgs`] of device
//!   pointers, a borrowed stream), which the C ABI's `asps_tree_verify` also calls.
//! * [`AspsTreeVerifyArgs::check`]: the host-side checks every front runs before launching.
//!
//! A call queues two kernels (rows, then decide) on one stream, allocates nothing and never
//! synchronises; each request's offset is advanced on the device.
//!
//! [`AspsTreeVerifyArgs`]: crate::capi::AspsTreeVerifyArgs
//! [`AspsTreeVerifyArgs::check`]: crate::capi::AspsTreeVerifyArgs::check

mod args;
#[rustfmt::skip]
mod params;
mod plan;
mod safe;
mod verifier;

pub use args::{TREE_MAX_NODES, TREE_VERIFY_ARGS_MIN_SIZE, TreeShape};
pub use safe::{TreeInputs, TreeOutputs, VerifiedTree};
pub use verifier::TreeVerifier;

/// The tree launch plan and the kernels' parameters, for this crate's kernel emulator tests
/// (the `testing` feature; not a stable API).
#[cfg(feature = "testing")]
pub mod testing {
    pub use super::params::{AspsTreeParams, AspsTreeWorkspace};
    pub use super::plan::{
        TREE_WORKSPACE_BUFFERS, TreeKernel, TreeLaunch, TreePlan, build_tree_workspace, tree_plan,
    };
}
