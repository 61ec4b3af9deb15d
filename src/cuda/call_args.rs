//! What the checks of every call description share (the chain's [`AspsVerifyArgs`] and the
//! tree's [`AspsTreeVerifyArgs`]): the device arrays a call names, checked for null,
//! misaligned, overlapping and wrapping addresses; the extent of strided logits; and the C
//! ABI's reading of a caller's struct of its own `struct_size`.
//!
//! [`AspsVerifyArgs`]: crate::capi::AspsVerifyArgs
//! [`AspsTreeVerifyArgs`]: crate::capi::AspsTreeVerifyArgs

use crate::capi::bindings::{
    ASPS_DTYPE_BF16, ASPS_DTYPE_F16, ASPS_DTYPE_F32, AspsSampling, AspsTruncation,
};
use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// Who touches an array of the call: the kernels only read it, or also write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// One device array of a call: its name, address, alignment, bytes spanned, access, and
/// whether it may be null.
pub(crate) struct Array {
    pub what: &'static str,
    pub addr: u64,
    pub align: usize,
    pub bytes: usize,
    pub access: Access,
    pub required: bool,
}

impl Array {
    /// A required array the kernels read.
    pub fn read(what: &'static str, addr: u64, align: usize, bytes: usize) -> Self {
        Array {
            what,
            addr,
            align,
            bytes,
            access: Access::Read,
            required: true,
        }
    }

    /// A required array the kernels write.
    pub fn write(what: &'static str, addr: u64, align: usize, bytes: usize) -> Self {
        Array {
            what,
            addr,
            align,
            bytes,
            access: Access::Write,
            required: true,
        }
    }

    /// An array of 4-byte values the kernels read, which may be null (that option off).
    pub fn option(what: &'static str, addr: u64, bytes: usize) -> Self {
        Array {
            what,
            addr,
            align: 4,
            bytes,
            access: Access::Read,
            required: false,
        }
    }
}

/// Checks a call's arrays: none passes the end of the address space; each required one is
/// non-null; each given one is aligned; an array the kernels write shares no byte with
/// another array of the call (the inputs may share theirs; an array of no bytes, which the
/// kernels never touch, shares none).
pub(crate) fn check_arrays(arrays: &[Array]) -> Result<()> {
    for a in arrays {
        if a.addr.checked_add(a.bytes as u64).is_none() {
            return Err(Error::TooLarge(format!(
                "`{}` at {:#x} spans {} bytes, past the end of the address space",
                a.what, a.addr, a.bytes
            )));
        }
    }
    for a in arrays {
        if a.addr == 0 {
            if a.required {
                return Err(Error::NullPointer(a.what));
            }
            continue;
        }
        if a.addr % a.align as u64 != 0 {
            return Err(Error::Misaligned {
                what: a.what,
                align: a.align,
            });
        }
    }
    for (i, w) in arrays.iter().enumerate() {
        if w.access != Access::Write || w.bytes == 0 {
            continue;
        }
        for (j, other) in arrays.iter().enumerate() {
            let disjoint =
                w.addr + w.bytes as u64 <= other.addr || other.addr + other.bytes as u64 <= w.addr;
            if i != j && other.addr != 0 && other.bytes != 0 && !disjoint {
                return Err(Error::Overlap {
                    written: w.what,
                    other: other.what,
                });
            }
        }
    }
    Ok(())
}

/// Elements spanned by `batch` requests of `rows` rows: the largest index read plus one.
pub(crate) fn extent(
    batch: usize,
    rows: usize,
    vocab: usize,
    batch_stride: usize,
    row_stride: usize,
) -> Option<usize> {
    (batch - 1)
        .checked_mul(batch_stride)?
        .checked_add((rows - 1).checked_mul(row_stride)?)?
        .checked_add(vocab)
        .filter(|&e| e <= i64::MAX as usize)
}

pub(crate) fn non_negative<T: TryInto<usize> + Copy + std::fmt::Display>(
    what: &str,
    x: T,
) -> Result<usize> {
    x.try_into()
        .map_err(|_| Error::Shape(format!("{what} = {x} is negative")))
}

/// The element type of a `dtype` code.
pub(crate) fn dtype_of(code: i32) -> Result<Dtype> {
    match code as u32 {
        ASPS_DTYPE_F32 => Ok(Dtype::F32),
        ASPS_DTYPE_F16 => Ok(Dtype::F16),
        ASPS_DTYPE_BF16 => Ok(Dtype::BF16),
        _ => Err(Error::InvalidArgument(format!("dtype code {code}"))),
    }
}

/// Checks the layout of `what` logits: `rows` rows of `vocab` elements for each of `batch`
/// requests, `row_stride` (>= V) and `batch_stride` elements apart, spanning at most 2^63
/// elements and 2^64 bytes. Returns the elements spanned.
pub(crate) fn check_logits_layout(
    what: &str,
    rows_name: &str,
    (batch, rows, vocab): (usize, usize, usize),
    dtype: Dtype,
    batch_stride: i64,
    row_stride: i64,
) -> Result<usize> {
    let bs = non_negative(&format!("{what}_batch_stride"), batch_stride)?;
    let rs = non_negative(&format!("{what}_{rows_name}_stride"), row_stride)?;
    if rs < vocab {
        return Err(Error::Shape(format!(
            "{what}_{rows_name}_stride = {rs} is smaller than V = {vocab}"
        )));
    }
    extent(batch, rows, vocab, bs, rs)
        .filter(|e| e.checked_mul(dtype.size()).is_some())
        .ok_or_else(|| {
            Error::TooLarge(format!(
                "the {what} logits span more than 2^63 elements or 2^64 bytes"
            ))
        })
}

/// Whether a call's sampling gives any truncation array.
pub(crate) fn truncates(s: &AspsSampling) -> bool {
    [s.target, s.draft]
        .iter()
        .any(|t| !t.top_k.is_null() || !t.top_p.is_null() || !t.min_p.is_null())
}

/// The arrays of a call's sampling for `b` requests: the temperatures, then each model's
/// truncation.
pub(crate) fn sampling_arrays(s: &AspsSampling, b: usize) -> Vec<Array> {
    let truncation = |t: &AspsTruncation, names: [&'static str; 3]| {
        [
            Array::option(names[0], t.top_k as u64, 4 * b),
            Array::option(names[1], t.top_p as u64, 4 * b),
            Array::option(names[2], t.min_p as u64, 4 * b),
        ]
    };
    let mut arrays = vec![
        Array::read("sampling.temperature", s.temperature as u64, 4, 4 * b),
        Array::option(
            "sampling.draft_temperature",
            s.draft_temperature as u64,
            4 * b,
        ),
    ];
    arrays.extend(truncation(
        &s.target,
        [
            "sampling.target.top_k",
            "sampling.target.top_p",
            "sampling.target.min_p",
        ],
    ));
    arrays.extend(truncation(
        &s.draft,
        [
            "sampling.draft.top_k",
            "sampling.draft.top_p",
            "sampling.draft.min_p",
        ],
    ));
    arrays
}

/// The largest `struct_size` read of any argument struct: room for fields of headers to come,
/// far below any size a corrupted field would give.
pub(crate) const ARGS_MAX_SIZE: usize = 4096;

/// Reads a caller's argument struct of `struct_size` bytes (its first field) at `args` over
/// `whole` (the struct with every option off and this header's `struct_size`), the fields
/// past `struct_size` left as `whole` has them: how the C ABI keeps callers built against an
/// older, shorter header working. A newer, longer struct is accepted when every byte past this
/// header's struct is zero (no option this library does not know is set). `name` names the
/// struct in errors.
///
/// `struct_size` must be a multiple of 8 from `min_size` to [`ARGS_MAX_SIZE`]; nothing past the
/// first 4 bytes is read otherwise.
///
/// # Safety
///
/// `T` is a `#[repr(C)]` struct of integers and raw pointers whose first field is a `u32`
/// `struct_size`. `args` is null or points to at least 4 readable bytes holding `struct_size`,
/// followed by the rest of `struct_size` readable bytes.
pub(crate) unsafe fn read_sized<T: Copy>(
    args: *const T,
    mut whole: T,
    min_size: usize,
    name: &str,
) -> Result<T> {
    if args.is_null() {
        return Err(Error::InvalidArgument("the argument struct is null".into()));
    }
    if args as usize % align_of::<T>() != 0 {
        return Err(Error::InvalidArgument(format!(
            "the argument struct is not aligned to {} bytes",
            align_of::<T>()
        )));
    }
    let bytes = args.cast::<u8>();
    // SAFETY: the first field, 4 readable bytes (the caller's contract), aligned above.
    let size = unsafe { args.cast::<u32>().read() } as usize;
    let ours = size_of::<T>();
    // Every field past the minimum is an 8-byte pointer, so every header's struct is a
    // multiple of 8 bytes long: another size would cut a field in half.
    if !(min_size..=ARGS_MAX_SIZE).contains(&size) || size % 8 != 0 {
        return Err(Error::InvalidArgument(format!(
            "struct_size = {size}: an {name} is a multiple of 8 bytes from {min_size} to \
             {ARGS_MAX_SIZE}"
        )));
    }
    if size > ours {
        // SAFETY: `size` readable bytes (the caller's contract).
        let extra = unsafe { std::slice::from_raw_parts(bytes.add(ours), size - ours) };
        if let Some(at) = extra.iter().position(|&x| x != 0) {
            return Err(Error::InvalidArgument(format!(
                "byte {} of the {size}-byte argument struct is set, but this library's \
                 {name} ends at {ours}: an option it does not know",
                ours + at
            )));
        }
    }
    // SAFETY: min(size, ours) bytes are readable at `args` (the caller's contract) and writable
    // in `whole`; any bit pattern is a valid T (integers and raw pointers, the caller's
    // contract). The copy's struct_size is then set to the whole struct's.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes, (&raw mut whole).cast::<u8>(), size.min(ours));
        (&raw mut whole).cast::<u32>().write(ours as u32);
    }
    Ok(whole)
}
