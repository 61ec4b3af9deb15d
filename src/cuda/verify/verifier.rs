//! [`Verifier`]: the loaded verification kernels, their workspace, and the launch sequence.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg, sys};

use super::args::CallShape;
use super::form::{ResidualForm, model_form};
use super::params::AspsVerifyParams;
use super::plan::{PlanOptions, VerifyKernel, plan};
use super::split::part_capacity;
use super::workspace::Workspace;
use crate::capi::bindings::AspsVerifyArgs;
use crate::cuda::Gpu;
use crate::cuda::launch_config::{MAX_DRAFT, VERIFY_THREADS};
use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// Verifies batches of speculative drafts on one GPU. Made once, with room for up to
/// `max_batch` requests of up to `max_draft` draft tokens; every call reuses its workspace, so
/// a call allocates nothing and never synchronises the stream.
///
/// # One caller at a time
///
/// A call queues one or two kernels that pass their results to each other through the
/// workspace, so two calls on one verifier must neither interleave their launches (A1 B1 A2
/// ...: B1 overwrites what A2 reads) nor run at the same time on the device. Both entry points
/// therefore take `&mut self`: a verifier shared between threads (`&Verifier`,
/// `Arc<Verifier>`) cannot verify, so the compiler refuses interleaved calls. Give each concurrent caller its own verifier, or
/// share one behind a `Mutex`. The safe entry point ([`Verifier::verify`]) always queues on the
/// verifier's own stream, so its calls are also ordered on the device; the raw entry point
/// takes any stream of the context, and its caller orders calls on different streams (see its
/// safety contract).
#[derive(Debug)]
pub struct Verifier {
    gpu: Gpu,
    stream: Arc<CudaStream>,
    max_batch: usize,
    max_draft: usize,
    /// The device's SM count, which sizes the row split of small batches and picks the form.
    sms: usize,
    /// The decide step's form, if the caller fixed it; else the model's ([`model_form`]).
    form: Option<ResidualForm>,
    workspace: Workspace,
    /// The kernels of [`VerifyKernel::ALL`], per dtype of [`Dtype::ALL`].
    kernels: [[CudaFunction; 3]; 4],
}

// SAFETY: AspsVerifyParams is a plain #[repr(C)] struct of integers and raw device pointers,
// laid out as kernels/verify_params.h says (bindgen's layout tests, src/cuda/verify/params.rs).
unsafe impl cudarc::driver::DeviceRepr for AspsVerifyParams {}

impl Verifier {
    /// A verifier for up to `max_batch` requests of up to `max_draft` draft tokens (at most
    /// 64: `MAX_DRAFT` of kernels/launch_config.h), working on `stream` (its workspace is
    /// allocated there).
    pub fn new(
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        max_batch: usize,
        max_draft: usize,
    ) -> Result<Self> {
        gpu.check_stream(stream)?;
        if max_batch == 0 || max_draft == 0 {
            return Err(Error::Shape(format!(
                "a verifier needs room for at least one request of one draft token \
                 (asked for {max_batch} requests of {max_draft})"
            )));
        }
        if max_draft > MAX_DRAFT as usize {
            return Err(Error::TooLarge(format!(
                "a verifier for drafts of {max_draft} tokens; the GPU kernels take at most {MAX_DRAFT}"
            )));
        }
        let sms = gpu
            .context()
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?
            .max(1) as usize;
        let entries = max_batch
            .checked_mul(max_draft + 1)
            .filter(|&e| e <= i32::MAX as usize)
            .ok_or_else(|| Error::TooLarge(format!("a workspace for {max_batch} x {max_draft}")))?;
        let parts = part_capacity(sms, max_batch, max_draft);
        if parts > i32::MAX as usize {
            return Err(Error::TooLarge(format!(
                "a workspace for {max_batch} x {max_draft}"
            )));
        }
        let kernel = |k: VerifyKernel| -> Result<[CudaFunction; 3]> {
            let [a, b, c] = Dtype::ALL.map(|d| gpu.function(&k.name(d)));
            Ok([a?, b?, c?])
        };
        let [rows, rows_truncating, decide, fused] = VerifyKernel::ALL.map(kernel);
        Ok(Verifier {
            gpu: gpu.clone(),
            stream: stream.clone(),
            max_batch,
            max_draft,
            sms,
            workspace: Workspace::new(stream, entries, parts)?,
            form: None,
            kernels: [rows?, rows_truncating?, decide?, fused?],
        })
    }

    /// Fixes the form of the decide step for later calls ([`ResidualForm`]), or with `None`
    /// leaves it to the performance model (the default: fused for greedy calls of at most one
    /// row per SM, lazy from a batch of as many requests as the device has
    /// SMs, parallel below). The outcomes do not depend on it (except on float
    /// near-ties), only what the call reads and how many blocks read it.
    pub fn set_residual_form(&mut self, form: Option<ResidualForm>) {
        self.form = form;
    }

    /// The form a call of `shape` (as [`Verifier::check`] gives it) takes.
    pub fn residual_form(&self, shape: &CallShape) -> ResidualForm {
        self.form.unwrap_or_else(|| model_form(self.sms, shape))
    }

    /// The most requests one call may hold.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The longest draft one call may hold.
    pub fn max_draft(&self) -> usize {
        self.max_draft
    }

    /// The stream the safe entry point queues work on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The GPU this verifier runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Checks `args` against this verifier: [`AspsVerifyArgs::check`] and the capacity.
    pub fn check(&self, args: &AspsVerifyArgs) -> Result<CallShape> {
        let shape = args.check()?;
        self.check_capacity(&shape)?;
        Ok(shape)
    }

    /// Whether a call of `shape` fits this verifier's workspace.
    pub(crate) fn check_capacity(&self, shape: &CallShape) -> Result<()> {
        if shape.batch > self.max_batch || shape.max_draft > self.max_draft {
            return Err(Error::Capacity(format!(
                "a call of {} requests of up to {} draft tokens; this verifier holds {} of {}",
                shape.batch, shape.max_draft, self.max_batch, self.max_draft
            )));
        }
        Ok(())
    }

    /// Verifies a batch described by raw device pointers ([`AspsVerifyArgs`], the C ABI's
    /// struct), on a stream owned by someone else (another runtime, a C++ engine). Checks
    /// `args` first (see [`Verifier::check`]) and launches nothing on an error.
    ///
    /// Takes `&mut self` because the call's launches use the verifier's workspace (see
    /// [`Verifier`]): a shared verifier cannot verify.
    ///
    /// ```compile_fail
    /// # use asps::capi::AspsVerifyArgs;
    /// # use asps::cuda::Verifier;
    /// fn from_a_shared_reference(verifier: &Verifier, args: &AspsVerifyArgs) {
    ///     // error[E0596]: cannot borrow `*verifier` as mutable, behind a `&` reference
    ///     let _ = unsafe { verifier.verify_raw(args, std::ptr::null_mut()) };
    /// }
    /// ```
    ///
    /// (The same call through `&mut Verifier` compiles:)
    ///
    /// ```no_run
    /// # use asps::capi::AspsVerifyArgs;
    /// # use asps::cuda::Verifier;
    /// fn from_an_exclusive_reference(verifier: &mut Verifier, args: &AspsVerifyArgs) {
    ///     let _ = unsafe { verifier.verify_raw(args, std::ptr::null_mut()) };
    /// }
    /// ```
    ///
    /// # Safety
    ///
    /// * Every non-null pointer in `args` is a device address in this verifier's context (or one
    ///   that context can access), valid for the extent its shape gives (include/asps.h), and
    ///   stays valid until the work queued on `stream` has finished.
    /// * The arrays the kernels write (`offsets`, `out_*`) are not read or written by anything
    ///   else until then. (That they overlap no array of the call is checked.)
    /// * `stream` is a valid stream of this verifier's context (null means the legacy default
    ///   stream) and outlives the queued work.
    /// * This verifier outlives the queued work too: its workspace, which the kernels use, is
    ///   freed on its own stream when it is dropped, not ordered after work on `stream`.
    /// * The work of earlier calls on this verifier is ordered before the work queued now:
    ///   queued on the same `stream`, finished, or waited for (an event recorded after it and
    ///   waited on by `stream`). Calls on different streams would otherwise run at the same
    ///   time on the workspace.
    pub unsafe fn verify_raw(
        &mut self,
        args: &AspsVerifyArgs,
        stream: sys::CUstream,
    ) -> Result<()> {
        let shape = self.check(args)?;
        // SAFETY: the caller guarantees `stream` is null, a special handle or a live stream
        // that outlives the queued work.
        let stream = unsafe { borrow_stream(&self.gpu, stream) }?;
        // SAFETY: the caller's guarantees on `args` are what `launch` requires.
        unsafe { self.launch(args, &shape, &stream) }
    }

    /// Queues the kernels of the call's plan (one for the fused form, else two), which share the
    /// workspace (hence `&mut self`: the launches of one call are never interleaved with
    /// another call's).
    ///
    /// # Safety
    ///
    /// `args` passed [`Verifier::check`], giving `shape`, and its pointers satisfy
    /// [`Verifier::verify_raw`]'s contract on `stream`.
    pub(crate) unsafe fn launch(
        &mut self,
        args: &AspsVerifyArgs,
        shape: &CallShape,
        stream: &Arc<CudaStream>,
    ) -> Result<()> {
        let options = PlanOptions {
            sms: self.sms,
            form: self.form,
            parts: None,
        };
        let mut plan = plan(args, shape, &options)?;
        let (row_cells, part_cells) = self.workspace.cells();
        if plan.row_cells > row_cells || plan.part_cells > part_cells {
            return Err(Error::Capacity(format!(
                "a call of {} row cells and {} part cells; the workspace holds {row_cells} and \
                 {part_cells}",
                plan.row_cells, plan.part_cells
            )));
        }
        plan.params.ws = self.workspace.pointers();
        let d = shape.dtype.index();
        for launch in plan.launches() {
            let func = &self.kernels[launch.kernel as usize][d];
            // SAFETY: every kernel takes one AspsVerifyParams by value (kernels/verify_params.h),
            // whose layout the generated mirror has. The kernels read and write only inside the
            // extents that `check` bounded and the caller vouched for, and inside the workspace,
            // which holds the plan's row and part cells (checked above).
            unsafe { launch_one(stream, func, launch.grid, &plan.params) }?;
        }
        Ok(())
    }
}

/// A caller's stream, checked to belong to `gpu`'s context, wrapped without taking ownership
/// (the wrapper does not destroy it when dropped). The special handles (null and
/// `CU_STREAM_LEGACY` for the legacy stream, `CU_STREAM_PER_THREAD`) name the context current
/// at launch, which the launch makes `gpu`'s.
///
/// # Safety
///
/// `stream` is one of the special handles or a live stream, which outlives the work queued on
/// the wrapper.
pub(crate) unsafe fn borrow_stream(gpu: &Gpu, stream: sys::CUstream) -> Result<Arc<CudaStream>> {
    if (stream as usize) > 2 {
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: a live stream (the caller's contract); the driver writes one handle.
        let rc = unsafe { sys::cuStreamGetCtx(stream, &mut ctx) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(Error::Cuda(format!(
                "cuStreamGetCtx on the caller's stream: {rc:?}"
            )));
        }
        if ctx != gpu.context().cu_ctx() {
            return Err(Error::InvalidArgument(
                "the stream belongs to another CUDA context than the verifier".into(),
            ));
        }
    }
    // SAFETY: a live stream of this context or a special handle (the caller's contract).
    Ok(unsafe { gpu.context().wrap_borrowed_stream(stream) })
}

/// Queues `func` over `grid` blocks of `VERIFY_THREADS` threads, `params` its one parameter.
///
/// # Safety
///
/// `func` takes one `P` by value, laid out as `P` is; the kernel, given `params`, touches only
/// memory that stays valid until the work queued on `stream` has finished.
pub(crate) unsafe fn launch_one<P: DeviceRepr>(
    stream: &Arc<CudaStream>,
    func: &CudaFunction,
    grid: u32,
    params: &P,
) -> Result<()> {
    let cfg = LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (VERIFY_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = stream.launch_builder(func);
    builder.arg(params);
    // SAFETY: the caller's contract.
    unsafe { builder.launch(cfg) }?;
    Ok(())
}
