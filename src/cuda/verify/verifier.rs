//! [`Verifier`]: the loaded verification kernels, their workspace, and the launch sequence.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg, sys};

use super::args::{RawTruncationArgs, RawVerifyArgs};
use super::form::{ResidualForm, model_form};
use super::params::VerifyParams;
use super::split::{part_capacity, split_rows};
use super::workspace::Workspace;
use crate::cuda::Gpu;
use crate::cuda::launch_config::{MAX_DRAFT, VERIFY_THREADS};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::method::Method;

/// Verifies batches of speculative drafts on one GPU. Made once, with room for up to
/// `max_batch` requests of up to `max_draft` draft tokens; every call reuses its workspace, so
/// a call allocates nothing and never synchronises the stream.
///
/// # One caller at a time
///
/// A call queues two kernels that pass their results to each other through the workspace, so
/// two calls on one verifier must neither interleave their launches (A1 B1 A2 ...: B1 overwrites
/// what A2 reads) nor run at the same time on the device. Both entry points therefore take
/// `&mut self`: a verifier shared between threads (`&Verifier`, `Arc<Verifier>`) cannot verify,
/// so the compiler refuses interleaved calls. Give each concurrent caller its own verifier, or
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
    /// The decide launch's form, if the caller fixed it; else the model's ([`model_form`]).
    form: Option<ResidualForm>,
    workspace: Workspace,
    rows: [CudaFunction; 3],
    truncate: [CudaFunction; 3],
    decide: [CudaFunction; 3],
}

fn dtype_index(dtype: Dtype) -> usize {
    match dtype {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::BF16 => 2,
    }
}

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
        let f = |name: String| gpu.function(&name);
        let per_dtype = |stem: &str| -> Result<[CudaFunction; 3]> {
            Ok([
                f(format!("asps_verify_{stem}_f32"))?,
                f(format!("asps_verify_{stem}_f16"))?,
                f(format!("asps_verify_{stem}_bf16"))?,
            ])
        };
        Ok(Verifier {
            gpu: gpu.clone(),
            stream: stream.clone(),
            max_batch,
            max_draft,
            sms,
            workspace: Workspace::new(stream, entries, parts)?,
            form: None,
            rows: per_dtype("rows")?,
            truncate: per_dtype("truncate")?,
            decide: per_dtype("decide")?,
        })
    }

    /// Fixes the form of the decide launch for later calls ([`ResidualForm`]), or with `None`
    /// leaves it to the performance model (the default: lazy from a batch of as many requests as
    /// the device has SMs, parallel below). The outcomes do not depend on it (except on float
    /// near-ties), only what the call reads and how many blocks read it.
    pub fn set_residual_form(&mut self, form: Option<ResidualForm>) {
        self.form = form;
    }

    /// The form a call of `batch` requests takes.
    pub fn residual_form(&self, batch: usize) -> ResidualForm {
        self.form.unwrap_or_else(|| model_form(self.sms, batch))
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

    /// Checks `args` against this verifier: [`RawVerifyArgs::check`] and the capacity.
    pub fn check(&self, args: &RawVerifyArgs) -> Result<()> {
        args.check()?;
        self.check_capacity(args)
    }

    /// Whether the call fits this verifier's workspace.
    pub(crate) fn check_capacity(&self, args: &RawVerifyArgs) -> Result<()> {
        if args.batch > self.max_batch || args.max_draft > self.max_draft {
            return Err(Error::Capacity(format!(
                "a call of {} requests of up to {} draft tokens; this verifier holds {} of {}",
                args.batch, args.max_draft, self.max_batch, self.max_draft
            )));
        }
        Ok(())
    }

    /// Verifies a batch given by raw device pointers, on a stream owned by someone else
    /// (another runtime, a C++ engine). Checks `args` first (see [`Verifier::check`]) and
    /// launches nothing on an error.
    ///
    /// Takes `&mut self` because the call's launches use the verifier's workspace (see
    /// [`Verifier`]): a shared verifier cannot verify.
    ///
    /// ```compile_fail
    /// # use asps::cuda::{RawVerifyArgs, Verifier};
    /// fn from_a_shared_reference(verifier: &Verifier, args: &RawVerifyArgs) {
    ///     // error[E0596]: cannot borrow `*verifier` as mutable, behind a `&` reference
    ///     let _ = unsafe { verifier.verify_raw(args, std::ptr::null_mut()) };
    /// }
    /// ```
    ///
    /// (The same call through `&mut Verifier` compiles:)
    ///
    /// ```no_run
    /// # use asps::cuda::{RawVerifyArgs, Verifier};
    /// fn from_an_exclusive_reference(verifier: &mut Verifier, args: &RawVerifyArgs) {
    ///     let _ = unsafe { verifier.verify_raw(args, std::ptr::null_mut()) };
    /// }
    /// ```
    ///
    /// # Safety
    ///
    /// * Every pointer in `args` is a device address in this verifier's context (or one that
    ///   context can access), valid for the extent its shape gives (see [`RawVerifyArgs`]), and
    ///   stays valid until the work queued on `stream` has finished.
    /// * The output buffers and `offsets` are not read or written by anything else until then,
    ///   and do not overlap each other or the inputs.
    /// * `stream` is a valid stream of this verifier's context (null means the legacy default
    ///   stream) and outlives the queued work.
    /// * The work of earlier calls on this verifier is ordered before the work queued now:
    ///   queued on the same `stream`, finished, or waited for (an event recorded after it and
    ///   waited on by `stream`). Calls on different streams would otherwise run at the same
    ///   time on the workspace.
    pub unsafe fn verify_raw(&mut self, args: &RawVerifyArgs, stream: sys::CUstream) -> Result<()> {
        // SAFETY: the caller's contract, with no truncation arrays.
        unsafe { self.verify_raw_truncated(args, &RawTruncationArgs::OFF, stream) }
    }

    /// [`Verifier::verify_raw`] with per-request truncation ([`RawTruncationArgs`]: top-k,
    /// top-p and min-p for the target's rows and for the draft's). With every array null it is
    /// `verify_raw`; otherwise the call queues one more kernel, whose blocks find each truncating
    /// row's kept set (at most 10 passes over the row; rows of requests that do not truncate
    /// cost nothing but the block's start).
    ///
    /// # Safety
    ///
    /// As [`Verifier::verify_raw`]; and every non-null array of `truncation` holds `batch`
    /// elements, valid until the queued work has finished.
    pub unsafe fn verify_raw_truncated(
        &mut self,
        args: &RawVerifyArgs,
        truncation: &RawTruncationArgs,
        stream: sys::CUstream,
    ) -> Result<()> {
        self.check(args)?;
        truncation.check()?;
        // SAFETY: the caller guarantees `stream` is null, a special handle or a live stream.
        unsafe { self.check_foreign_stream(stream) }?;
        // SAFETY: the caller guarantees `stream` is a live stream of this context; the wrapper
        // does not destroy it when dropped.
        let stream = unsafe { self.gpu.context().wrap_borrowed_stream(stream) };
        // SAFETY: the caller's guarantees on `args` and `truncation` are what `launch` requires.
        unsafe { self.launch(args, truncation, &stream) }
    }

    /// Checks that a borrowed stream belongs to this verifier's context. The special handles
    /// (null and `CU_STREAM_LEGACY` for the legacy stream, `CU_STREAM_PER_THREAD`) name the
    /// context current at launch, which the launch makes this one.
    ///
    /// # Safety
    ///
    /// `stream` is one of the special handles or a live stream.
    unsafe fn check_foreign_stream(&self, stream: sys::CUstream) -> Result<()> {
        if (stream as usize) <= 2 {
            return Ok(());
        }
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: a live stream (the caller's contract); the driver writes one handle.
        let rc = unsafe { sys::cuStreamGetCtx(stream, &mut ctx) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(Error::Cuda(format!(
                "cuStreamGetCtx on the caller's stream: {rc:?}"
            )));
        }
        if ctx != self.gpu.context().cu_ctx() {
            return Err(Error::InvalidArgument(
                "the stream belongs to another CUDA context than the verifier".into(),
            ));
        }
        Ok(())
    }

    /// Queues the kernels (two, three with truncation), which share the workspace (hence
    /// `&mut self`: the launches of one call are never interleaved with another call's).
    ///
    /// # Safety
    ///
    /// `args` passed [`Verifier::check`], `truncation` [`RawTruncationArgs::check`], and their
    /// pointers satisfy [`Verifier::verify_raw_truncated`]'s contract on `stream`.
    pub(crate) unsafe fn launch(
        &mut self,
        args: &RawVerifyArgs,
        truncation: &RawTruncationArgs,
        stream: &Arc<CudaStream>,
    ) -> Result<()> {
        let mut params = VerifyParams {
            target: args.target,
            target_batch_stride: args.target_batch_stride as i64,
            target_row_stride: args.target_row_stride as i64,
            draft: args.draft,
            draft_batch_stride: args.draft_batch_stride as i64,
            draft_row_stride: args.draft_row_stride as i64,
            draft_tokens: args.draft_tokens,
            draft_lens: args.draft_lens,
            temperatures: args.temperatures,
            seeds: args.seeds,
            offsets: args.offsets,
            out_tokens: args.out_tokens,
            out_num_emitted: args.out_num_emitted,
            out_num_accepted: args.out_num_accepted,
            out_status: args.out_status,
            t_top_k: truncation.target_top_k,
            t_top_p: truncation.target_top_p,
            t_min_p: truncation.target_min_p,
            d_top_k: truncation.draft_top_k,
            d_top_p: truncation.draft_top_p,
            d_min_p: truncation.draft_min_p,
            batch: args.batch as i32,
            max_draft: args.max_draft as i32,
            vocab: args.vocab as i32,
            method: match args.method {
                Method::Asps => 0,
                Method::Sps => 1,
                Method::Greedy => 2,
            },
            ..VerifyParams::default()
        };
        let (b, n) = (args.batch, args.max_draft);
        let (split, chunk) = split_rows(self.sms, b, n, args.vocab);
        // Grids in blocks; each fits a u32 and the part cells fit the workspace (split_rows
        // keeps B (n + 1) split <= B (n + 1) + 2 SMs, and B (2n + 1) <= i32::MAX was checked).
        let grid = |cells: usize| {
            u32::try_from(cells).map_err(|_| Error::TooLarge(format!("a launch of {cells} blocks")))
        };
        let form = self.residual_form(b);
        let rows_grid = grid(b * (2 * n + 1) * split)?;
        let decide_grid = match form {
            ResidualForm::Parallel => grid(b * (n + 1) * split)?,
            ResidualForm::Lazy => grid(b)?,
        };
        if b * (n + 1) * split > self.workspace.part_cells() {
            return Err(Error::Capacity(format!(
                "{split} parts per row of {b} x {} rows pass the workspace's {} part cells",
                n + 1,
                self.workspace.part_cells()
            )));
        }
        params.split = split as i32;
        params.chunk = chunk as i32;
        params.form = form.code();
        self.workspace.fill(&mut params);
        let d = dtype_index(args.dtype);
        let blocks = |count: u32| LaunchConfig {
            grid_dim: (count, 1, 1),
            block_dim: (VERIFY_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // One block per logits row, whole rows, when any request may truncate.
        let truncate_grid = grid(b * (2 * n + 1))?;
        let steps = [
            Some((&self.rows[d], blocks(rows_grid))),
            (!truncation.is_off()).then(|| (&self.truncate[d], blocks(truncate_grid))),
            Some((&self.decide[d], blocks(decide_grid))),
        ];
        for (func, cfg) in steps.into_iter().flatten() {
            let mut launch = stream.launch_builder(func);
            launch.arg(&params);
            // SAFETY: every kernel takes one VerifyParams by value (kernels/verify.cuh), whose
            // layout `params` mirrors. The kernels read and write only inside the extents that
            // `check` bounded and the caller vouched for, and inside the workspace, which holds
            // max_batch * (max_draft + 1) >= B * (n + 1) row cells and (checked above)
            // B * (n + 1) * split part cells.
            unsafe { launch.launch(cfg) }?;
        }
        Ok(())
    }
}
