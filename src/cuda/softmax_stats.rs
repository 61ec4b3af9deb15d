//! Launcher of the fused softmax statistics kernel (kernels/softmax_stats.cu).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use super::MAX_VOCAB;
use super::launch_config::SOFTMAX_STATS_THREADS;
use super::module::Gpu;
use super::status::RowStatus;
use crate::dtype::Logit;
use crate::error::{Error, Result, RowProblem};
use crate::reference::RowStats;

/// A batch of rows in one buffer: `rows` rows of `vocab` entries, row `i` starting at element
/// `i * row_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsShape {
    /// Number of rows.
    pub rows: usize,
    /// Entries per row (the vocabulary size), at most [`MAX_VOCAB`].
    pub vocab: usize,
    /// Elements between the starts of consecutive rows (>= vocab).
    pub row_stride: usize,
}

impl RowsShape {
    /// `rows` packed rows of `vocab` entries.
    pub fn contiguous(rows: usize, vocab: usize) -> Self {
        RowsShape {
            rows,
            vocab,
            row_stride: vocab,
        }
    }

    /// Checks the shape against a buffer of `len` elements: rows in 1..=i32::MAX, vocab in
    /// 1..=[`MAX_VOCAB`], stride >= vocab, and the last row inside the buffer (in checked
    /// 64-bit arithmetic).
    pub(crate) fn check(&self, len: usize) -> Result<()> {
        let limit = i32::MAX as usize;
        if self.rows == 0 || self.vocab == 0 {
            return Err(Error::Shape(format!(
                "{} rows of {} entries: both must be at least 1",
                self.rows, self.vocab
            )));
        }
        if self.vocab > MAX_VOCAB {
            return Err(Error::TooLarge(format!(
                "rows of {} entries pass the largest vocabulary the kernels take, MAX_VOCAB = \
                 {MAX_VOCAB} (2^30: their 32-bit row loop counters must not wrap)",
                self.vocab
            )));
        }
        if self.rows > limit {
            return Err(Error::TooLarge(format!(
                "{} rows: at most {limit}",
                self.rows
            )));
        }
        if self.row_stride < self.vocab {
            return Err(Error::Shape(format!(
                "row stride {} is smaller than the row length {}",
                self.row_stride, self.vocab
            )));
        }
        let end = (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|x| x.checked_add(self.vocab))
            .filter(|&end| end <= i64::MAX as usize)
            .ok_or_else(|| Error::TooLarge(format!("{self:?} overflows 64-bit indexing")))?;
        if end > len {
            return Err(Error::Shape(format!(
                "{self:?} needs {end} elements but the buffer holds {len}"
            )));
        }
        Ok(())
    }
}

impl RowsShape {
    /// Checks output buffers for a kernel that writes packed `[rows, vocab]` values plus one
    /// value per row (`per_row_what`).
    pub(crate) fn check_packed_outputs(
        &self,
        out_len: usize,
        per_row_len: usize,
        per_row_what: &str,
    ) -> Result<()> {
        let cells = self.rows * self.vocab; // `check` bounded rows by i32::MAX, vocab by 2^30
        if out_len < cells || per_row_len < self.rows {
            return Err(Error::Shape(format!(
                "{} rows of {} need {cells} outputs and {} {per_row_what}; got {out_len} and {per_row_len}",
                self.rows, self.vocab, self.rows
            )));
        }
        Ok(())
    }

    /// One block of `threads` threads per row.
    pub(crate) fn one_block_per_row(&self, threads: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.rows as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// `1 / temperature`, for a temperature other than 0 that the one rule takes
/// ([`crate::reference::temperature_is_valid`], which the verification kernels apply too): its
/// inverse is then a finite normal float.
pub(crate) fn inverse_temperature(temperature: f32) -> Result<f32> {
    if temperature != 0.0 && crate::reference::temperature_is_valid(f64::from(temperature)) {
        Ok(1.0 / temperature)
    } else {
        Err(Error::BadTemperature(f64::from(temperature)))
    }
}

/// Device outputs of [`Gpu::softmax_stats`], one entry per row: made once, reused across calls.
#[derive(Debug)]
pub struct SoftmaxStats {
    max: CudaSlice<f32>,
    log_norm: CudaSlice<f32>,
    status: CudaSlice<i32>,
    rows: usize,
}

impl SoftmaxStats {
    /// Room for up to `capacity` rows, allocated on `stream`.
    pub fn new(stream: &Arc<CudaStream>, capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::Shape(
                "a SoftmaxStats needs room for at least 1 row".into(),
            ));
        }
        Ok(SoftmaxStats {
            max: stream.alloc_zeros(capacity)?,
            log_norm: stream.alloc_zeros(capacity)?,
            status: stream.alloc_zeros(capacity)?,
            rows: 0,
        })
    }

    /// How many rows fit.
    pub fn capacity(&self) -> usize {
        self.max.len()
    }

    /// The largest logit of each row of the last call (NaN for a bad row), on the device.
    pub fn max(&self) -> &CudaSlice<f32> {
        &self.max
    }

    /// `ln sum_v exp((x_v - max) / T)` of each row of the last call (NaN for a bad row).
    pub fn log_norm(&self) -> &CudaSlice<f32> {
        &self.log_norm
    }

    /// The status code of each row of the last call (see [`RowStatus::from_code`]).
    pub fn status(&self) -> &CudaSlice<i32> {
        &self.status
    }

    /// Copies the last call's results to the host (this synchronises `stream`): per row, its
    /// statistics or what is wrong with it.
    pub fn read(
        &self,
        stream: &Arc<CudaStream>,
    ) -> Result<Vec<std::result::Result<RowStats, RowProblem>>> {
        let max = stream.clone_dtoh(&self.max.slice(..self.rows))?;
        let log_norm = stream.clone_dtoh(&self.log_norm.slice(..self.rows))?;
        let status = stream.clone_dtoh(&self.status.slice(..self.rows))?;
        Ok((0..self.rows)
            .map(|i| match RowStatus::from_code(status[i]).problem() {
                Some(problem) => Err(problem),
                None => Ok(RowStats {
                    max: f64::from(max[i]),
                    log_norm: f64::from(log_norm[i]),
                }),
            })
            .collect())
    }
}

impl Gpu {
    /// For each row of `logits`, its largest logit and `ln sum_v exp((x_v - max) / temperature)`,
    /// written to `out` on `stream` without synchronising. Rows holding NaN or +inf, or entirely
    /// -inf, get a status code instead ([`SoftmaxStats::read`] reports them).
    ///
    /// Errors, before anything is launched: a shape that does not fit `logits` or `out`, a
    /// temperature that is not finite and > 0, a stream of another context.
    pub fn softmax_stats<T: Logit + DeviceRepr>(
        &self,
        stream: &Arc<CudaStream>,
        logits: &impl DevicePtr<T>,
        shape: RowsShape,
        temperature: f32,
        out: &mut SoftmaxStats,
    ) -> Result<()> {
        self.check_stream(stream)?;
        shape.check(logits.len())?;
        let inv_temperature = inverse_temperature(temperature)?;
        if shape.rows > out.capacity() {
            return Err(Error::Shape(format!(
                "{} rows but the output holds {}",
                shape.rows,
                out.capacity()
            )));
        }
        let func = self.function(&format!("asps_softmax_stats_{}", T::DTYPE.kernel_suffix()))?;
        let (ptr, _sync) = logits.device_ptr(stream);
        let row_stride = shape.row_stride as i64;
        let rows = shape.rows as i32;
        let vocab = shape.vocab as i32;
        let cfg = shape.one_block_per_row(SOFTMAX_STATS_THREADS);
        let mut launch = stream.launch_builder(&func);
        launch
            .arg(&ptr)
            .arg(&row_stride)
            .arg(&rows)
            .arg(&vocab)
            .arg(&inv_temperature)
            .arg(&mut out.max)
            .arg(&mut out.log_norm)
            .arg(&mut out.status);
        // SAFETY: the argument list matches asps_softmax_stats_* in kernels/softmax_stats.cu;
        // the kernel reads rows [0, rows) of `vocab` elements at `row_stride`, which
        // `shape.check` placed inside `logits`, and writes entries [0, rows) of the three
        // outputs, which hold `out.capacity() >= rows` entries.
        unsafe { launch.launch(cfg) }?;
        out.rows = shape.rows;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_capped_at_max_vocab() {
        // The launchers check the shape first: a buffer exactly one row long passes at
        // MAX_VOCAB, and one entry more is refused whatever the buffer.
        RowsShape::contiguous(1, MAX_VOCAB)
            .check(MAX_VOCAB)
            .unwrap();
        let e = RowsShape::contiguous(1, MAX_VOCAB + 1)
            .check(usize::MAX)
            .unwrap_err();
        assert!(
            matches!(&e, Error::TooLarge(msg) if msg.contains("MAX_VOCAB = 1073741824")),
            "{e:?}"
        );
        let e = RowsShape::contiguous(1, i32::MAX as usize)
            .check(usize::MAX)
            .unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
    }
}
