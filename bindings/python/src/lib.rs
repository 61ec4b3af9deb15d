//! `asps._asps`: the extension module under the Python package `asps` (python/asps).
//!
//! * [`reference`]: the crate's f64 CPU reference on NumPy arrays' bytes.
//! * [`gpu`]: the GPU verification on device pointers the Python layer took from torch tensors,
//!   `__cuda_array_interface__` or DLPack objects, on the caller's stream.
//! * [`device_memory`]: device buffers allocated through the driver, for callers with no CUDA
//!   array library (and the tests, which need no torch).

mod device_memory;
mod gpu;
mod reference;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// The crate's error as Python's: the CUDA driver's failures (and a build or machine without
/// kernels or device) as `RuntimeError`, everything about the arguments as `ValueError`.
fn crate_error(e: asps::Error) -> PyErr {
    match e {
        asps::Error::Cuda(_) | asps::Error::NoCudaDriver(_) | asps::Error::KernelsMissing => {
            PyRuntimeError::new_err(e.to_string())
        }
        _ => value_error(e),
    }
}

#[pymodule]
fn _asps(m: &Bound<'_, PyModule>) -> PyResult<()> {
    reference::register(m)?;
    gpu::register(m)?;
    device_memory::register(m)?;
    Ok(())
}
