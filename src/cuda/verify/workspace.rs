//! Device scratch space of the verification kernels (`AspsVerifyWorkspace` of
//! kernels/verify_params.h), allocated once per [`super::Verifier`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::params::AspsVerifyWorkspace;
use crate::error::Result;

/// Which cells a workspace buffer holds: one per (request, row), one per part of a row, or one
/// arrival counter per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    /// B (n + 1) entries.
    Row,
    /// B (n + 1) split entries.
    Part,
    /// B (n + 1) entries (of which B are used), zero when allocated: every call leaves each
    /// counter at zero, which the fused form's one launch relies on (kernels/verify.cu).
    Counters,
}

/// The element type of a workspace buffer (all are 4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// `float`.
    F32,
    /// `int32_t`.
    I32,
    /// `uint32_t`.
    U32,
}

/// The workspace's buffers, each made by `alloc(cells, elem)`, which returns the buffer's
/// address: the one list of them, in `AspsVerifyWorkspace`'s field order. The verifier
/// allocates device memory; the kernel emulator's tests host memory.
pub fn build_workspace(
    mut alloc: impl FnMut(Cells, Elem) -> Result<u64>,
) -> Result<AspsVerifyWorkspace> {
    use Cells::{Counters, Part, Row};
    use Elem::{F32, I32, U32};
    // Fields are evaluated in the order written, which is the struct's.
    Ok(AspsVerifyWorkspace {
        t_pmax: alloc(Part, F32)? as *mut f32,
        t_psum: alloc(Part, F32)? as *mut f32,
        t_parg: alloc(Part, I32)? as *mut i32,
        t_pflags: alloc(Part, I32)? as *mut i32,
        d_pmax: alloc(Part, F32)? as *mut f32,
        d_psum: alloc(Part, F32)? as *mut f32,
        d_pflags: alloc(Part, I32)? as *mut i32,
        t_gather: alloc(Row, F32)? as *mut f32,
        d_gather: alloc(Row, F32)? as *mut f32,
        t_theta: alloc(Row, F32)? as *mut f32,
        t_trunc_ln: alloc(Row, F32)? as *mut f32,
        d_theta: alloc(Row, F32)? as *mut f32,
        d_trunc_ln: alloc(Row, F32)? as *mut f32,
        race_pkey: alloc(Part, F32)? as *mut f32,
        race_ptoken: alloc(Part, I32)? as *mut i32,
        res_part: alloc(Part, F32)? as *mut f32,
        // One counter per request; B <= B (n + 1) row cells.
        arrivals: alloc(Counters, U32)? as *mut u32,
    })
}

/// A verifier's workspace on the device. The buffers are owned here and never reallocated, so
/// their device addresses are taken once, at creation: a call then touches no cudarc event and
/// stays capturable on any stream.
///
/// The buffers are left uninitialised but for the arrival counters: the kernels read only
/// entries written earlier in the same call (kernels/verify.cu), so neither fresh garbage nor a
/// previous call's values can reach a decision. The tests hold them to that on the emulated
/// device, whose allocations are filled with a NaN / out-of-range-integer pattern. The counters
/// are zeroed here and every call leaves them at zero (the fused form counts from zero).
#[derive(Debug)]
pub(crate) struct Workspace {
    /// Kept only to own the memory.
    _buffers: Vec<CudaSlice<u32>>,
    pointers: AspsVerifyWorkspace,
    row_cells: usize,
    part_cells: usize,
}

// SAFETY: `pointers` holds device addresses of the buffers this struct owns, never dereferenced
// on the host; moving or sharing them between threads is what cudarc does with its slices.
unsafe impl Send for Workspace {}
// SAFETY: as above; `&Workspace` gives out copies of the addresses only.
unsafe impl Sync for Workspace {}

impl Workspace {
    /// Allocates `row_cells` row cells and `part_cells` part cells per buffer on `stream`, and
    /// waits for that to finish, so that the workspace can be used at once from any stream of
    /// the context.
    pub(crate) fn new(
        stream: &Arc<CudaStream>,
        row_cells: usize,
        part_cells: usize,
    ) -> Result<Self> {
        let mut buffers = Vec::new();
        let pointers = build_workspace(|cells, _elem| {
            let buf = match cells {
                Cells::Counters => stream.alloc_zeros::<u32>(row_cells)?,
                // SAFETY: device memory of plain 4-byte numbers that the host never reads; the
                // kernels read an entry only after a kernel of the same call wrote it.
                Cells::Row => unsafe { stream.alloc::<u32>(row_cells) }?,
                Cells::Part => unsafe { stream.alloc::<u32>(part_cells) }?,
            };
            let addr = buf.device_ptr(stream).0;
            buffers.push(buf);
            Ok(addr)
        })?;
        stream.synchronize()?;
        Ok(Workspace {
            _buffers: buffers,
            pointers,
            row_cells,
            part_cells,
        })
    }

    /// The buffers' addresses, for the kernels' parameters.
    pub(crate) fn pointers(&self) -> AspsVerifyWorkspace {
        self.pointers
    }

    /// How many (row cells, part cells) each buffer holds.
    pub(crate) fn cells(&self) -> (usize, usize) {
        (self.row_cells, self.part_cells)
    }
}
