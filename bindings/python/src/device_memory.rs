//! `DeviceBuffer`: bytes of device memory allocated through the driver in a device's primary
//! context (the one torch and other CUDA libraries share), with blocking copies to and from
//! the host. `asps.DeviceArray` gives it a shape, a dtype and `__cuda_array_interface__`, so a
//! caller without a CUDA array library (and the tests, which need no torch) can hand
//! `asps.verify` device arrays and read its results.

use std::mem::ManuallyDrop;
use std::sync::Arc;

use cudarc::driver::{CudaContext, result};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::gpu::{RestoreContext, cuda_error};
use crate::{crate_error, value_error};

#[pyclass(module = "asps._asps", frozen)]
struct DeviceBuffer {
    /// Dropped by hand in Drop, before the caller's context is made current again: dropping
    /// the last reference binds the context to release it.
    ctx: ManuallyDrop<Arc<CudaContext>>,
    ptr: u64,
    nbytes: usize,
}

#[pymethods]
impl DeviceBuffer {
    /// `nbytes` (>= 1) bytes on device `device`, zeroed.
    #[new]
    fn new(device: usize, nbytes: usize) -> PyResult<Self> {
        if nbytes == 0 {
            return Err(value_error("a device buffer of 0 bytes"));
        }
        if !asps::cuda::driver_available() {
            return Err(crate_error(asps::Error::NoCudaDriver(
                "the CUDA driver library could not be loaded".into(),
            )));
        }
        let _restore = RestoreContext::new();
        let ctx = CudaContext::new(device)
            .map_err(|e| crate_error(asps::Error::NoCudaDriver(e.to_string())))?;
        ctx.bind_to_thread().map_err(cuda_error)?;
        // SAFETY: an allocation in the current context, freed once in Drop.
        let ptr = unsafe { result::malloc_sync(nbytes) }.map_err(cuda_error)?;
        let buffer = DeviceBuffer {
            ctx: ManuallyDrop::new(ctx),
            ptr,
            nbytes,
        };
        // SAFETY: the whole allocation. Then waited for, so that work on any stream (one that
        // does not wait for the legacy stream included) finds the zeros: the array's
        // __cuda_array_interface__ names no stream.
        unsafe { result::memset_d8_sync(ptr, 0, nbytes) }.map_err(cuda_error)?;
        buffer.ctx.synchronize().map_err(cuda_error)?;
        Ok(buffer)
    }

    /// The device address of the first byte.
    #[getter]
    fn ptr(&self) -> u64 {
        self.ptr
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// The device ordinal.
    #[getter]
    fn device(&self) -> usize {
        self.ctx.ordinal()
    }

    /// Copies `data` (exactly nbytes) to the device, after all work queued in the context, and
    /// waits for the copy.
    fn upload(&self, data: &[u8]) -> PyResult<()> {
        if data.len() != self.nbytes {
            return Err(value_error(format!(
                "{} bytes into a device buffer of {}",
                data.len(),
                self.nbytes
            )));
        }
        let _restore = RestoreContext::new();
        self.ctx.synchronize().map_err(cuda_error)?;
        // SAFETY: nbytes bytes on both sides; the context is current (synchronize bound it).
        unsafe { result::memcpy_htod_sync(self.ptr, data) }.map_err(cuda_error)?;
        // A copy from pageable memory may return before the device has the bytes.
        self.ctx.synchronize().map_err(cuda_error)
    }

    /// The buffer's bytes, after all work queued in the context has finished.
    fn download<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let _restore = RestoreContext::new();
        self.ctx.synchronize().map_err(cuda_error)?;
        let mut data = vec![0u8; self.nbytes];
        // SAFETY: nbytes bytes on both sides; the context is current.
        unsafe { result::memcpy_dtoh_sync(&mut data, self.ptr) }.map_err(cuda_error)?;
        Ok(PyBytes::new(py, &data))
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let _restore = RestoreContext::new();
        // Work still queued on any stream may use the buffer: wait for it first.
        if self.ctx.synchronize().is_ok() {
            // SAFETY: allocated in `new`, freed once, nothing queued uses it any more.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.ctx) };
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DeviceBuffer>()?;
    Ok(())
}
