//! The driver calls of the GPU entry points beside the crate's launches: where an address lives,
//! stream waits, and the memsets that broadcast a parameter's value.

use asps::cuda::Gpu;
use cudarc::driver::sys;
use pyo3::prelude::*;

use crate::{crate_error, value_error};

/// A driver call's result as Python's error.
pub(super) fn driver(what: &str, rc: sys::CUresult) -> PyResult<()> {
    if rc == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(crate_error(asps::Error::Cuda(format!("{what}: {rc:?}"))))
    }
}

pub(crate) fn cuda_error(e: cudarc::driver::DriverError) -> PyErr {
    crate_error(asps::Error::Cuda(e.to_string()))
}

/// Checks that `ptr` is device memory of device `ordinal` (not a host address, not another
/// device's memory), as the driver knows it.
pub(super) fn check_placed(name: &str, ptr: u64, ordinal: usize) -> PyResult<()> {
    let mut device: i32 = -1;
    // SAFETY: the driver writes one int for this attribute, and reads nothing at `ptr`.
    let rc = unsafe {
        sys::cuPointerGetAttribute(
            (&mut device as *mut i32).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            ptr,
        )
    };
    if rc != sys::CUresult::CUDA_SUCCESS {
        return Err(value_error(format!(
            "{name}: address {ptr:#x} is not CUDA device memory ({rc:?})"
        )));
    }
    if device as usize != ordinal {
        return Err(value_error(format!(
            "{name}: memory of CUDA device {device}, the call on {ordinal}"
        )));
    }
    Ok(())
}

/// Checks that `stream` (a handle; 0, 1 and 2 name the context's default streams) belongs to
/// `gpu`'s context, before anything is queued on it.
pub(super) fn check_stream(gpu: &Gpu, stream: usize) -> PyResult<()> {
    if stream <= 2 {
        return Ok(());
    }
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: the caller's live stream (asps.verify's contract); the driver writes one handle.
    driver("cuStreamGetCtx", unsafe {
        sys::cuStreamGetCtx(stream as sys::CUstream, &mut ctx)
    })?;
    if ctx != gpu.context().cu_ctx() {
        return Err(value_error(
            "the stream belongs to another CUDA context than the call's device's primary one",
        ));
    }
    Ok(())
}

/// The thread's current context when made, made current again when dropped: a call binds its
/// device's context, and the caller's (torch's current device, say) must not change under it.
/// Holds nothing where the driver cannot say (no driver library).
pub(crate) struct RestoreContext(Option<sys::CUcontext>);

impl RestoreContext {
    pub(crate) fn new() -> Self {
        if !asps::cuda::driver_available() {
            return RestoreContext(None);
        }
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: the driver writes one handle (null when none is current).
        match unsafe { sys::cuCtxGetCurrent(&mut ctx) } {
            sys::CUresult::CUDA_SUCCESS => RestoreContext(Some(ctx)),
            // Before the driver's initialisation no context can be current.
            sys::CUresult::CUDA_ERROR_NOT_INITIALIZED => RestoreContext(Some(ctx)),
            _ => RestoreContext(None),
        }
    }
}

impl Drop for RestoreContext {
    fn drop(&mut self) {
        if let Some(ctx) = self.0 {
            // SAFETY: the context that was current (or null), which its owner keeps alive while
            // it is current on this thread.
            let _ = unsafe { sys::cuCtxSetCurrent(ctx) };
        }
    }
}

/// Makes `stream` wait for the work queued so far on `producer`.
pub(super) fn wait_for(stream: sys::CUstream, producer: sys::CUstream) -> PyResult<()> {
    let mut event: sys::CUevent = std::ptr::null_mut();
    // SAFETY: the driver writes one handle; both streams are the caller's (live or special),
    // and the event is destroyed once the wait is queued (the driver keeps what it needs).
    unsafe {
        driver(
            "cuEventCreate",
            sys::cuEventCreate(
                &mut event,
                sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32,
            ),
        )?;
        let queued = driver("cuEventRecord", sys::cuEventRecord(event, producer)).and_then(|()| {
            driver(
                "cuStreamWaitEvent",
                sys::cuStreamWaitEvent(stream, event, 0),
            )
        });
        let destroyed = driver("cuEventDestroy", sys::cuEventDestroy_v2(event));
        queued.and(destroyed)
    }
}

/// Queues `bits` into `n` consecutive 4-byte words at `dst`.
pub(super) fn fill32(dst: u64, bits: u32, n: usize, stream: sys::CUstream) -> PyResult<()> {
    // SAFETY: dst holds n words (a slot's array of its capacity >= n); the current context owns
    // it and the stream.
    driver("cuMemsetD32Async", unsafe {
        sys::cuMemsetD32Async(dst, bits, n, stream)
    })
}

/// Queues `value` into `n` consecutive 8-byte words at `dst`: its low and high halves, each a
/// column of a pitch-8 memset.
pub(super) fn fill64(dst: u64, value: u64, n: usize, stream: sys::CUstream) -> PyResult<()> {
    for (half, bits) in [(0, value as u32), (4, (value >> 32) as u32)] {
        // SAFETY: as fill32, n rows of 8 bytes.
        driver("cuMemsetD2D32Async", unsafe {
            sys::cuMemsetD2D32Async(dst + half, 8, bits, 1, n, stream)
        })?;
    }
    Ok(())
}
