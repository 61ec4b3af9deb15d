//! The CUDA front: the embedded kernels, loaded with cudarc, and their checked launchers.
//!
//! * [`Gpu`]: a CUDA context with the kernels loaded. [`Gpu::new`] returns an error, never a
//!   panic, when the crate was built without kernels or the machine has no driver or device.
//! * [`Gpu::softmax_stats`]: the fused softmax statistics of a batch of rows.
//!
//! Every launcher checks its arguments on the host before launching and never synchronises
//! the stream; results are read back by the caller when it needs them.

mod module;
mod philox;
mod softmax_stats;
mod status;

pub use module::{Gpu, driver_available, kernel_archs, kernels_available};
pub use softmax_stats::{RowsShape, SoftmaxStats};
pub use status::RowStatus;
