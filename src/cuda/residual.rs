//! Launcher of the standalone normalised-residual kernel (kernels/residual.cu).

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, PushKernelArg};

use super::launch_config::RESIDUAL_THREADS;
use super::module::Gpu;
use super::softmax_stats::RowsShape;
use crate::error::{Error, Result};

impl Gpu {
    /// For each row of probabilities `p` and `q` (f32, the same shape), writes
    /// `max(0, scale * p - q) / R` into `out` (packed `[rows, vocab]`) and the mass `R` into
    /// `mass`; a row with `R = 0` is written as zeros, a row holding a NaN as NaN (its mass too:
    /// the kernel checks nothing, and hides nothing). No synchronisation.
    ///
    /// Errors, before launching: a shape that does not fit the buffers, a scale that is
    /// negative or not finite, a stream of another context.
    #[allow(clippy::too_many_arguments)]
    pub fn normalized_residual(
        &self,
        stream: &Arc<CudaStream>,
        p: &impl DevicePtr<f32>,
        q: &impl DevicePtr<f32>,
        shape: RowsShape,
        scale: f32,
        out: &mut impl DevicePtrMut<f32>,
        mass: &mut impl DevicePtrMut<f32>,
    ) -> Result<()> {
        self.check_stream(stream)?;
        shape.check(p.len())?;
        shape.check(q.len())?;
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(Error::Shape(format!(
                "the residual scale must be finite and >= 0, got {scale}"
            )));
        }
        shape.check_packed_outputs(out.len(), mass.len(), "masses")?;
        let func = self.function("asps_normalized_residual")?;
        let (pp, _g1) = p.device_ptr(stream);
        let (qp, _g2) = q.device_ptr(stream);
        let (dst, _g3) = out.device_ptr_mut(stream);
        let (mp, _g4) = mass.device_ptr_mut(stream);
        let (row_stride, rows, vocab) = (
            shape.row_stride as i64,
            shape.rows as i32,
            shape.vocab as i32,
        );
        let out_row_stride = shape.vocab as i64;
        let cfg = shape.one_block_per_row(RESIDUAL_THREADS);
        let mut launch = stream.launch_builder(&func);
        launch
            .arg(&pp)
            .arg(&qp)
            .arg(&row_stride)
            .arg(&rows)
            .arg(&vocab)
            .arg(&scale)
            .arg(&dst)
            .arg(&out_row_stride)
            .arg(&mp);
        // SAFETY: matches asps_normalized_residual (kernels/residual.cu). Reads rows inside `p`
        // and `q` (shape checked against both), writes rows * vocab floats and rows masses
        // (lengths checked).
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }
}
