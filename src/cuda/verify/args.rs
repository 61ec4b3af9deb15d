//! The one description of a verification call, [`AspsVerifyArgs`] (include/asps.h), and every
//! check the host can make of it before launching. The safe front builds one from cudarc
//! buffers, the raw front and the C ABI take one from their caller, and the kernels receive it
//! unchanged; all three fronts end in [`AspsVerifyArgs::check`].

use std::mem::{offset_of, size_of};

use crate::capi::bindings::{
    ASPS_DTYPE_BF16, ASPS_DTYPE_F16, ASPS_DTYPE_F32, ASPS_METHOD_ASPS, ASPS_METHOD_GREEDY,
    ASPS_METHOD_SPS, AspsSampling, AspsVerifyArgs,
};
use crate::cuda::MAX_VOCAB;
use crate::cuda::call_args::{
    ARGS_MAX_SIZE, Array, check_arrays, check_logits_layout, dtype_of, extent, non_negative,
    read_sized, sampling_arrays, truncates,
};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::method::Method;
use crate::rng::MAX_NOISE_ROWS;

/// The smallest `struct_size` a caller may give (`ASPS_VERIFY_ARGS_MIN_SIZE`): every field up to
/// and including `sampling.temperature`. Fields past a caller's `struct_size` read as zero.
pub const VERIFY_ARGS_MIN_SIZE: usize =
    offset_of!(AspsVerifyArgs, sampling) + offset_of!(AspsSampling, target);

/// The largest `struct_size` read (`ASPS_VERIFY_ARGS_MAX_SIZE`): room for fields of headers to
/// come, far below any size a corrupted field would give.
pub const VERIFY_ARGS_MAX_SIZE: usize = ARGS_MAX_SIZE;

/// A call's shape, converted once from [`AspsVerifyArgs`] by its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallShape {
    /// The rule for requests whose temperature is not 0.
    pub method: Method,
    /// The element type of both logits buffers.
    pub dtype: Dtype,
    /// B, the number of requests.
    pub batch: usize,
    /// n, the padded draft length.
    pub max_draft: usize,
    /// V, the vocabulary size.
    pub vocab: usize,
    /// Whether any truncation array is given (the row launch reads rows whole and finds kept
    /// sets).
    pub truncates: bool,
}

impl AspsVerifyArgs {
    /// Every field zero (every pointer null, every option off) but `struct_size`, which is this
    /// header's size: the start of a call's description in Rust.
    pub const fn new() -> Self {
        // SAFETY: every field is an integer or a raw pointer, for which all-zero bytes are a
        // valid value (0, null).
        let mut args: AspsVerifyArgs = unsafe { std::mem::zeroed() };
        args.struct_size = size_of::<AspsVerifyArgs>() as u32;
        args
    }

    /// The rule of `method`, as the `method` field holds it.
    pub const fn method_code(method: Method) -> i32 {
        (match method {
            Method::Asps => ASPS_METHOD_ASPS,
            Method::Sps => ASPS_METHOD_SPS,
            Method::Greedy => ASPS_METHOD_GREEDY,
        }) as i32
    }

    /// The element type `dtype`, as the `dtype` field holds it.
    pub const fn dtype_code(dtype: Dtype) -> i32 {
        (match dtype {
            Dtype::F32 => ASPS_DTYPE_F32,
            Dtype::F16 => ASPS_DTYPE_F16,
            Dtype::BF16 => ASPS_DTYPE_BF16,
        }) as i32
    }

    /// Every check that needs no device: `struct_size`, enum codes, sizes, strides and index
    /// ranges; null, misaligned and overlapping arrays (an array the kernels write may share no
    /// byte with another array of the call; the inputs may share theirs). Values held in device
    /// memory (token ids, draft lengths, temperatures, truncations, logits) are checked by the
    /// kernels and reported per request. Returns the call's shape.
    pub fn check(&self) -> Result<CallShape> {
        let shape = self.check_shape()?;
        check_arrays(&self.arrays(&shape))?;
        Ok(shape)
    }

    /// The checks of sizes, strides and codes alone (no pointer is looked at): what the safe
    /// front needs before it can size its buffers.
    pub(crate) fn check_shape(&self) -> Result<CallShape> {
        if self.struct_size as usize != size_of::<AspsVerifyArgs>() {
            return Err(Error::InvalidArgument(format!(
                "struct_size = {}, but an AspsVerifyArgs is {} bytes (build it from \
                 AspsVerifyArgs::new(); C callers' shorter structs are widened by asps_verify)",
                self.struct_size,
                size_of::<AspsVerifyArgs>()
            )));
        }
        let method = match self.method as u32 {
            ASPS_METHOD_ASPS => Method::Asps,
            ASPS_METHOD_SPS => Method::Sps,
            ASPS_METHOD_GREEDY => Method::Greedy,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "method code {}",
                    self.method
                )));
            }
        };
        let dtype = dtype_of(self.dtype)?;
        let batch = non_negative("batch", self.batch)?;
        let n = non_negative("max_draft", self.max_draft)?;
        let vocab = non_negative("vocab", self.vocab)?;
        if batch == 0 {
            return Err(Error::Shape("the batch is empty (B = 0)".into()));
        }
        if n == 0 {
            return Err(Error::EmptyDraft);
        }
        if vocab == 0 {
            return Err(Error::Shape("the vocabulary is empty (V = 0)".into()));
        }
        if vocab > MAX_VOCAB {
            return Err(Error::TooLarge(format!(
                "V = {vocab} passes the largest vocabulary the kernels take, MAX_VOCAB = \
                 {MAX_VOCAB} (2^30: their 32-bit row loop counters must not wrap)"
            )));
        }
        if n >= MAX_NOISE_ROWS {
            return Err(Error::TooLarge(format!(
                "n = {n}; at most {} draft tokens are supported",
                MAX_NOISE_ROWS - 1
            )));
        }
        let i32_max = i32::MAX as usize;
        if (2 * n + 1).checked_mul(batch).is_none_or(|b| b > i32_max) {
            return Err(Error::TooLarge(format!(
                "B * (2n + 1) = {batch} * {} blocks passes {i32_max}",
                2 * n + 1
            )));
        }
        let shape = (batch, n + 1, vocab);
        let (bs, rs) = (self.target_batch_stride, self.target_row_stride);
        check_logits_layout("target", "row", shape, dtype, bs, rs)?;
        let (bs, rs) = (self.draft_batch_stride, self.draft_row_stride);
        check_logits_layout("draft", "row", (batch, n, vocab), dtype, bs, rs)?;
        let truncates = truncates(&self.sampling);
        Ok(CallShape {
            method,
            dtype,
            batch,
            max_draft: n,
            vocab,
            truncates,
        })
    }

    /// Every array of the call with the bytes it spans, for a shape that passed
    /// [`AspsVerifyArgs::check_shape`].
    fn arrays(&self, shape: &CallShape) -> Vec<Array> {
        let (b, n, v) = (shape.batch, shape.max_draft, shape.vocab);
        let elem = shape.dtype.size();
        let logits = |rows, bs: i64, rs: i64| {
            extent(b, rows, v, bs as usize, rs as usize).expect("checked by check_shape") * elem
        };
        let read = Array::read;
        let write = Array::write;
        let mut arrays = vec![
            read(
                "target_logits",
                self.target_logits as u64,
                elem,
                logits(n + 1, self.target_batch_stride, self.target_row_stride),
            ),
            read(
                "draft_logits",
                self.draft_logits as u64,
                elem,
                logits(n, self.draft_batch_stride, self.draft_row_stride),
            ),
            read("draft_tokens", self.draft_tokens as u64, 4, 4 * b * n),
            read("draft_lens", self.draft_lens as u64, 4, 4 * b),
            read("seeds", self.seeds as u64, 8, 8 * b),
            write("offsets", self.offsets as u64, 8, 8 * b),
            write("out_tokens", self.out_tokens as u64, 4, 4 * b * (n + 1)),
            write("out_num_emitted", self.out_num_emitted as u64, 4, 4 * b),
            write("out_num_accepted", self.out_num_accepted as u64, 4, 4 * b),
            write("out_status", self.out_status as u64, 4, 4 * b),
        ];
        arrays.extend(sampling_arrays(&self.sampling, b));
        arrays
    }

    /// Reads a caller's struct of `struct_size` bytes at `args` into a whole one, the fields
    /// past `struct_size` zero (their options off): how the C ABI keeps callers built against
    /// an older, shorter header working. A newer, longer struct is accepted when every byte
    /// past this header's struct is zero (no option this library does not know is set).
    ///
    /// `struct_size` must be a multiple of 8 from [`VERIFY_ARGS_MIN_SIZE`] to
    /// [`VERIFY_ARGS_MAX_SIZE`]; nothing past the first 4 bytes is read otherwise.
    ///
    /// # Safety
    ///
    /// `args` is null or points to at least 4 readable bytes holding `struct_size`, followed by
    /// the rest of `struct_size` readable bytes.
    pub(crate) unsafe fn read_sized(args: *const AspsVerifyArgs) -> Result<Self> {
        // SAFETY: AspsVerifyArgs is integers and raw pointers, struct_size first; the caller's
        // contract on `args` is read_sized's.
        unsafe {
            read_sized(
                args,
                AspsVerifyArgs::new(),
                VERIFY_ARGS_MIN_SIZE,
                "AspsVerifyArgs",
            )
        }
    }
}

impl Default for AspsVerifyArgs {
    /// [`AspsVerifyArgs::new`].
    fn default() -> Self {
        AspsVerifyArgs::new()
    }
}
