//! The C ABI of include/asps.h: a verifier handle, one argument struct, status codes.
//!
//! Every function checks its arguments and catches panics at the boundary; nothing is
//! launched unless `ASPS_OK` is returned. The structs and constants come from
//! [`bindings`], which bindgen generates from the header (tests/c_header.rs keeps it fresh).

#[rustfmt::skip]
pub mod bindings;

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bindings::*;

use crate::cuda::{Gpu, RawTruncationArgs, RawVerifyArgs, RequestStatus, Verifier};
use crate::dtype::Dtype;
use crate::error::Error;
use crate::method::Method;

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

fn stride(what: &str, s: i64) -> Result<usize, Error> {
    usize::try_from(s).map_err(|_| Error::Shape(format!("{what} = {s} is negative")))
}

fn size(what: &str, s: i32) -> Result<usize, Error> {
    usize::try_from(s).map_err(|_| Error::Shape(format!("{what} = {s} is negative")))
}

/// The C argument struct as [`RawVerifyArgs`], with enum codes and signs checked.
pub fn raw_args(args: &AspsVerifyArgs) -> Result<RawVerifyArgs, Error> {
    let method = match args.method as u32 {
        ASPS_METHOD_ASPS => Method::Asps,
        ASPS_METHOD_SPS => Method::Sps,
        ASPS_METHOD_GREEDY => Method::Greedy,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "method code {}",
                args.method
            )));
        }
    };
    let dtype = match args.dtype as u32 {
        ASPS_DTYPE_F32 => Dtype::F32,
        ASPS_DTYPE_F16 => Dtype::F16,
        ASPS_DTYPE_BF16 => Dtype::BF16,
        _ => return Err(Error::InvalidArgument(format!("dtype code {}", args.dtype))),
    };
    if args.reserved != 0 {
        return Err(Error::InvalidArgument("`reserved` must be 0".into()));
    }
    Ok(RawVerifyArgs {
        method,
        dtype,
        batch: size("batch", args.batch)?,
        max_draft: size("max_draft", args.max_draft)?,
        vocab: size("vocab", args.vocab)?,
        target: args.target_logits as u64,
        target_batch_stride: stride("target_batch_stride", args.target_batch_stride)?,
        target_row_stride: stride("target_row_stride", args.target_row_stride)?,
        draft: args.draft_logits as u64,
        draft_batch_stride: stride("draft_batch_stride", args.draft_batch_stride)?,
        draft_row_stride: stride("draft_row_stride", args.draft_row_stride)?,
        draft_tokens: args.draft_tokens as u64,
        draft_lens: args.draft_lens as u64,
        temperatures: args.temperatures as u64,
        seeds: args.seeds as u64,
        offsets: args.offsets as u64,
        out_tokens: args.out_tokens as u64,
        out_num_emitted: args.out_num_emitted as u64,
        out_num_accepted: args.out_num_accepted as u64,
        out_status: args.out_status as u64,
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
    if out.is_null() {
        return ASPS_ERR_INVALID_ARGUMENT as i32;
    }
    // SAFETY: `out` is non-null and writable (the caller's contract).
    unsafe { *out = std::ptr::null_mut() };
    guard(|| {
        let device = size("device", device)?;
        let (max_batch, max_draft) = (size("max_batch", max_batch)?, size("max_draft", max_draft)?);
        let gpu = Gpu::new(device)?;
        let stream = gpu.context().default_stream();
        let verifier = Verifier::new(&gpu, &stream, max_batch, max_draft)?;
        // SAFETY: as above; the handle is a Box<Verifier> in disguise, freed by destroy.
        unsafe { *out = Box::into_raw(Box::new(verifier)).cast::<AspsVerifier>() };
        Ok(())
    })
}

/// Destroys a verifier made by [`asps_verifier_create`].
///
/// # Safety
///
/// `verifier` is null or a handle from [`asps_verifier_create`] not yet destroyed, with no
/// work of it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_verifier_destroy(verifier: *mut AspsVerifier) -> i32 {
    if verifier.is_null() {
        return ASPS_OK as i32;
    }
    guard(|| {
        // SAFETY: the handle came from Box::into_raw in asps_verifier_create.
        drop(unsafe { Box::from_raw(verifier.cast::<Verifier>()) });
        Ok(())
    })
}

/// The C truncation struct as [`RawTruncationArgs`] (null: no truncation).
pub fn raw_truncation(truncation: Option<&AspsTruncationArgs>) -> RawTruncationArgs {
    truncation.map_or(RawTruncationArgs::OFF, |t| RawTruncationArgs {
        target_top_k: t.target_top_k as u64,
        target_top_p: t.target_top_p as u64,
        target_min_p: t.target_min_p as u64,
        draft_top_k: t.draft_top_k as u64,
        draft_top_p: t.draft_top_p as u64,
        draft_min_p: t.draft_min_p as u64,
    })
}

/// Checks `args`, then queues a verification on `stream`.
///
/// # Safety
///
/// `args` is null or points to a valid `AspsVerifyArgs` whose device pointers satisfy
/// [`Verifier::verify_raw`]'s contract (calls on one verifier ordered on the device included);
/// `verifier` is null or a live handle that no other call is using at the same time (the
/// handle is not thread-safe: include/asps.h); `stream` is null or a live stream of the
/// verifier's context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_verify(
    verifier: *mut AspsVerifier,
    args: *const AspsVerifyArgs,
    stream: asps_stream_t,
) -> i32 {
    // SAFETY: the caller's contract is asps_verify_truncated's, with no truncation.
    unsafe { asps_verify_truncated(verifier, args, std::ptr::null(), stream) }
}

/// [`asps_verify`] with per-request truncation (`truncation` null: none).
///
/// # Safety
///
/// As [`asps_verify`]; `truncation` is null or points to a valid `AspsTruncationArgs` whose
/// non-null arrays hold `batch` elements on the device, valid until the queued work finishes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asps_verify_truncated(
    verifier: *mut AspsVerifier,
    args: *const AspsVerifyArgs,
    truncation: *const AspsTruncationArgs,
    stream: asps_stream_t,
) -> i32 {
    if args.is_null() {
        return ASPS_ERR_INVALID_ARGUMENT as i32;
    }
    guard(|| {
        // SAFETY: `args` is non-null and valid (the caller's contract); it is copied out.
        let raw = raw_args(unsafe { &*args })?;
        raw.check()?;
        // SAFETY: `truncation` is null or valid (the caller's contract); it is copied out.
        let trunc = raw_truncation(unsafe { truncation.as_ref() });
        trunc.check()?;
        if verifier.is_null() {
            return Err(Error::InvalidArgument("the verifier handle is null".into()));
        }
        // SAFETY: a live handle from asps_verifier_create, a Box<Verifier>, which no other call
        // uses while this one runs (the caller's contract, stated in include/asps.h): this is
        // the only reference to it until the call returns.
        let verifier = unsafe { &mut *verifier.cast::<Verifier>() };
        // SAFETY: the caller's contract on the pointers and the stream is
        // verify_raw_truncated's.
        unsafe { verifier.verify_raw_truncated(&raw, &trunc, stream.cast()) }
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
        ASPS_ERR_INVALID_ARGUMENT => c"invalid argument (null struct or handle, unknown enum code)",
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
        _ => c"unknown status",
    })
}

/// A static description of an `AspsRequestStatus` code.
#[unsafe(no_mangle)]
pub extern "C" fn asps_request_status_string(status: i32) -> *const c_char {
    c_str(RequestStatus::from_code(status).describe_c())
}
