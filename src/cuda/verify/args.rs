//! The arguments of one verification call as raw device pointers, and every check the host can
//! make before launching. The safe front, the raw front and the C ABI all end here.

use crate::cuda::MAX_VOCAB;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::method::Method;
use crate::rng::MAX_NOISE_ROWS;

/// One verification call over a batch, by raw device pointers (`u64` device addresses in the
/// verifier's context). Strides are in elements.
///
/// | field | shape | element |
/// |---|---|---|
/// | `target` | `[batch, max_draft + 1, vocab]` at (`target_batch_stride`, `target_row_stride`) | `dtype` |
/// | `draft` | `[batch, max_draft, vocab]` at (`draft_batch_stride`, `draft_row_stride`) | `dtype` |
/// | `draft_tokens` | `[batch, max_draft]`, packed | i32 |
/// | `draft_lens` | `[batch]`: n_b in `1..=max_draft`; rows past n_b are not read | i32 |
/// | `temperatures` | `[batch]`: 0 = greedy | f32 |
/// | `seeds` | `[batch]` | u64 |
/// | `offsets` | `[batch]`: read, then advanced by 1 on the device | u64 |
/// | `out_tokens` | `[batch, max_draft + 1]`, packed, padded with -1 | i32 |
/// | `out_num_emitted`, `out_num_accepted`, `out_status` | `[batch]` | i32 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawVerifyArgs {
    /// The rule for every request whose temperature is not 0.
    pub method: Method,
    /// The element type of both logits buffers.
    pub dtype: Dtype,
    /// B, the number of requests.
    pub batch: usize,
    /// n, the longest draft (the padded draft length of the buffers).
    pub max_draft: usize,
    /// V, the vocabulary size, at most [`MAX_VOCAB`].
    pub vocab: usize,
    /// Target logits.
    pub target: u64,
    /// Elements between requests in `target`.
    pub target_batch_stride: usize,
    /// Elements between rows in `target` (>= vocab).
    pub target_row_stride: usize,
    /// Draft logits.
    pub draft: u64,
    /// Elements between requests in `draft`.
    pub draft_batch_stride: usize,
    /// Elements between rows in `draft` (>= vocab).
    pub draft_row_stride: usize,
    /// Draft tokens.
    pub draft_tokens: u64,
    /// Per-request draft lengths.
    pub draft_lens: u64,
    /// Per-request temperatures.
    pub temperatures: u64,
    /// Per-request seeds.
    pub seeds: u64,
    /// Per-request offsets (advanced by the call).
    pub offsets: u64,
    /// Emitted tokens.
    pub out_tokens: u64,
    /// Number of tokens emitted per request.
    pub out_num_emitted: u64,
    /// Number of draft tokens kept per request.
    pub out_num_accepted: u64,
    /// Per-request status ([`crate::cuda::RequestStatus`] codes).
    pub out_status: u64,
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

impl RawVerifyArgs {
    /// Every check that needs no device: sizes, strides, index ranges, null and misaligned
    /// pointers. Values held in device memory (token ids, draft lengths, temperatures, logits)
    /// are checked by the kernels and reported per request.
    pub fn check(&self) -> Result<()> {
        self.check_shape()?;
        self.check_pointers()
    }

    /// Sizes (V at most [`MAX_VOCAB`]), strides and index ranges.
    pub(crate) fn check_shape(&self) -> Result<()> {
        let i32_max = i32::MAX as usize;
        if self.batch == 0 {
            return Err(Error::Shape("the batch is empty (B = 0)".into()));
        }
        if self.max_draft == 0 {
            return Err(Error::EmptyDraft);
        }
        if self.vocab == 0 {
            return Err(Error::Shape("the vocabulary is empty (V = 0)".into()));
        }
        if self.vocab > MAX_VOCAB {
            return Err(Error::TooLarge(format!(
                "V = {} passes the largest vocabulary the kernels take, MAX_VOCAB = {MAX_VOCAB} \
                 (2^30: their 32-bit row loop counters must not wrap)",
                self.vocab
            )));
        }
        if self.batch > i32_max {
            return Err(Error::TooLarge(format!(
                "B = {} must be at most {i32_max}",
                self.batch
            )));
        }
        if self.max_draft >= MAX_NOISE_ROWS {
            return Err(Error::TooLarge(format!(
                "n = {}; at most {} draft tokens are supported",
                self.max_draft,
                MAX_NOISE_ROWS - 1
            )));
        }
        let blocks = (2 * self.max_draft + 1).checked_mul(self.batch);
        if blocks.is_none_or(|b| b > i32_max) {
            return Err(Error::TooLarge(format!(
                "B * (2n + 1) = {} * {} blocks passes {i32_max}",
                self.batch,
                2 * self.max_draft + 1
            )));
        }
        for (what, stride) in [
            ("target_row_stride", self.target_row_stride),
            ("draft_row_stride", self.draft_row_stride),
        ] {
            if stride < self.vocab {
                return Err(Error::Shape(format!(
                    "{what} = {stride} is smaller than V = {}",
                    self.vocab
                )));
            }
        }
        let n = self.max_draft;
        for (what, rows, bs, rs) in [
            (
                "target",
                n + 1,
                self.target_batch_stride,
                self.target_row_stride,
            ),
            ("draft", n, self.draft_batch_stride, self.draft_row_stride),
        ] {
            if extent(self.batch, rows, self.vocab, bs, rs).is_none() {
                return Err(Error::TooLarge(format!(
                    "the {what} logits span more than 2^63 elements"
                )));
            }
        }
        Ok(())
    }

    /// Null and misaligned pointers.
    fn check_pointers(&self) -> Result<()> {
        let elem = self.dtype.size();
        let pointers: [(&'static str, u64, usize); 11] = [
            ("target", self.target, elem),
            ("draft", self.draft, elem),
            ("draft_tokens", self.draft_tokens, 4),
            ("draft_lens", self.draft_lens, 4),
            ("temperatures", self.temperatures, 4),
            ("seeds", self.seeds, 8),
            ("offsets", self.offsets, 8),
            ("out_tokens", self.out_tokens, 4),
            ("out_num_emitted", self.out_num_emitted, 4),
            ("out_num_accepted", self.out_num_accepted, 4),
            ("out_status", self.out_status, 4),
        ];
        for (what, ptr, align) in pointers {
            if ptr == 0 {
                return Err(Error::NullPointer(what));
            }
            if ptr % align as u64 != 0 {
                return Err(Error::Misaligned { what, align });
            }
        }
        Ok(())
    }
}

/// Per-request truncation of a verification call (top-k, top-p, min-p; DESIGN.md, "Sampling
/// parameters"), as raw device pointers to `[batch]` arrays: i32 for the top-k arrays, f32 for
/// the others. A null pointer leaves that parameter off for every request (top-k 0, top-p 1,
/// min-p 0); [`RawTruncationArgs::OFF`] leaves all off. The values are checked by the kernels
/// per request ([`crate::cuda::RequestStatus::BadTruncation`]), greedy requests included,
/// which otherwise ignore truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawTruncationArgs {
    /// The target's top-k per request (0 = off).
    pub target_top_k: u64,
    /// The target's top-p per request (1 = off).
    pub target_top_p: u64,
    /// The target's min-p per request (0 = off).
    pub target_min_p: u64,
    /// The draft's top-k per request: the truncation the draft tokens were drawn under.
    pub draft_top_k: u64,
    /// The draft's top-p per request.
    pub draft_top_p: u64,
    /// The draft's min-p per request.
    pub draft_min_p: u64,
}

impl RawTruncationArgs {
    /// No truncation for any request.
    pub const OFF: RawTruncationArgs = RawTruncationArgs {
        target_top_k: 0,
        target_top_p: 0,
        target_min_p: 0,
        draft_top_k: 0,
        draft_top_p: 0,
        draft_min_p: 0,
    };

    /// Whether every array is null: a call with these launches nothing for truncation.
    pub fn is_off(&self) -> bool {
        *self == RawTruncationArgs::OFF
    }

    /// The arrays' alignment (4 bytes; null is allowed).
    pub fn check(&self) -> Result<()> {
        for (what, ptr) in [
            ("target_top_k", self.target_top_k),
            ("target_top_p", self.target_top_p),
            ("target_min_p", self.target_min_p),
            ("draft_top_k", self.draft_top_k),
            ("draft_top_p", self.draft_top_p),
            ("draft_min_p", self.draft_min_p),
        ] {
            if ptr % 4 != 0 {
                return Err(Error::Misaligned { what, align: 4 });
            }
        }
        Ok(())
    }
}
