//! Verification in asps's kernels on candle's CUDA tensors (feature `cuda`): the logits stay
//! where candle's forward pass wrote them; asps reads them through the same cudarc types,
//! on candle's stream, with no copy and no raw pointers.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use asps::cuda::{
    BatchLogits, Gpu, RequestStatus, SamplingInputs, TruncationInputs, Verifier, VerifyInputs,
    VerifyOutputs,
};
use asps::reference::{Sampling, Truncation};
use asps::{Method, NoiseKey, Outcome};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, CudaView};
use candle_core::{Device, Storage, Tensor};

/// The longest draft this verifier takes.
pub const MAX_DRAFT: usize = 16;

/// One request's verification on the device that holds candle's logits. A step the kernels
/// refuse is an error naming the status (the session rolls back; the caller decides). With
/// top-p or min-p, the host's f64 draft sampler and the kernels' f32 kept set may disagree on a
/// token at a threshold's float near-tie, which the kernels refuse as an impossible draft
/// token (asps's `TruncationInputs`). The drafter's own temperature, when the request has one,
/// goes to the kernels too.
pub struct GpuVerify {
    stream: Arc<CudaStream>,
    verifier: Verifier,
    outputs: VerifyOutputs,
}

impl GpuVerify {
    /// A verifier on `device` (candle's CUDA device), working on candle's stream.
    pub fn new(device: &Device) -> Result<Self> {
        let Device::Cuda(cuda) = device else {
            bail!("GpuVerify needs candle's CUDA device, not {device:?}");
        };
        let stream = cuda.cuda_stream();
        let gpu = Gpu::from_context(stream.context().clone())?;
        let verifier = Verifier::new(&gpu, &stream, 1, MAX_DRAFT)?;
        let outputs = VerifyOutputs::new(&stream, 1, MAX_DRAFT)?;
        Ok(GpuVerify {
            stream,
            verifier,
            outputs,
        })
    }

    /// A one-element device array.
    fn one<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
        &self,
        value: T,
    ) -> Result<CudaSlice<T>> {
        Ok(self.stream.clone_htod(&[value])?)
    }
}

/// The f32 elements of a contiguous candle CUDA tensor, as a view of its buffer.
fn device_view<'a>(storage: &'a Storage, tensor: &Tensor) -> Result<CudaView<'a, f32>> {
    let Storage::Cuda(cuda) = storage else {
        bail!("the logits are not on a CUDA device");
    };
    let layout = tensor.layout();
    if !layout.is_contiguous() {
        bail!("the logits must be contiguous rows");
    }
    let slice = cuda.as_cuda_slice::<f32>()?;
    let start = layout.start_offset();
    Ok(slice.slice(start..start + tensor.elem_count()))
}

/// One model's truncation as device arrays (`None` where a parameter is off).
struct DeviceTruncation {
    top_k: Option<CudaSlice<i32>>,
    top_p: Option<CudaSlice<f32>>,
    min_p: Option<CudaSlice<f32>>,
}

impl DeviceTruncation {
    fn new(v: &GpuVerify, t: &Truncation) -> Result<Self> {
        Ok(DeviceTruncation {
            top_k: (t.top_k != 0).then(|| v.one(t.top_k)).transpose()?,
            top_p: (t.top_p != 1.0).then(|| v.one(t.top_p)).transpose()?,
            min_p: (t.min_p != 0.0).then(|| v.one(t.min_p)).transpose()?,
        })
    }

    fn inputs(&self) -> TruncationInputs<'_> {
        TruncationInputs {
            top_k: self.top_k.as_ref().map(|s| s.as_view()),
            top_p: self.top_p.as_ref().map(|s| s.as_view()),
            min_p: self.min_p.as_ref().map(|s| s.as_view()),
        }
    }
}

impl crate::speculative::Verify for GpuVerify {
    fn verify(
        &mut self,
        method: Method,
        target: &Tensor,
        draft: &Tensor,
        tokens: &[u32],
        sampling: &Sampling,
        key: NoiseKey,
    ) -> Result<Outcome> {
        let n = tokens.len();
        if n > MAX_DRAFT {
            bail!("drafts of {n} tokens; this verifier takes at most {MAX_DRAFT}");
        }
        let vocab = target.dim(1)?;
        if target.dims() != [n + 1, vocab] || draft.dims() != [n, vocab] {
            bail!(
                "logits of shapes {:?} and {:?} for {n} draft tokens",
                target.dims(),
                draft.dims()
            );
        }
        let target = target.contiguous()?;
        let draft = draft.contiguous()?;
        let (target_storage, _) = target.storage_and_layout();
        let (draft_storage, _) = draft.storage_and_layout();
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        // The request's small arrays; the offset is the step's, as the CPU reference keys it
        // (the kernels then advance it by one, which the next call overwrites).
        let draft_tokens = self.stream.clone_htod(&ids)?;
        let draft_lens = self.one(n as i32)?;
        let temperature = self.one(sampling.temperature as f32)?;
        let draft_temperature = sampling
            .draft_temperature
            .map(|t| self.one(t as f32))
            .transpose()?;
        let seeds = self.one(key.seed)?;
        let mut offsets = self.one(key.offset)?;
        let target_trunc = DeviceTruncation::new(self, &sampling.target)?;
        let draft_trunc = DeviceTruncation::new(self, &sampling.draft)?;
        let inputs = VerifyInputs {
            method,
            batch: 1,
            max_draft: n,
            vocab,
            target: BatchLogits::packed(device_view(&target_storage, &target)?, n + 1, vocab),
            draft: BatchLogits::packed(device_view(&draft_storage, &draft)?, n, vocab),
            draft_tokens: draft_tokens.as_view(),
            draft_lens: draft_lens.as_view(),
            seeds: seeds.as_view(),
            sampling: SamplingInputs {
                temperature: temperature.as_view(),
                target: target_trunc.inputs(),
                draft: draft_trunc.inputs(),
                draft_temperature: draft_temperature.as_ref().map(|t| t.as_view()),
            },
        };
        self.verifier
            .verify(&inputs, &mut offsets, &mut self.outputs)?;
        let request = self
            .outputs
            .read(&self.stream)?
            .pop()
            .context("one request verified")?;
        if request.status != RequestStatus::Ok {
            bail!("asps refused the step: {}", request.status.describe());
        }
        let token = *request
            .tokens
            .last()
            .context("an Ok request emits a token")?;
        Ok(Outcome {
            accepted: request.accepted,
            token,
        })
    }
}
