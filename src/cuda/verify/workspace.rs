//! Device scratch space of the verification kernels, allocated once per [`super::Verifier`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::params::VerifyParams;
use crate::error::Result;

/// Per-row intermediate results, each `max_batch * (max_draft + 1)` entries. The buffers are
/// owned here and never reallocated, so their device addresses are taken once, at creation:
/// a call then touches no cudarc event and stays capturable on any stream.
#[derive(Debug)]
pub(crate) struct Workspace {
    addrs: [u64; 12],
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
    /// Allocates and zeroes the buffers on `stream`, and waits for that to finish, so that the
    /// workspace can be used at once from any stream of the context.
    pub(crate) fn new(stream: &Arc<CudaStream>, entries: usize) -> Result<Self> {
        let mut ws = Workspace {
            addrs: [0; 12],
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
        };
        fn addr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
            s.device_ptr(stream).0
        }
        ws.addrs = [
            addr(&ws.t_max, stream),
            addr(&ws.t_log_norm, stream),
            addr(&ws.t_gather, stream),
            addr(&ws.t_arg, stream),
            addr(&ws.t_status, stream),
            addr(&ws.d_max, stream),
            addr(&ws.d_log_norm, stream),
            addr(&ws.d_gather, stream),
            addr(&ws.d_status, stream),
            addr(&ws.log_t, stream),
            addr(&ws.race_key, stream),
            addr(&ws.race_token, stream),
        ];
        stream.synchronize()?;
        Ok(ws)
    }

    /// Writes the workspace's device addresses into `params`.
    pub(crate) fn fill(&self, params: &mut VerifyParams) {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = self.addrs;
        params.ws_t_max = a;
        params.ws_t_log_norm = b;
        params.ws_t_gather = c;
        params.ws_t_arg = d;
        params.ws_t_status = e;
        params.ws_d_max = f;
        params.ws_d_log_norm = g;
        params.ws_d_gather = h;
        params.ws_d_status = i;
        params.ws_log_t = j;
        params.ws_race_key = k;
        params.ws_race_token = l;
    }
}
