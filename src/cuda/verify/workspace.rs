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
    addrs: [u64; 17],
    part_cells: usize,
}

/// Which cells a buffer holds.
#[derive(Clone, Copy)]
enum Cells {
    Row,
    Part,
}

/// The element type of a buffer.
#[derive(Clone, Copy)]
enum Elem {
    F32,
    I32,
}

/// The buffers in the order of `VerifyParams`' workspace fields.
const LAYOUT: [(Cells, Elem); 17] = [
    (Cells::Part, Elem::F32), // t_pmax
    (Cells::Part, Elem::F32), // t_psum
    (Cells::Part, Elem::I32), // t_parg
    (Cells::Part, Elem::I32), // t_pflags
    (Cells::Part, Elem::F32), // d_pmax
    (Cells::Part, Elem::F32), // d_psum
    (Cells::Part, Elem::I32), // d_pflags
    (Cells::Row, Elem::F32),  // t_gather
    (Cells::Row, Elem::F32),  // d_gather
    (Cells::Row, Elem::F32),  // t_theta
    (Cells::Row, Elem::F32),  // t_trunc_ln
    (Cells::Row, Elem::F32),  // d_theta
    (Cells::Row, Elem::F32),  // d_trunc_ln
    (Cells::Part, Elem::F32), // race_pkey
    (Cells::Part, Elem::I32), // race_ptoken
    (Cells::Part, Elem::F32), // res_part
    (Cells::Row, Elem::I32),  // arrivals (one per request; B <= row cells)
];

/// Allocates an uninitialised buffer of `len` elements into `owned`; returns its address.
fn uninit<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    len: usize,
    owned: &mut Vec<CudaSlice<T>>,
) -> Result<u64> {
    // SAFETY: device memory of plain numbers that the host never reads; the kernels read an
    // entry only after a kernel of the same call wrote it (see `Workspace`).
    let buf = unsafe { stream.alloc::<T>(len) }?;
    let addr = buf.device_ptr(stream).0;
    owned.push(buf);
    Ok(addr)
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
        let mut addrs = [0u64; 17];
        for (slot, (cells, elem)) in addrs.iter_mut().zip(LAYOUT) {
            let len = match cells {
                Cells::Row => row_cells,
                Cells::Part => part_cells,
            };
            *slot = match elem {
                Elem::F32 => uninit(stream, len, &mut f32s)?,
                Elem::I32 => uninit(stream, len, &mut i32s)?,
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
        let [a, b, c, d, e, f, g, h, i, t0, t1, t2, t3, j, k, l, m] = self.addrs;
        params.ws_t_pmax = a;
        params.ws_t_psum = b;
        params.ws_t_parg = c;
        params.ws_t_pflags = d;
        params.ws_d_pmax = e;
        params.ws_d_psum = f;
        params.ws_d_pflags = g;
        params.ws_t_gather = h;
        params.ws_d_gather = i;
        params.ws_t_theta = t0;
        params.ws_t_trunc_ln = t1;
        params.ws_d_theta = t2;
        params.ws_d_trunc_ln = t3;
        params.ws_race_pkey = j;
        params.ws_race_ptoken = k;
        params.ws_res_part = l;
        params.ws_arrivals = m;
    }
}
