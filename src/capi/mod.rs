//! The C ABI of include/asps.h: a verifier handle, one argument struct, status codes.
//!
//! Every function checks its arguments and catches panics at the boundary; nothing is
//! launched unless `ASPS_OK` is returned. The structs and constants come from
//! [`bindings`], which bindgen generates from the header (tests/c_header.rs keeps it fresh).
//!
//! [`AspsVerifyArgs`] is also the Rust raw front's description of a call
//! ([`crate::cuda::Verifier::verify_raw`]): one struct for C, raw Rust and the kernels; so is
//! [`AspsTreeVerifyArgs`] for trees ([`crate::cuda::TreeVerifier::verify_raw`]).

#[rustfmt::skip]
pub mod bindings;

pub use crate::cuda::{TREE_VERIFY_ARGS_MIN_SIZE, VERIFY_ARGS_MAX_SIZE, VERIFY_ARGS_MIN_SIZE};
pub use bindings::{AspsSampling, AspsTreeVerifyArgs, AspsTruncation, AspsVerifyArgs};

use std::ffi::{CStr, c_char};
use std::sync::Arc;

use cudarc::driver::CudaStream;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bindings::*;

use crate::cuda::{Gpu, RequestStatus, TreeVerifier, Verifier};
use crate::error::Error;

/// The status code of an error (`AspsStatus`).
pub fn status_of(error: &Error) -> i32 {
    (match error {
        Error::NullPointer(_) => ASPS_ERR_NULL_POINTER,
        Error::Misaligned { .. } => ASPS_ERR_MISALIGNED,
        Error::Shape(_) | Error::EmptyDraft | Error::RowCount { .. } | Error::RowLength { .. } => {
            ASPS_ERR_SHAPE
        }
        Error::TooLarge(_) => ASPS_ERR_TOO_LARGE,
        Error::Capacity(_) => ASPS_ERR_CAPACITY,
        Error::Overlap { .. } => ASPS_ERR_OVERLAP,
        Error::KernelsMissing => ASPS_ERR_KERNELS_MISSING,
        Error::NoCudaDriver(_) => ASPS_ERR_NO_DRIVER,
        Error::Cuda(_) => ASPS_ERR_CUDA,
        Error::InvalidArgument(_)
        | Error::BadRow { .. }
        | Error::BadInput(_)
        | Error::TokenOutOfRange { .. }
        | Error::ImpossibleDraftToken { .. }
        | Error::BadTemperature(_)
        | Error::BadTruncation(_)
        | Error::NoOutcome => ASPS_ERR_INVALID_ARGUMENT,
    }) as i32
}

/// Runs `f`, turning its error into a status code and a panic into `ASPS_ERR_INTERNAL`.
fn guard(f: impl FnOnce() -> Result<(), Error>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ASPS_OK as i32,
        Ok(Err(e)) => status_of(&e),
        Err(_) => ASPS_ERR_INTERNAL as i32,
    }
}

fn size(what: &str, s: i32) -> Result<usize, Error> {
    usize::try_from(s).map_err(|_| Error::Shape(format!("{what} = {s} is negative")))
}

/// Makes a handle of type `H` (an opaque C type) that is a `Box<T>` in disguise: `make` builds
/// the `T` from the two `sizes` (checked non-negative first, before any device is touched) on
/// device `device`'s primary context and its default stream. On success `*out` holds the
/// handle; on failure it is null.
///
/// # Safety
///
/// `out` is null or points to writable memory for one pointer.
unsafe fn create_handle<T, H>(
    device: i32,
    sizes: [(&str, i32); 2],
    out: *mut *mut H,
    make: impl FnOnce(&Gpu, &Arc<CudaStream>, [usize; 2]) -> Result<T, Error>,
) -> i32 {
    if out.is_null() {
        return ASPS_ERR_INVALID_ARGUMENT as i32;
    }
    // SAFETY: `out` is non-null and writable (the caller's contract).
    unsafe { *out = std::ptr::null_mut() };
    guard(|| {
        let device = size("device", device)?;
        let sizes = [size(sizes[0].0, sizes[0].1)?, size(sizes[1].0, sizes[1].1)?];
        let gpu = Gpu::new(device)?;
        let stream = gpu.context().default_stream();
        let made = make(&gpu, &stream, sizes)?;
        // SAFETY: as above; freed by destroy_handle::<T, H>.
        unsafe { *out = Box::into_raw(Box::new(made)).cast::<H>() };
        Ok(())
    })
}

/// Frees a handle made by [`create_handle`] with the same `T` (null is allowed).
///
/// # Safety
///
/// `handle` is null or a handle from `create_handle::<T, H>` not yet destroyed, with no work
/// of it still running.
unsafe fn destroy_handle<T, H>(handle: *mut H) -> i32 {
    if handle.is_null() {
        return ASPS_OK as i32;
    }
    guard(|| {
        // SAFETY: the handle came from Box::into_raw of a Box<T> in create_handle.
        drop(unsafe { Box::from_raw(handle.cast::<T>()) });
        Ok(())
    })
}

/// Creates a verifier on device `device` (its primary context).
///
/// # Safety
///
/// `out` is null or points to writable memory for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_verifier_create(
    device: i32,
    max_batch: i32,
    max_draft: i32,
    out: *mut *mut AspsVerifier,
) -> i32 {
    // SAFETY: `out` is null or writable (the caller's contract).
    unsafe {
        let sizes = [("max_batch", max_batch), ("max_draft", max_draft)];
        create_handle(device, sizes, out, |gpu, stream, [max_batch, max_draft]| {
            Verifier::new(gpu, stream, max_batch, max_draft)
        })
    }
}

/// Destroys a verifier made by [`asps_verifier_create`].
///
/// # Safety
///
/// `verifier` is null or a handle from [`asps_verifier_create`] not yet destroyed, with no
/// work of it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_verifier_destroy(verifier: *mut AspsVerifier) -> i32 {
    // SAFETY: null or a handle from asps_verifier_create, a Box<Verifier> (the caller's
    // contract).
    unsafe { destroy_handle::<Verifier, _>(verifier) }
}

/// Reads the caller's `args` (of its own `struct_size`: older, shorter structs are widened with
/// their missing options off), checks it, then queues a verification on `stream`.
///
/// # Safety
///
/// `args` is null or points to a valid `AspsVerifyArgs` of `args->struct_size` readable bytes,
/// whose device pointers satisfy [`Verifier::verify_raw`]'s contract (calls on one verifier
/// ordered on the device included); `verifier` is null or a live handle that no other call is
/// using at the same time (the handle is not thread-safe: include/asps.h); `stream` is null or
/// a live stream of the verifier's context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_verify(
    verifier: *mut AspsVerifier,
    args: *const AspsVerifyArgs,
    stream: asps_stream_t,
) -> i32 {
    guard(|| {
        // SAFETY: `args` is null or holds struct_size readable bytes (the caller's contract);
        // they are copied out.
        let args = unsafe { AspsVerifyArgs::read_sized(args) }?;
        args.check()?;
        if verifier.is_null() {
            return Err(Error::InvalidArgument("the verifier handle is null".into()));
        }
        // SAFETY: a live handle from asps_verifier_create, a Box<Verifier>, which no other call
        // uses while this one runs (the caller's contract, stated in include/asps.h): this is
        // the only reference to it until the call returns.
        let verifier = unsafe { &mut *verifier.cast::<Verifier>() };
        // SAFETY: the caller's contract on the pointers and the stream is verify_raw's.
        unsafe { verifier.verify_raw(&args, stream.cast()) }
    })
}

/// Creates a tree verifier on device `device` (its primary context).
///
/// # Safety
///
/// `out` is null or points to writable memory for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_tree_verifier_create(
    device: i32,
    max_batch: i32,
    max_nodes: i32,
    out: *mut *mut AspsTreeVerifier,
) -> i32 {
    // SAFETY: `out` is null or writable (the caller's contract).
    unsafe {
        let sizes = [("max_batch", max_batch), ("max_nodes", max_nodes)];
        create_handle(device, sizes, out, |gpu, stream, [max_batch, max_nodes]| {
            TreeVerifier::new(gpu, stream, max_batch, max_nodes)
        })
    }
}

/// Destroys a tree verifier made by [`asps_tree_verifier_create`].
///
/// # Safety
///
/// `verifier` is null or a handle from [`asps_tree_verifier_create`] not yet destroyed, with no
/// work of it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_tree_verifier_destroy(verifier: *mut AspsTreeVerifier) -> i32 {
    // SAFETY: null or a handle from asps_tree_verifier_create, a Box<TreeVerifier> (the
    // caller's contract).
    unsafe { destroy_handle::<TreeVerifier, _>(verifier) }
}

/// Reads the caller's `args` (of its own `struct_size`), checks it, then queues a tree
/// verification on `stream`.
///
/// # Safety
///
/// As [`asps_verify`]: `args` is null or points to a valid `AspsTreeVerifyArgs` of
/// `args->struct_size` readable bytes, whose device pointers satisfy
/// [`TreeVerifier::verify_raw`]'s contract; `verifier` is null or a live handle that no other
/// call is using at the same time; `stream` is null or a live stream of its context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_tree_verify(
    verifier: *mut AspsTreeVerifier,
    args: *const AspsTreeVerifyArgs,
    stream: asps_stream_t,
) -> i32 {
    guard(|| {
        // SAFETY: `args` is null or holds struct_size readable bytes (the caller's contract);
        // they are copied out.
        let args = unsafe { AspsTreeVerifyArgs::read_sized(args) }?;
        args.check()?;
        if verifier.is_null() {
            return Err(Error::InvalidArgument("the verifier handle is null".into()));
        }
        // SAFETY: a live handle from asps_tree_verifier_create, a Box<TreeVerifier>, which no
        // other call uses while this one runs (the caller's contract).
        let verifier = unsafe { &mut *verifier.cast::<TreeVerifier>() };
        // SAFETY: the caller's contract on the pointers and the stream is verify_raw's.
        unsafe { verifier.verify_raw(&args, stream.cast()) }
    })
}

fn c_str(s: &'static CStr) -> *const c_char {
    s.as_ptr()
}

/// A static description of an `AspsStatus` code.
#[unsafe(no_mangle)]
pub extern "C" fn asps_status_string(status: i32) -> *const c_char {
    c_str(match status as u32 {
        ASPS_OK => c"ok",
        ASPS_ERR_INVALID_ARGUMENT => {
            c"invalid argument (null or misaligned struct or handle, unknown code, bad struct_size)"
        }
        ASPS_ERR_NULL_POINTER => c"a device pointer is null",
        ASPS_ERR_MISALIGNED => c"a device pointer is misaligned for its element type",
        ASPS_ERR_SHAPE => c"bad shape (B, n or V < 1, stride smaller than V or negative)",
        ASPS_ERR_TOO_LARGE => {
            c"shape too large (V > ASPS_MAX_VOCAB, or past the kernels' indexing)"
        }
        ASPS_ERR_CAPACITY => c"more requests or draft tokens than the verifier holds",
        ASPS_ERR_KERNELS_MISSING => {
            c"asps was built without its CUDA kernels (no nvcc, or a build for the emulated device)"
        }
        ASPS_ERR_NO_DRIVER => c"no CUDA driver or device",
        ASPS_ERR_CUDA => c"CUDA driver error",
        ASPS_ERR_INTERNAL => c"internal error in asps",
        ASPS_ERR_OVERLAP => c"an array the kernels write overlaps another array of the call",
        _ => c"unknown status",
    })
}

/// A static description of an `AspsRequestStatus` code.
#[unsafe(no_mangle)]
pub extern "C" fn asps_request_status_string(status: i32) -> *const c_char {
    c_str(RequestStatus::from_code(status).describe_c())
}
