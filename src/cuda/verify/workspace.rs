//! Device scratch space of the verification kernels, allocated once per [`super::Verifier`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::params::VerifyParams;
use crate::error::Result;

/// Per-row intermediate results, each `max_batch * (max_draft + 1)` entries.
#[derive(Debug)]
pub(crate) struct Workspace {
    t_max: CudaSlice<f32>,
    t_log_norm: CudaSlice<f32>,
    t_gather: CudaSlice<f32>,
    t_arg: CudaSlice<i32>,
    t_status: CudaSlice<i32>,
    d_max: CudaSlice<f32>,
    d_log_norm: CudaSlice<f32>,
    d_gather: CudaSlice<f32>,
    d_status: CudaSlice<i32>,
    log_t: CudaSlice<f32>,
    race_key: CudaSlice<f32>,
    race_token: CudaSlice<i32>,
}

impl Workspace {
    pub(crate) fn new(stream: &Arc<CudaStream>, entries: usize) -> Result<Self> {
        Ok(Workspace {
            t_max: stream.alloc_zeros(entries)?,
            t_log_norm: stream.alloc_zeros(entries)?,
            t_gather: stream.alloc_zeros(entries)?,
            t_arg: stream.alloc_zeros(entries)?,
            t_status: stream.alloc_zeros(entries)?,
            d_max: stream.alloc_zeros(entries)?,
            d_log_norm: stream.alloc_zeros(entries)?,
            d_gather: stream.alloc_zeros(entries)?,
            d_status: stream.alloc_zeros(entries)?,
            log_t: stream.alloc_zeros(entries)?,
            race_key: stream.alloc_zeros(entries)?,
            race_token: stream.alloc_zeros(entries)?,
        })
    }

    /// Writes the workspace's device addresses into `params`. The kernels run on `stream`
    /// after this returns; the workspace is used by this verifier alone.
    pub(crate) fn fill(&self, stream: &CudaStream, params: &mut VerifyParams) {
        fn addr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
            s.device_ptr(stream).0
        }
        params.ws_t_max = addr(&self.t_max, stream);
        params.ws_t_log_norm = addr(&self.t_log_norm, stream);
        params.ws_t_gather = addr(&self.t_gather, stream);
        params.ws_t_arg = addr(&self.t_arg, stream);
        params.ws_t_status = addr(&self.t_status, stream);
        params.ws_d_max = addr(&self.d_max, stream);
        params.ws_d_log_norm = addr(&self.d_log_norm, stream);
        params.ws_d_gather = addr(&self.d_gather, stream);
        params.ws_d_status = addr(&self.d_status, stream);
        params.ws_log_t = addr(&self.log_t, stream);
        params.ws_race_key = addr(&self.race_key, stream);
        params.ws_race_token = addr(&self.race_token, stream);
    }
}
