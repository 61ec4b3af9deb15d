//! Device scratch space of the verification kernels, allocated once per [`super::Verifier`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr};

use super::params::VerifyParams;
use crate::error::Result;

/// The kernels' intermediate results (kernels/verify.cuh, `VerifyParams`): row cells, one per
/// (request, row), and part cells, one per (request, row, part of the row). The buffers are
/// owned here and never reallocated, so their device addresses are taken once, at creation: a
/// call then touches no cudarc event and stays capturable on any stream.
///
/// The buffers are left uninitialised: the kernels read only entries written earlier in the
/// same call (kernels/verify.cu), so neither fresh garbage nor a previous call's values can
/// reach a decision. The tests hold them to that on the emulated device, whose allocations
/// are filled with a NaN / out-of-range-integer pattern.
#[derive(Debug)]
pub(crate) struct Workspace {
    /// Kept only to own the memory.
    _buffers: (Vec<CudaSlice<f32>>, Vec<CudaSlice<i32>>),
    addrs: [u64; 16],
    part_cells: usize,
}

/// One buffer of the workspace: its element type, and whether it holds part cells.
#[derive(Clone, Copy)]
enum Cells {
    RowF32,
    RowI32,
    PartF32,
    PartI32,
}

/// The buffers in the order of `VerifyParams`' workspace fields.
const LAYOUT: [Cells; 16] = [
    Cells::PartF32, // t_pmax
    Cells::PartF32, // t_psum
    Cells::PartI32, // t_parg
    Cells::PartI32, // t_pflags
    Cells::PartF32, // d_pmax
    Cells::PartF32, // d_psum
    Cells::PartI32, // d_pflags
    Cells::RowF32,  // t_gather
    Cells::RowF32,  // d_gather
    Cells::RowI32,  // t_arg
    Cells::RowF32,  // log_keep
    Cells::PartF32, // race_pkey
    Cells::PartI32, // race_ptoken
    Cells::PartF32, // a_part
    Cells::RowI32,  // status
    Cells::RowI32,  // sps_row
];

/// An uninitialised buffer of `len` elements.
fn uninit<T: DeviceRepr>(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<T>> {
    // SAFETY: device memory of plain numbers that the host never reads; the kernels read an
    // entry only after a kernel of the same call wrote it (see `Workspace`).
    Ok(unsafe { stream.alloc::<T>(len) }?)
}

impl Workspace {
    /// Allocates `row_cells` row cells and `part_cells` part cells per buffer on `stream`, and
    /// waits for that to finish, so that the workspace can be used at once from any stream of
    /// the context.
    pub(crate) fn new(
        stream: &Arc<CudaStream>,
        row_cells: usize,
        part_cells: usize,
    ) -> Result<Self> {
        let (mut f32s, mut i32s) = (Vec::new(), Vec::new());
        let mut addrs = [0u64; 16];
        for (slot, cells) in addrs.iter_mut().zip(LAYOUT) {
            *slot = match cells {
                Cells::RowF32 | Cells::PartF32 => {
                    let len = if matches!(cells, Cells::RowF32) {
                        row_cells
                    } else {
                        part_cells
                    };
                    let buf = uninit::<f32>(stream, len)?;
                    let addr = buf.device_ptr(stream).0;
                    f32s.push(buf);
                    addr
                }
                Cells::RowI32 | Cells::PartI32 => {
                    let len = if matches!(cells, Cells::RowI32) {
                        row_cells
                    } else {
                        part_cells
                    };
                    let buf = uninit::<i32>(stream, len)?;
                    let addr = buf.device_ptr(stream).0;
                    i32s.push(buf);
                    addr
                }
            };
        }
        stream.synchronize()?;
        Ok(Workspace {
            _buffers: (f32s, i32s),
            addrs,
            part_cells,
        })
    }

    /// How many part cells each part buffer holds.
    pub(crate) fn part_cells(&self) -> usize {
        self.part_cells
    }

    /// Writes the workspace's device addresses into `params`.
    pub(crate) fn fill(&self, params: &mut VerifyParams) {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, q] = self.addrs;
        params.ws_t_pmax = a;
        params.ws_t_psum = b;
        params.ws_t_parg = c;
        params.ws_t_pflags = d;
        params.ws_d_pmax = e;
        params.ws_d_psum = f;
        params.ws_d_pflags = g;
        params.ws_t_gather = h;
        params.ws_d_gather = i;
        params.ws_t_arg = j;
        params.ws_log_keep = k;
        params.ws_race_pkey = l;
        params.ws_race_ptoken = m;
        params.ws_a_part = n;
        params.ws_status = o;
        params.ws_sps_row = q;
    }
}
