//! The safe front: cudarc buffers in, cudarc buffers out, every length checked.

use std::sync::Arc;

use cudarc::driver::{
    CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut, DeviceRepr, SyncOnDrop,
};

use super::args::{RawTruncationArgs, RawVerifyArgs, extent};
use super::verifier::Verifier;
use crate::cuda::RequestStatus;
use crate::dtype::Logit;
use crate::error::{Error, Result};
use crate::method::Method;

/// Logits of a batch in one device buffer: request `b`'s row `r` starts at element
/// `b * batch_stride + r * row_stride`.
#[derive(Debug)]
pub struct BatchLogits<'a, T> {
    /// The buffer (a whole `CudaSlice` as `slice.as_view()`, or any view into one).
    pub data: CudaView<'a, T>,
    /// Elements between requests.
    pub batch_stride: usize,
    /// Elements between rows (>= V).
    pub row_stride: usize,
}

impl<'a, T> BatchLogits<'a, T> {
    /// Packed `[B, rows_per_request, vocab]` logits.
    pub fn packed(data: CudaView<'a, T>, rows_per_request: usize, vocab: usize) -> Self {
        BatchLogits {
            data,
            batch_stride: rows_per_request * vocab,
            row_stride: vocab,
        }
    }
}

/// The inputs of one verification call.
#[derive(Debug)]
pub struct VerifyInputs<'a, T> {
    /// B, the number of requests.
    pub batch: usize,
    /// n, the padded draft length.
    pub max_draft: usize,
    /// V, the vocabulary size.
    pub vocab: usize,
    /// Target logits `[B, n + 1, V]`.
    pub target: BatchLogits<'a, T>,
    /// Draft logits `[B, n, V]`.
    pub draft: BatchLogits<'a, T>,
    /// Draft tokens `[B, n]`, packed.
    pub draft_tokens: CudaView<'a, i32>,
    /// Draft length of each request, n_b in 1..=n; rows past n_b are not read.
    pub draft_lens: CudaView<'a, i32>,
    /// Temperature of each request; 0 verifies greedily whatever the method.
    pub temperatures: CudaView<'a, f32>,
    /// Seed of each request.
    pub seeds: CudaView<'a, u64>,
}

/// Per-request truncation of a call ([`Verifier::verify_truncated`]; DESIGN.md, "Sampling
/// parameters"): `[B]` device arrays of the target's and the draft's top-k, top-p and min-p.
/// `None` leaves that parameter off for every request (top-k 0, top-p 1, min-p 0); the values
/// are checked per request by the kernels ([`RequestStatus::BadTruncation`]), greedy requests
/// included, which otherwise ignore truncation. A draft token must lie in the kept set of its
/// draft row as the kernels compute it; where the engine's sampler and the kernels disagree on
/// a threshold by float rounding (a near-tie of top-p or min-p), a token at that edge is
/// refused as [`RequestStatus::ImpossibleDraftToken`].
#[derive(Debug, Default)]
pub struct TruncationInputs<'a> {
    /// The target's top-k per request (0 = off).
    pub target_top_k: Option<CudaView<'a, i32>>,
    /// The target's top-p per request (1 = off).
    pub target_top_p: Option<CudaView<'a, f32>>,
    /// The target's min-p per request (0 = off).
    pub target_min_p: Option<CudaView<'a, f32>>,
    /// The draft's top-k per request: the truncation the draft tokens were drawn under.
    pub draft_top_k: Option<CudaView<'a, i32>>,
    /// The draft's top-p per request.
    pub draft_top_p: Option<CudaView<'a, f32>>,
    /// The draft's min-p per request.
    pub draft_min_p: Option<CudaView<'a, f32>>,
}

/// Device outputs of verification calls: made once, reused.
#[derive(Debug)]
pub struct VerifyOutputs {
    tokens: CudaSlice<i32>,
    num_emitted: CudaSlice<i32>,
    num_accepted: CudaSlice<i32>,
    status: CudaSlice<i32>,
    /// (B, n) of the last call.
    last: Option<(usize, usize)>,
}

/// One request's result, read back to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// Whether the request was verified, or what was wrong with it.
    pub status: RequestStatus,
    /// Draft tokens kept (0 unless the status is Ok).
    pub accepted: usize,
    /// The emitted tokens: the kept draft prefix, then one more (empty unless Ok).
    pub tokens: Vec<u32>,
}

impl VerifyOutputs {
    /// Room for `max_batch` requests of up to `max_draft` draft tokens.
    pub fn new(stream: &Arc<CudaStream>, max_batch: usize, max_draft: usize) -> Result<Self> {
        let cells = max_batch
            .checked_mul(max_draft + 1)
            .filter(|&c| c > 0 && max_draft > 0)
            .ok_or_else(|| Error::Shape(format!("outputs for {max_batch} x {max_draft}")))?;
        Ok(VerifyOutputs {
            tokens: stream.alloc_zeros(cells)?,
            num_emitted: stream.alloc_zeros(max_batch)?,
            num_accepted: stream.alloc_zeros(max_batch)?,
            status: stream.alloc_zeros(max_batch)?,
            last: None,
        })
    }

    /// Emitted tokens of the last call, `[B, n + 1]` packed, padded with -1.
    pub fn tokens(&self) -> &CudaSlice<i32> {
        &self.tokens
    }

    /// Tokens emitted per request (0 for a request whose status is not Ok).
    pub fn num_emitted(&self) -> &CudaSlice<i32> {
        &self.num_emitted
    }

    /// Draft tokens kept per request.
    pub fn num_accepted(&self) -> &CudaSlice<i32> {
        &self.num_accepted
    }

    /// Per-request status codes ([`RequestStatus::from_code`]).
    pub fn status(&self) -> &CudaSlice<i32> {
        &self.status
    }

    /// Copies the last call's results to the host (this synchronises `stream`).
    pub fn read(&self, stream: &Arc<CudaStream>) -> Result<Vec<VerifiedRequest>> {
        let (b, n) = self.last.ok_or_else(|| {
            Error::InvalidArgument("no verification was run into these outputs".into())
        })?;
        let tokens = stream.clone_dtoh(&self.tokens.slice(..b * (n + 1)))?;
        let accepted = stream.clone_dtoh(&self.num_accepted.slice(..b))?;
        let emitted = stream.clone_dtoh(&self.num_emitted.slice(..b))?;
        let status = stream.clone_dtoh(&self.status.slice(..b))?;
        Ok((0..b)
            .map(|i| {
                let count = emitted[i].clamp(0, n as i32 + 1) as usize;
                VerifiedRequest {
                    status: RequestStatus::from_code(status[i]),
                    accepted: accepted[i].max(0) as usize,
                    tokens: tokens[i * (n + 1)..i * (n + 1) + count]
                        .iter()
                        .map(|&t| t as u32)
                        .collect(),
                }
            })
            .collect())
    }
}

/// The device address of an optional array and its guard (`None`: no array).
fn optional_ptr<'a, T>(
    view: &'a Option<CudaView<'_, T>>,
    stream: &'a Arc<CudaStream>,
) -> Option<(u64, SyncOnDrop<'a>)> {
    view.as_ref().map(|v| v.device_ptr(stream))
}

fn need(what: &str, have: usize, want: usize) -> Result<()> {
    if have < want {
        return Err(Error::Shape(format!(
            "`{what}` holds {have} elements but the call reads or writes {want}"
        )));
    }
    Ok(())
}

impl Verifier {
    /// Verifies a batch on the verifier's stream, without synchronising: reads `inputs`,
    /// advances each request's entry of `offsets` by one, and writes `outputs`. Requests whose
    /// temperature is 0 are verified greedily; the others by `method`.
    ///
    /// Takes `&mut self`: the call's two launches pass results through the verifier's
    /// workspace, so calls must not interleave (see [`Verifier`]); a verifier shared between
    /// threads cannot verify.
    ///
    /// ```compile_fail
    /// # use asps::cuda::{Verifier, VerifyInputs, VerifyOutputs};
    /// # use cudarc::driver::CudaSlice;
    /// fn from_a_shared_reference(
    ///     verifier: &Verifier,
    ///     inputs: &VerifyInputs<'_, f32>,
    ///     offsets: &mut CudaSlice<u64>,
    ///     out: &mut VerifyOutputs,
    /// ) {
    ///     // error[E0596]: cannot borrow `*verifier` as mutable, behind a `&` reference
    ///     let _ = verifier.verify(asps::Method::Asps, inputs, offsets, out);
    /// }
    /// ```
    ///
    /// To capture calls in a CUDA graph, capture on a stream other than the legacy default
    /// stream; when cudarc tracks events across several streams of the context, disable that
    /// (`CudaContext::disable_event_tracking`) or use [`Verifier::verify_raw`], since a capture
    /// may not wait on events recorded outside it.
    ///
    /// Errors, before anything is launched: buffers too short for the shapes, shapes the
    /// kernels cannot index, more requests or draft tokens than the verifier or the outputs
    /// hold. Problems in the values on the device (NaN logits, token ids out of range, bad
    /// draft lengths or temperatures) are reported per request by [`VerifyOutputs::read`].
    ///
    /// ```no_run
    /// use asps::cuda::{BatchLogits, Gpu, Verifier, VerifyInputs, VerifyOutputs};
    /// use asps::Method;
    /// # fn main() -> asps::Result<()> {
    /// let gpu = Gpu::new(0)?;
    /// let stream = gpu.context().default_stream();
    /// let (b, n, v) = (2, 4, 32000);
    /// // In an engine these come from the models; here, zeros (uniform distributions).
    /// let target = stream.alloc_zeros::<half::bf16>(b * (n + 1) * v)?;
    /// let draft = stream.alloc_zeros::<half::bf16>(b * n * v)?;
    /// let tokens = stream.clone_htod(&[1i32, 2, 3, 4, 5, 6, 7, 8])?;
    /// let lens = stream.clone_htod(&[4i32, 2])?;
    /// let temps = stream.clone_htod(&[1.0f32, 0.0])?; // request 1 is greedy
    /// let seeds = stream.clone_htod(&[7u64, 8])?;
    /// let mut offsets = stream.alloc_zeros::<u64>(b)?;
    ///
    /// let mut verifier = Verifier::new(&gpu, &stream, 64, 8)?; // once
    /// let mut out = VerifyOutputs::new(&stream, 64, 8)?; // once
    /// let inputs = VerifyInputs {
    ///     batch: b, max_draft: n, vocab: v,
    ///     target: BatchLogits::packed(target.as_view(), n + 1, v),
    ///     draft: BatchLogits::packed(draft.as_view(), n, v),
    ///     draft_tokens: tokens.as_view(), draft_lens: lens.as_view(),
    ///     temperatures: temps.as_view(), seeds: seeds.as_view(),
    /// };
    /// verifier.verify(Method::Asps, &inputs, &mut offsets, &mut out)?;
    /// for request in out.read(&stream)? {
    ///     println!("{:?}: emit {:?}", request.status, request.tokens);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn verify<T: Logit + DeviceRepr>(
        &mut self,
        method: Method,
        inputs: &VerifyInputs<'_, T>,
        offsets: &mut impl DevicePtrMut<u64>,
        outputs: &mut VerifyOutputs,
    ) -> Result<()> {
        let off = TruncationInputs::default();
        self.verify_truncated(method, inputs, &off, offsets, outputs)
    }

    /// [`Verifier::verify`] with per-request truncation ([`TruncationInputs`]): each request's
    /// target rows are truncated by its target parameters, its draft rows by its draft
    /// parameters (the distribution its draft tokens were drawn from), and the call verifies
    /// against the truncated rows, exactly (the law of DESIGN.md with p and q truncated). A
    /// draft token outside its own draft row's kept set is reported as
    /// [`RequestStatus::ImpossibleDraftToken`]. With every array `None` this is `verify`;
    /// otherwise the call queues one more kernel (at most 10 passes over each truncating
    /// row). Errors as `verify`, and for an array shorter than the batch.
    pub fn verify_truncated<T: Logit + DeviceRepr>(
        &mut self,
        method: Method,
        inputs: &VerifyInputs<'_, T>,
        truncation: &TruncationInputs<'_>,
        offsets: &mut impl DevicePtrMut<u64>,
        outputs: &mut VerifyOutputs,
    ) -> Result<()> {
        let stream = self.stream().clone();
        let (b, n, v) = (inputs.batch, inputs.max_draft, inputs.vocab);
        // Shapes first, so that the extents below are computed on valid sizes; the pointers
        // are filled in once the lengths are known to cover those extents.
        let mut args = RawVerifyArgs {
            method,
            dtype: T::DTYPE,
            batch: b,
            max_draft: n,
            vocab: v,
            target: 0,
            target_batch_stride: inputs.target.batch_stride,
            target_row_stride: inputs.target.row_stride,
            draft: 0,
            draft_batch_stride: inputs.draft.batch_stride,
            draft_row_stride: inputs.draft.row_stride,
            draft_tokens: 0,
            draft_lens: 0,
            temperatures: 0,
            seeds: 0,
            offsets: 0,
            out_tokens: 0,
            out_num_emitted: 0,
            out_num_accepted: 0,
            out_status: 0,
        };
        args.check_shape()?;
        self.check_capacity(&args)?;
        let t_extent = extent(
            b,
            n + 1,
            v,
            args.target_batch_stride,
            args.target_row_stride,
        )
        .expect("checked above");
        let d_extent =
            extent(b, n, v, args.draft_batch_stride, args.draft_row_stride).expect("checked above");
        need("target.data", inputs.target.data.len(), t_extent)?;
        need("draft.data", inputs.draft.data.len(), d_extent)?;
        need("draft_tokens", inputs.draft_tokens.len(), b * n)?;
        need("draft_lens", inputs.draft_lens.len(), b)?;
        need("temperatures", inputs.temperatures.len(), b)?;
        need("seeds", inputs.seeds.len(), b)?;
        need("offsets", offsets.len(), b)?;
        let t = truncation;
        for (what, len) in [
            ("target_top_k", t.target_top_k.as_ref().map(CudaView::len)),
            ("target_top_p", t.target_top_p.as_ref().map(CudaView::len)),
            ("target_min_p", t.target_min_p.as_ref().map(CudaView::len)),
            ("draft_top_k", t.draft_top_k.as_ref().map(CudaView::len)),
            ("draft_top_p", t.draft_top_p.as_ref().map(CudaView::len)),
            ("draft_min_p", t.draft_min_p.as_ref().map(CudaView::len)),
        ] {
            if let Some(len) = len {
                need(what, len, b)?;
            }
        }
        if outputs.status.len() < b || outputs.tokens.len() < b * (n + 1) {
            return Err(Error::Capacity(format!(
                "outputs hold {} requests of {} tokens; the call needs {b} of {}",
                outputs.status.len(),
                outputs.tokens.len() / outputs.status.len().max(1),
                n + 1
            )));
        }

        let (target, _g1) = inputs.target.data.device_ptr(&stream);
        let (draft, _g2) = inputs.draft.data.device_ptr(&stream);
        let (tokens, _g3) = inputs.draft_tokens.device_ptr(&stream);
        let (lens, _g4) = inputs.draft_lens.device_ptr(&stream);
        let (temps, _g5) = inputs.temperatures.device_ptr(&stream);
        let (seeds, _g6) = inputs.seeds.device_ptr(&stream);
        let (offs, _g7) = offsets.device_ptr_mut(&stream);
        let (out_tokens, _g8) = outputs.tokens.device_ptr_mut(&stream);
        let (out_emitted, _g9) = outputs.num_emitted.device_ptr_mut(&stream);
        let (out_accepted, _g10) = outputs.num_accepted.device_ptr_mut(&stream);
        let (out_status, _g11) = outputs.status.device_ptr_mut(&stream);
        args.target = target;
        args.draft = draft;
        args.draft_tokens = tokens;
        args.draft_lens = lens;
        args.temperatures = temps;
        args.seeds = seeds;
        args.offsets = offs;
        args.out_tokens = out_tokens;
        args.out_num_emitted = out_emitted;
        args.out_num_accepted = out_accepted;
        args.out_status = out_status;
        self.check(&args)?;
        let (tk, tp, tm) = (
            optional_ptr(&t.target_top_k, &stream),
            optional_ptr(&t.target_top_p, &stream),
            optional_ptr(&t.target_min_p, &stream),
        );
        let (dk, dp, dm) = (
            optional_ptr(&t.draft_top_k, &stream),
            optional_ptr(&t.draft_top_p, &stream),
            optional_ptr(&t.draft_min_p, &stream),
        );
        let addr = |p: &Option<(u64, _)>| p.as_ref().map_or(0, |(a, _)| *a);
        let raw_truncation = RawTruncationArgs {
            target_top_k: addr(&tk),
            target_top_p: addr(&tp),
            target_min_p: addr(&tm),
            draft_top_k: addr(&dk),
            draft_top_p: addr(&dp),
            draft_min_p: addr(&dm),
        };
        raw_truncation.check()?;
        // SAFETY: every pointer comes from a live cudarc buffer of this context whose length
        // was checked against the extent the kernels touch; the buffers stay borrowed (inputs
        // shared, offsets and outputs exclusively) until this call returns, and the guards
        // order later uses on other streams after the queued kernels.
        unsafe { self.launch(&args, &raw_truncation, &stream) }?;
        outputs.last = Some((b, n));
        Ok(())
    }
}
