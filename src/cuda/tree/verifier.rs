//! [`TreeVerifier`]: the loaded tree kernels, their workspace, and the raw front.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, DevicePtr, sys};

use super::args::{TREE_MAX_NODES, TreeShape};
use super::params::{AspsTreeParams, AspsTreeWorkspace};
use super::plan::{TREE_WORKSPACE_BUFFERS, TreeKernel, build_tree_workspace, tree_plan};
use crate::capi::bindings::AspsTreeVerifyArgs;
use crate::cuda::Gpu;
use crate::cuda::verify::{borrow_stream, launch_one};
use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// Verifies batches of draft trees on one GPU (docs/design.md, "Draft trees"): Traversal
/// Verification or recursive rejection sampling for children drawn from draft rows, RRS's
/// scalar form for deterministic children, greedy at temperature 0. Made once, with room for
/// up to `max_batch` requests of up to `max_nodes` nodes; every call reuses its workspace, so a
/// call allocates nothing and never synchronises the stream (two launches, capturable in a
/// CUDA graph).
///
/// One caller at a time, exactly as a [`crate::cuda::Verifier`]: both entry points take
/// `&mut self`, since a call's two launches pass results through the workspace.
#[derive(Debug)]
pub struct TreeVerifier {
    gpu: Gpu,
    pub(super) stream: Arc<CudaStream>,
    max_batch: usize,
    max_nodes: usize,
    /// [`TREE_WORKSPACE_BUFFERS`] buffers of `max_batch * max_nodes` cells, end to end; kept
    /// only to own the memory.
    _buffer: CudaSlice<u32>,
    workspace: AspsTreeWorkspace,
    /// The kernels of [`TreeKernel::ALL`], per dtype of [`Dtype::ALL`].
    kernels: [[CudaFunction; 3]; 2],
}

// SAFETY: the workspace holds device addresses of the buffer this struct owns, never
// dereferenced on the host; moving them between threads is what cudarc does with its slices.
unsafe impl Send for TreeVerifier {}
// SAFETY: as above; `&TreeVerifier` gives out nothing that launches.
unsafe impl Sync for TreeVerifier {}

// SAFETY: AspsTreeParams is a plain #[repr(C)] struct of integers and raw device pointers, laid
// out as kernels/tree_params.h says (bindgen's layout tests, src/cuda/tree/params.rs).
unsafe impl cudarc::driver::DeviceRepr for AspsTreeParams {}

impl TreeVerifier {
    /// A tree verifier for up to `max_batch` requests of up to `max_nodes` nodes each (at most
    /// 64, `ASPS_TREE_MAX_NODES`), working on `stream` (its workspace is allocated there).
    pub fn new(
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        max_batch: usize,
        max_nodes: usize,
    ) -> Result<Self> {
        gpu.check_stream(stream)?;
        if max_batch == 0 || max_nodes == 0 {
            return Err(Error::Shape(format!(
                "a tree verifier needs room for at least one request of one node (asked for \
                 {max_batch} requests of {max_nodes})"
            )));
        }
        if max_nodes > TREE_MAX_NODES {
            return Err(Error::TooLarge(format!(
                "a tree verifier for trees of {max_nodes} nodes; the kernels take at most \
                 {TREE_MAX_NODES}"
            )));
        }
        let cells = max_batch
            .checked_mul(2 * max_nodes)
            .filter(|&c| c <= i32::MAX as usize)
            .map(|c| c / 2)
            .ok_or_else(|| {
                Error::TooLarge(format!("a tree workspace for {max_batch} x {max_nodes}"))
            })?;
        // SAFETY: device memory of plain 4-byte numbers that the host never reads; the kernels
        // read a cell only after the row launch of the same call wrote it (kernels/tree.cu).
        let buffer = unsafe { stream.alloc::<u32>(TREE_WORKSPACE_BUFFERS * cells) }?;
        let base = buffer.device_ptr(stream).0;
        stream.synchronize()?;
        let kernel = |k: TreeKernel| -> Result<[CudaFunction; 3]> {
            let [a, b, c] = Dtype::ALL.map(|d| gpu.function(&k.name(d)));
            Ok([a?, b?, c?])
        };
        let [rows, decide] = TreeKernel::ALL.map(kernel);
        Ok(TreeVerifier {
            gpu: gpu.clone(),
            stream: stream.clone(),
            max_batch,
            max_nodes,
            workspace: build_tree_workspace(base, cells),
            _buffer: buffer,
            kernels: [rows?, decide?],
        })
    }

    /// The most requests one call may hold.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The most node slots per request one call may hold.
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }

    /// The stream the safe entry point queues work on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Checks `args` against this verifier: [`AspsTreeVerifyArgs::check`] and the capacity.
    pub fn check(&self, args: &AspsTreeVerifyArgs) -> Result<TreeShape> {
        let shape = args.check()?;
        if shape.batch > self.max_batch || shape.max_nodes > self.max_nodes {
            return Err(Error::Capacity(format!(
                "a tree call of {} requests of {} node slots; this verifier holds {} of {}",
                shape.batch, shape.max_nodes, self.max_batch, self.max_nodes
            )));
        }
        Ok(shape)
    }

    /// Verifies a batch of trees described by raw device pointers ([`AspsTreeVerifyArgs`], the
    /// C ABI's struct), on a stream owned by someone else. Checks `args` first (see
    /// [`TreeVerifier::check`]) and launches nothing on an error.
    ///
    /// # Safety
    ///
    /// The contract of [`crate::cuda::Verifier::verify_raw`], for this verifier and the arrays
    /// of `args` (include/asps.h gives their extents).
    pub unsafe fn verify_raw(
        &mut self,
        args: &AspsTreeVerifyArgs,
        stream: sys::CUstream,
    ) -> Result<()> {
        let shape = self.check(args)?;
        // SAFETY: the caller guarantees `stream` is null, a special handle or a live stream
        // that outlives the queued work.
        let stream = unsafe { borrow_stream(&self.gpu, stream) }?;
        // SAFETY: the caller's guarantees on `args` are what `launch` requires.
        unsafe { self.launch(args, &shape, &stream) }
    }

    /// Queues the plan's two kernels, which share the workspace.
    ///
    /// # Safety
    ///
    /// `args` passed [`TreeVerifier::check`], giving `shape`, and its pointers satisfy
    /// [`TreeVerifier::verify_raw`]'s contract on `stream`.
    pub(super) unsafe fn launch(
        &mut self,
        args: &AspsTreeVerifyArgs,
        shape: &TreeShape,
        stream: &Arc<CudaStream>,
    ) -> Result<()> {
        let mut plan = tree_plan(args, shape);
        // The workspace's buffers are laid out for max_batch * max_nodes cells; a call indexes
        // cell b * max_nodes + u of its own max_nodes, within them (checked by `check`).
        plan.params.ws = self.workspace;
        let cells = self.max_batch * self.max_nodes;
        if plan.cells > cells {
            return Err(Error::Capacity(format!(
                "a tree call of {} cells; the workspace holds {cells}",
                plan.cells
            )));
        }
        let d = shape.dtype.index();
        for launch in plan.launches {
            let func = &self.kernels[launch.kernel as usize][d];
            // SAFETY: both kernels take one AspsTreeParams by value (kernels/tree_params.h),
            // whose layout the generated mirror has. They read and write only inside the
            // extents that `check` bounded and the caller vouched for, and inside the
            // workspace, which holds the plan's cells (checked above).
            unsafe { launch_one(stream, func, launch.grid, &plan.params) }?;
        }
        Ok(())
    }
}
