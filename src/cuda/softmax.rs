//! Launcher of the standalone softmax kernel (kernels/softmax.cu): logits to probabilities or
//! log-probabilities.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, PushKernelArg};

use super::launch_config::SOFTMAX_THREADS;
use super::module::Gpu;
use super::softmax_stats::{RowsShape, inverse_temperature};
use crate::dtype::Logit;
use crate::error::Result;

/// What [`Gpu::softmax`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxOutput {
    /// `softmax(logits / T)`.
    Probs,
    /// `ln softmax(logits / T)` (-inf for masked tokens).
    LogProbs,
}

impl Gpu {
    /// Writes `softmax(logits / temperature)` (or its log) of each row into `out`, packed
    /// `[rows, vocab]` f32, and each row's status code ([`crate::cuda::RowStatus`]) into
    /// `status`; a bad row (NaN, +inf, all -inf) is written as NaN. No synchronisation.
    ///
    /// Errors, before launching: a shape that does not fit `logits`, `out` or `status`; a
    /// temperature that is not finite and > 0; a stream of another context.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax<T: Logit + DeviceRepr>(
        &self,
        stream: &Arc<CudaStream>,
        logits: &impl DevicePtr<T>,
        shape: RowsShape,
        temperature: f32,
        output: SoftmaxOutput,
        out: &mut impl DevicePtrMut<f32>,
        status: &mut impl DevicePtrMut<i32>,
    ) -> Result<()> {
        self.check_stream(stream)?;
        shape.check(logits.len())?;
        let inv_temperature = inverse_temperature(temperature)?;
        shape.check_packed_outputs(out.len(), status.len(), "statuses")?;
        let func = self.function(&format!("asps_softmax_{}", T::DTYPE.kernel_suffix()))?;
        let (src, _g1) = logits.device_ptr(stream);
        let (dst, _g2) = out.device_ptr_mut(stream);
        let (st, _g3) = status.device_ptr_mut(stream);
        let (row_stride, rows, vocab) = (
            shape.row_stride as i64,
            shape.rows as i32,
            shape.vocab as i32,
        );
        let out_row_stride = shape.vocab as i64;
        let log_space = i32::from(output == SoftmaxOutput::LogProbs);
        let cfg = shape.one_block_per_row(SOFTMAX_THREADS);
        let mut launch = stream.launch_builder(&func);
        launch
            .arg(&src)
            .arg(&row_stride)
            .arg(&rows)
            .arg(&vocab)
            .arg(&inv_temperature)
            .arg(&log_space)
            .arg(&dst)
            .arg(&out_row_stride)
            .arg(&st);
        // SAFETY: matches asps_softmax_* (kernels/softmax.cu). Reads rows inside `logits` (shape
        // checked), writes rows * vocab floats to `out` and rows ints to `status` (lengths checked).
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }
}
