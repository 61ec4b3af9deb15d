//! The GPU verification behind `asps.verify`: one call described by device pointers, strides
//! and per-request parameters (the Python layer read them from the caller's arrays), turned into
//! the C ABI's [`AspsVerifyArgs`] once and handed to [`Verifier::verify_raw`] on the caller's
//! stream.
//!
//! A per-request parameter comes either as a device array of B values (its address) or as one
//! number for every request, which is written into a buffer of the cached slot with the driver's
//! 32-bit memsets, queued on the caller's stream before the kernels: the call neither copies from
//! the host nor synchronises.
//!
//! One slot (a [`Verifier`] and its parameter buffer) per device and stream, kept for the life
//! of the process: every call on one stream reuses its workspace, and calls on one stream are
//! ordered on the device, which is what the raw front's contract asks of calls on one verifier.
//! A call larger than any before on its stream replaces the slot; that waits for the stream
//! (the old workspace may still be in use there) and allocates.

use std::collections::BTreeMap;
use std::sync::Mutex;

use asps::capi::{AspsSampling, AspsTruncation, AspsVerifyArgs};
use asps::cuda::{Gpu, Verifier};
use cudarc::driver::sys;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::{crate_error, value_error};

/// A driver call's result as Python's error.
fn driver(what: &str, rc: sys::CUresult) -> PyResult<()> {
    if rc == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(crate_error(asps::Error::Cuda(format!("{what}: {rc:?}"))))
    }
}

/// One per-request parameter: `("array", address)` of a device array of B values, or
/// `("value", x)` for every request.
enum Param<'py> {
    Array(u64),
    Value(Bound<'py, PyAny>),
}

impl<'py> FromPyObject<'py> for Param<'py> {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let tuple = ob.downcast::<PyTuple>()?;
        let (tag, value): (String, Bound<'py, PyAny>) = tuple.extract()?;
        match tag.as_str() {
            "array" => Ok(Param::Array(value.extract()?)),
            "value" => Ok(Param::Value(value)),
            _ => Err(value_error(format!("a parameter tagged {tag:?}"))),
        }
    }
}

/// One verification call as the Python layer describes it (`asps/gpu.py`, `_call`).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Call<'py> {
    device: usize,
    stream: usize,
    /// Streams the arrays' producers wrote them on, which the call waits for.
    wait_for: Vec<usize>,
    /// Arrays whose device the caller's object did not say (`__cuda_array_interface__`): their
    /// names and addresses, checked to be device memory of `device`.
    unplaced: Vec<(String, u64)>,
    method: String,
    dtype: String,
    batch: i32,
    max_draft: i32,
    vocab: i32,
    target: u64,
    target_batch_stride: i64,
    target_row_stride: i64,
    draft: u64,
    draft_batch_stride: i64,
    draft_row_stride: i64,
    draft_tokens: u64,
    out_tokens: u64,
    out_num_emitted: u64,
    out_num_accepted: u64,
    out_status: u64,
    draft_lens: Param<'py>,
    seed: Param<'py>,
    offset: Param<'py>,
    temperature: Param<'py>,
    draft_temperature: Option<Param<'py>>,
    top_k: Option<Param<'py>>,
    top_p: Option<Param<'py>>,
    min_p: Option<Param<'py>>,
    draft_top_k: Option<Param<'py>>,
    draft_top_p: Option<Param<'py>>,
    draft_min_p: Option<Param<'py>>,
}

/// The 4-byte parameter arrays of a slot's buffer, in its order after the two 8-byte ones.
const WORD_ARRAYS: usize = 9;

/// A verifier for one device and stream, and room for B values of every parameter: seeds and
/// offsets (8 bytes each), then the [`WORD_ARRAYS`] 4-byte arrays.
struct Slot {
    verifier: Verifier,
    params: u64,
}

impl Slot {
    fn new(gpu: &Gpu, max_batch: usize, max_draft: usize) -> PyResult<Slot> {
        let verifier = Verifier::new(gpu, &gpu.context().default_stream(), max_batch, max_draft)
            .map_err(crate_error)?;
        gpu.context().bind_to_thread().map_err(cuda_error)?;
        // SAFETY: a plain allocation in the current context, freed in Drop.
        let params =
            unsafe { cudarc::driver::result::malloc_sync(max_batch * (16 + 4 * WORD_ARRAYS)) }
                .map_err(cuda_error)?;
        Ok(Slot { verifier, params })
    }

    fn capacity(&self) -> usize {
        self.verifier.max_batch()
    }

    /// The address of the 8-byte array `i` (0 seeds, 1 offsets).
    fn wide(&self, i: usize) -> u64 {
        self.params + (i * 8 * self.capacity()) as u64
    }

    /// The address of the 4-byte array `i`.
    fn word(&self, i: usize) -> u64 {
        self.params + (16 * self.capacity() + i * 4 * self.capacity()) as u64
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: allocated in Slot::new, and the stream that used it was waited for (slot).
        let _ = unsafe { cudarc::driver::result::free_sync(self.params) };
    }
}

pub(crate) fn cuda_error(e: cudarc::driver::DriverError) -> PyErr {
    crate_error(asps::Error::Cuda(e.to_string()))
}

#[derive(Default)]
struct Cache {
    gpus: BTreeMap<usize, Gpu>,
    slots: BTreeMap<(usize, usize), Slot>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Device `ordinal`'s primary context (the one torch uses too) with the kernels, loaded once.
fn gpu(cache: &mut Cache, ordinal: usize) -> PyResult<&Gpu> {
    Ok(match cache.gpus.entry(ordinal) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(Gpu::new(ordinal).map_err(crate_error)?)
        }
    })
}

/// Checks that `ptr` is device memory of device `ordinal` (not a host address, not another
/// device's memory), as the driver knows it.
fn check_placed(name: &str, ptr: u64, ordinal: usize) -> PyResult<()> {
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

/// Makes `stream` wait for the work queued so far on `producer`.
fn wait_for(stream: sys::CUstream, producer: sys::CUstream) -> PyResult<()> {
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
fn fill32(dst: u64, bits: u32, n: usize, stream: sys::CUstream) -> PyResult<()> {
    // SAFETY: dst holds n words (a slot's array of its capacity >= n); the current context owns
    // it and the stream.
    driver("cuMemsetD32Async", unsafe {
        sys::cuMemsetD32Async(dst, bits, n, stream)
    })
}

/// Queues `value` into `n` consecutive 8-byte words at `dst`: its low and high halves, each a
/// column of a pitch-8 memset.
fn fill64(dst: u64, value: u64, n: usize, stream: sys::CUstream) -> PyResult<()> {
    for (half, bits) in [(0, value as u32), (4, (value >> 32) as u32)] {
        // SAFETY: as fill32, n rows of 8 bytes.
        driver("cuMemsetD2D32Async", unsafe {
            sys::cuMemsetD2D32Async(dst + half, 8, bits, 1, n, stream)
        })?;
    }
    Ok(())
}

/// A parameter's device address: the caller's array, or a slot array filled with its value.
/// The fills are collected in `fills` and queued only once the call has been checked.
enum Fill {
    Word(u64, u32),
    Wide(u64, u64),
}

fn word_param<T: for<'a> FromPyObject<'a>>(
    param: Option<&Param<'_>>,
    slot_array: u64,
    bits: impl Fn(T) -> u32,
    fills: &mut Vec<Fill>,
) -> PyResult<u64> {
    Ok(match param {
        None => 0,
        Some(Param::Array(ptr)) => *ptr,
        Some(Param::Value(v)) => {
            fills.push(Fill::Word(slot_array, bits(v.extract()?)));
            slot_array
        }
    })
}

fn wide_param(param: &Param<'_>, slot_array: u64, fills: &mut Vec<Fill>) -> PyResult<u64> {
    Ok(match param {
        Param::Array(ptr) => *ptr,
        Param::Value(v) => {
            fills.push(Fill::Wide(slot_array, v.extract()?));
            slot_array
        }
    })
}

fn truncation(
    slot: &Slot,
    first: usize,
    (k, p, m): (Option<&Param<'_>>, Option<&Param<'_>>, Option<&Param<'_>>),
    fills: &mut Vec<Fill>,
) -> PyResult<AspsTruncation> {
    Ok(AspsTruncation {
        top_k: word_param(k, slot.word(first), |k: i32| k as u32, fills)? as *const i32,
        top_p: word_param(p, slot.word(first + 1), f32::to_bits, fills)? as *const f32,
        min_p: word_param(m, slot.word(first + 2), f32::to_bits, fills)? as *const f32,
    })
}

/// AspsDtype's code of a dtype's name.
fn dtype_code(dtype: &str) -> PyResult<i32> {
    match dtype {
        "float32" => Ok(0),
        "float16" => Ok(1),
        "bfloat16" => Ok(2),
        _ => Err(value_error(format!(
            "logits of dtype {dtype}: float32, float16 or bfloat16"
        ))),
    }
}

/// Verifies one batch on the device: checks the call (the crate's checks, as the C ABI's), then
/// queues the parameter fills and the kernels on the caller's stream. Returns without waiting.
#[pyfunction]
fn gpu_verify(call: Call<'_>) -> PyResult<()> {
    let method = match crate::reference::method_of(&call.method)? {
        asps::Method::Asps => 0,
        asps::Method::Sps => 1,
        asps::Method::Greedy => 2,
    };
    let batch = usize::try_from(call.batch)
        .ok()
        .filter(|&b| b > 0)
        .ok_or_else(|| value_error(format!("a batch of {} requests", call.batch)))?;
    let max_draft = usize::try_from(call.max_draft)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| value_error(format!("drafts of {} tokens", call.max_draft)))?;
    let stream = call.stream as sys::CUstream;

    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_default();
    let gpu = gpu(cache, call.device)?.clone();
    gpu.context().bind_to_thread().map_err(cuda_error)?;
    for (name, ptr) in &call.unplaced {
        check_placed(name, *ptr, call.device)?;
    }
    let key = (call.device, call.stream);
    let fits = cache
        .slots
        .get(&key)
        .is_some_and(|s| s.capacity() >= batch && s.verifier.max_draft() >= max_draft);
    if !fits {
        let (old_batch, old_draft) = cache
            .slots
            .get(&key)
            .map_or((0, 0), |s| (s.capacity(), s.verifier.max_draft()));
        if cache.slots.contains_key(&key) {
            // The old slot's buffers may still be read by work queued on the stream.
            // SAFETY: the caller's stream handle (the Python layer's contract: live or special).
            driver("cuStreamSynchronize", unsafe {
                sys::cuStreamSynchronize(stream)
            })?;
            cache.slots.remove(&key);
        }
        let slot = Slot::new(&gpu, batch.max(old_batch), max_draft.max(old_draft))?;
        cache.slots.insert(key, slot);
    }
    let slot = cache.slots.get_mut(&key).expect("inserted above");

    let mut fills = Vec::new();
    let sampling = AspsSampling {
        temperature: word_param(
            Some(&call.temperature),
            slot.word(1),
            f32::to_bits,
            &mut fills,
        )? as *const f32,
        target: truncation(
            slot,
            3,
            (
                call.top_k.as_ref(),
                call.top_p.as_ref(),
                call.min_p.as_ref(),
            ),
            &mut fills,
        )?,
        draft: truncation(
            slot,
            6,
            (
                call.draft_top_k.as_ref(),
                call.draft_top_p.as_ref(),
                call.draft_min_p.as_ref(),
            ),
            &mut fills,
        )?,
        draft_temperature: word_param(
            call.draft_temperature.as_ref(),
            slot.word(2),
            f32::to_bits,
            &mut fills,
        )? as *const f32,
    };
    let args = AspsVerifyArgs {
        struct_size: std::mem::size_of::<AspsVerifyArgs>() as u32,
        method,
        dtype: dtype_code(&call.dtype)?,
        batch: call.batch,
        max_draft: call.max_draft,
        vocab: call.vocab,
        target_logits: call.target as *const std::ffi::c_void,
        target_batch_stride: call.target_batch_stride,
        target_row_stride: call.target_row_stride,
        draft_logits: call.draft as *const std::ffi::c_void,
        draft_batch_stride: call.draft_batch_stride,
        draft_row_stride: call.draft_row_stride,
        draft_tokens: call.draft_tokens as *const i32,
        draft_lens: word_param(
            Some(&call.draft_lens),
            slot.word(0),
            |n: i32| n as u32,
            &mut fills,
        )? as *const i32,
        seeds: wide_param(&call.seed, slot.wide(0), &mut fills)? as *const u64,
        offsets: wide_param(&call.offset, slot.wide(1), &mut fills)? as *mut u64,
        out_tokens: call.out_tokens as *mut i32,
        out_num_emitted: call.out_num_emitted as *mut i32,
        out_num_accepted: call.out_num_accepted as *mut i32,
        out_status: call.out_status as *mut i32,
        sampling,
    };
    slot.verifier.check(&args).map_err(crate_error)?;
    for &producer in &call.wait_for {
        wait_for(stream, producer as sys::CUstream)?;
    }
    for fill in fills {
        match fill {
            Fill::Word(dst, bits) => fill32(dst, bits, batch, stream)?,
            Fill::Wide(dst, value) => fill64(dst, value, batch, stream)?,
        }
    }
    // SAFETY: the Python layer took every pointer from a live CUDA array of the shape and
    // strides it passed (the crate checked them against each other above), the caller keeps
    // those arrays alive and untouched until the stream has run the call (asps.verify's
    // contract, as for any asynchronous CUDA library), and the stream is the caller's live
    // stream or a special handle. The slot's workspace and parameter buffer belong to this
    // stream alone (one slot per stream), so earlier calls on them are ordered before this one.
    unsafe { slot.verifier.verify_raw(&args, stream) }.map_err(crate_error)
}

/// Why the GPU entry point cannot run on device `ordinal` (no driver library, no such device,
/// a build without kernels), or None when it can: the kernels are then loaded there.
#[pyfunction]
fn gpu_error(ordinal: usize) -> Option<String> {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    gpu(cache.get_or_insert_default(), ordinal)
        .err()
        .map(|e| e.to_string())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gpu_verify, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_error, m)?)?;
    Ok(())
}
