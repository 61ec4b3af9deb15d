//! Device scratch space of the verification kernels, allocated once per [`super::Verifier`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr};

use super::params::VerifyParams;
use crate::error::Result;

/// Per-row intermediate results, each `max_batch * (max_draft + 1)` entries. The buffers are
/// owned here and never reallocated, so their device addresses are taken once, at creation:
/// a call then touches no cudarc event and stays capturable on any stream.
///
/// The buffers are left uninitialised: the kernels read only entries written earlier in the
/// same call (kernels/verify.cu), so neither fresh garbage nor a previous call's values can
/// reach a decision. The tests hold them to that on the emulated device, whose allocations
/// are filled with a NaN / out-of-range-integer pattern.
#[derive(Debug)]
pub(crate) struct Workspace {
    /// The buffers, in the order of [`Workspace::fill`]; kept only to own the memory.
    _buffers: (Vec<CudaSlice<f32>>, Vec<CudaSlice<i32>>),
    addrs: [u64; 14],
}

/// Float buffers: t_max, t_log_norm, t_gather, d_max, d_log_norm, d_gather, log_t, log_keep,
/// race_key. Integer buffers: t_arg, t_status, d_status, race_token, sps_row.
const F32_BUFFERS: usize = 9;
const I32_BUFFERS: usize = 5;

fn uninit<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    entries: usize,
    count: usize,
) -> Result<Vec<CudaSlice<T>>> {
    (0..count)
        // SAFETY: device memory of plain numbers that the host never reads; the kernels read
        // an entry only after a kernel of the same call wrote it (see `Workspace`).
        .map(|_| Ok(unsafe { stream.alloc::<T>(entries) }?))
        .collect()
}

impl Workspace {
    /// Allocates the buffers on `stream` and waits for that to finish, so that the workspace
    /// can be used at once from any stream of the context.
    pub(crate) fn new(stream: &Arc<CudaStream>, entries: usize) -> Result<Self> {
        let f32s = uninit::<f32>(stream, entries, F32_BUFFERS)?;
        let i32s = uninit::<i32>(stream, entries, I32_BUFFERS)?;
        let mut addrs = [0u64; 14];
        let all = f32s
            .iter()
            .map(|s| s.device_ptr(stream).0)
            .chain(i32s.iter().map(|s| s.device_ptr(stream).0));
        for (slot, addr) in addrs.iter_mut().zip(all) {
            *slot = addr;
        }
        stream.synchronize()?;
        Ok(Workspace {
            _buffers: (f32s, i32s),
            addrs,
        })
    }

    /// Writes the workspace's device addresses into `params`.
    pub(crate) fn fill(&self, params: &mut VerifyParams) {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n] = self.addrs;
        params.ws_t_max = a;
        params.ws_t_log_norm = b;
        params.ws_t_gather = c;
        params.ws_d_max = d;
        params.ws_d_log_norm = e;
        params.ws_d_gather = f;
        params.ws_log_t = g;
        params.ws_log_keep = h;
        params.ws_race_key = i;
        params.ws_t_arg = j;
        params.ws_t_status = k;
        params.ws_d_status = l;
        params.ws_race_token = m;
        params.ws_sps_row = n;
    }
}
