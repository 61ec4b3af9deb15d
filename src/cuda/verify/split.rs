//! How many parts each logits row is read in: enough blocks in the launch that reads the logits
//! for about two per SM, each part at least [`MIN_PART`] elements, at most
//! [`MAX_SPLIT`] parts (kernels/launch_config.h). A large batch gives every SM work with whole
//! rows (one part); a small one needs rows split, or most of the device idles.

use crate::cuda::launch_config::MAX_SPLIT;

/// The fewest elements a part of a split row holds (below it a block's fixed costs dominate).
pub(crate) const MIN_PART: usize = 1024;

/// Parts are multiples of 16 elements, so every part starts where its row's 16-byte phase does
/// (vector loads) and on a tile boundary (the races' noise is drawn per tile of 16 tokens:
/// src/rng/noise.rs, "Races").
const PART_ALIGN: usize = 16;

/// (split, chunk) for a call of `batch` requests of `max_draft` tokens over `vocab` on a device
/// of `sms` SMs: every part holds `chunk` elements (a multiple of 16, at least [`MIN_PART`] when
/// the row is split) but the last, which holds at least one; `split` parts cover the row.
pub(crate) fn split_rows(
    sms: usize,
    batch: usize,
    max_draft: usize,
    vocab: usize,
) -> (usize, usize) {
    let rows = batch * (2 * max_draft + 1);
    bounded_parts(vocab, (2 * sms).div_ceil(rows))
}

/// (split, chunk) for a call in the fused form (src/cuda/verify/form.rs), whose blocks carry the
/// decide step's registers, one block per SM: at most one wave of blocks (as many parts as
/// leave the launch no larger than `sms` blocks, each part at least [`MIN_PART`] elements, at
/// most [`MAX_SPLIT`] parts).
pub(crate) fn split_rows_fused(
    sms: usize,
    batch: usize,
    max_draft: usize,
    vocab: usize,
) -> (usize, usize) {
    let rows = batch * (2 * max_draft + 1);
    bounded_parts(vocab, sms / rows.max(1))
}

/// [`row_parts`] for about `wanted` parts, held to at most [`MAX_SPLIT`] parts of at least
/// [`MIN_PART`] elements, and at least one.
fn bounded_parts(vocab: usize, wanted: usize) -> (usize, usize) {
    let wanted = wanted.min(MAX_SPLIT as usize).min(vocab / MIN_PART).max(1);
    row_parts(vocab, wanted)
}

/// (split, chunk) for rows of `vocab` elements read in about `wanted` (>= 1) parts: parts of
/// `chunk` elements, a multiple of 16, and as many as that leaves none empty (at most
/// `wanted`).
pub(crate) fn row_parts(vocab: usize, wanted: usize) -> (usize, usize) {
    let chunk = vocab.div_ceil(wanted).next_multiple_of(PART_ALIGN);
    (vocab.div_ceil(chunk), chunk)
}

/// Part cells a verifier of `max_batch` requests of up to `max_draft` tokens needs: a call
/// holds `batch * (n + 1) * split` of them, and split <= 2 sms / (batch (2n + 1)) + 1, so that
/// is at most `batch * (n + 1) + 2 sms`.
pub(crate) fn part_capacity(sms: usize, max_batch: usize, max_draft: usize) -> usize {
    max_batch * (max_draft + 1) + 2 * sms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_row_and_fit_the_workspace() {
        for sms in [1, 8, 132, 170] {
            for batch in [1, 2, 3, 7, 8, 64, 256] {
                for n in [1, 2, 4, 8, 16, 64] {
                    for vocab in [1, 15, 16, 17, 1000, 1025, 4099, 32000, 128_256, 151_936] {
                        for (split, chunk) in [
                            split_rows(sms, batch, n, vocab),
                            split_rows_fused(sms, batch, n, vocab),
                        ] {
                            assert!((1..=MAX_SPLIT as usize).contains(&split));
                            assert_eq!(chunk % PART_ALIGN, 0);
                            // Every part holds at least one element, and together they hold V.
                            assert!((split - 1) * chunk < vocab && split * chunk >= vocab);
                            assert!(split == 1 || chunk >= MIN_PART);
                            assert!(batch * (n + 1) * split <= part_capacity(sms, batch, n));
                        }
                    }
                }
            }
        }
    }

    /// The latency target's shape on an H100 (132 SMs): the row launch has at least two blocks
    /// per SM; a large batch keeps whole rows.
    #[test]
    fn small_batches_are_split_large_ones_are_not() {
        let (split, _) = split_rows(132, 1, 4, 32000);
        assert!(9 * split >= 264, "{split}");
        assert_eq!(split_rows(132, 64, 8, 128_256).0, 1);
        assert_eq!(split_rows(132, 1, 4, 1000).0, 1);
        // The fused form: one wave of one block per SM.
        let (split, _) = split_rows_fused(132, 1, 4, 32000);
        assert!(9 * split <= 132 && 9 * (split + 1) > 132, "{split}");
    }
}
