//! Which form the decide step takes (kernels/verify.cuh, `ResidualForm`): how a call reads the
//! rows its outcome needs a second time, and in how many launches.

use super::args::CallShape;
use crate::method::Method;

/// How the decide step reads the rows that draw a request's outcome after the row statistics
/// (ASpS's residual rows, SpS's one rejected row, the bonus row). Every form follows one noise
/// scheme (src/rng/noise.rs) and gives the same tokens, except on float near-ties (a row's
/// residual mass is summed over its parts in one form, whole in another); they differ in what
/// they read, how many blocks do it, and how many launches the call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidualForm {
    /// A decide launch reads every row the request may need, at once, each in as many parts
    /// (one block each) as the row launch: ASpS reads the bonus row after a full accept, else
    /// every residual row whose stop test passes its bound (rows below the outcome included).
    /// Few dependent steps and many blocks: the form for batches too small to fill the device.
    Parallel,
    /// A decide launch of one block per request, walking down from the top: the bonus row after
    /// a full accept, else ASpS's residual rows from the last down to the one that stops the
    /// descent, skipping rows whose stop test fails its bound. Reads only what the outcome
    /// needs, with one block per request: the form for batches that fill the device.
    Lazy,
    /// One launch: the row launch's last block of each request to finish walks it as the lazy
    /// form does. No second launch and fewer dependent steps, but one block per request for the
    /// second reads and the decide step's registers for the row pass: the form for the smallest
    /// greedy calls. Not for sampling calls with truncation arrays (their kept sets need the
    /// truncating row kernel): fixing it for one is an [`crate::Error::InvalidArgument`]; a
    /// greedy call ignores truncation and takes it with or without.
    Fused,
}

impl ResidualForm {
    /// Every form.
    pub const ALL: [ResidualForm; 3] = [
        ResidualForm::Parallel,
        ResidualForm::Lazy,
        ResidualForm::Fused,
    ];

    /// The kernels' code (kernels/verify.cuh, `ResidualForm`).
    pub(crate) fn code(self) -> i32 {
        match self {
            ResidualForm::Parallel => 0,
            ResidualForm::Lazy => 1,
            ResidualForm::Fused => 2,
        }
    }
}

/// The form a call of `shape` takes on a device of `sms` SMs, by the time model of docs/design.md:
/// the fused form for greedy calls of at most one row per SM (truncation arrays or not: greedy
/// verification ignores truncation, and the fused launch's deciding block still checks its
/// parameters), which read no row again, and whose time is mostly the second launch and its
/// dependent steps (at B = 1, n = 4, V = 32000 the model gives 9.6 us fused against 13.7 us in two
/// launches; at B = 8, n = 4, 12.4 against 14.9). A sampling call's second reads would run in one
/// block per request: SpS gains a microsecond at B = 1 and loses three at B = 8, ASpS, whose walk
/// may read several rows, loses at both (26.6 against 17.8 us at B = 1). Else from `batch >= sms`
/// the lazy form, whose one block per request fills the device and reads no more than the parallel
/// form (usually less: not the rows below the outcome); below, the parallel form, whose parts
/// spread every row over the device.
pub(crate) fn model_form(sms: usize, shape: &CallShape) -> ResidualForm {
    let rows = shape.batch.saturating_mul(2 * shape.max_draft + 1);
    if rows <= sms && shape.method == Method::Greedy {
        ResidualForm::Fused
    } else if shape.batch >= sms {
        ResidualForm::Lazy
    } else {
        ResidualForm::Parallel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Dtype;

    fn shape(method: Method, batch: usize, max_draft: usize, vocab: usize) -> CallShape {
        CallShape {
            method,
            dtype: Dtype::BF16,
            batch,
            max_draft,
            vocab,
            truncates: false,
        }
    }

    #[test]
    fn the_smallest_calls_fuse_and_batches_that_fill_the_device_walk_lazily() {
        // (method, B, n, V, form), at 132 SMs.
        let cases = [
            (Method::Greedy, 1, 4, 32_000, ResidualForm::Fused),
            (Method::Greedy, 1, 4, 128_256, ResidualForm::Fused),
            (Method::Greedy, 8, 4, 32_000, ResidualForm::Fused),
            // A sampling call's second reads would run in one block per request.
            (Method::Sps, 1, 4, 32_000, ResidualForm::Parallel),
            (Method::Asps, 1, 4, 32_000, ResidualForm::Parallel),
            // 9 rows per request: 15 requests hold 135 rows, more than one per SM.
            (Method::Greedy, 15, 4, 32_000, ResidualForm::Parallel),
            (Method::Asps, 131, 8, 32_000, ResidualForm::Parallel),
            (Method::Asps, 132, 8, 32_000, ResidualForm::Lazy),
            (Method::Greedy, 256, 1, 32_000, ResidualForm::Lazy),
        ];
        for (method, b, n, v, want) in cases {
            assert_eq!(
                model_form(132, &shape(method, b, n, v)),
                want,
                "{method:?} {b} {n} {v}"
            );
        }
        // Truncation arrays: a greedy call still fuses (it ignores them), a sampling call's
        // kept sets need the truncating row kernel.
        for (method, want) in [
            (Method::Greedy, ResidualForm::Fused),
            (Method::Sps, ResidualForm::Parallel),
        ] {
            let truncating = CallShape {
                truncates: true,
                ..shape(method, 1, 4, 32_000)
            };
            assert_eq!(model_form(132, &truncating), want, "{method:?}");
        }
    }
}
