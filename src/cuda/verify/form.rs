//! Which form the decide launch takes (kernels/verify.cu, `ResidualForm`): how a call reads
//! the rows its outcome needs a second time.

/// How the decide launch reads the rows that draw a request's outcome after the row statistics
/// (ASpS's residual rows, SpS's one rejected row, the bonus row). Both forms follow one noise
/// scheme (src/rng/noise.rs) and give the same tokens, except on float near-ties (a row's
/// residual mass is summed over its parts in one form, whole in the other); they differ in
/// what they read and how many blocks do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidualForm {
    /// Every row the request may need, at once, each in as many parts (one block each) as the
    /// row launch: ASpS reads the bonus row after a full accept, else every residual row whose
    /// stop test passes its bound (rows below the outcome included). Few dependent steps and
    /// many blocks: the form for batches too small to fill the device.
    Parallel,
    /// One block per request, walking down from the top: the bonus row after a full accept,
    /// else ASpS's residual rows from the last down to the one that stops the descent, skipping
    /// rows whose stop test fails its bound. Reads only what the outcome needs, with one block
    /// per request: the form for batches that fill the device.
    Lazy,
}

impl ResidualForm {
    /// The kernels' code (kernels/verify.cuh, `ResidualForm`).
    pub(crate) fn code(self) -> i32 {
        match self {
            ResidualForm::Parallel => 0,
            ResidualForm::Lazy => 1,
        }
    }
}

/// The form a call of `batch` requests takes on a device of `sms` SMs, by the performance
/// model of docs/design.md (time = dependent launches x latency + bytes / bandwidth, with the
/// bandwidth reached only by a launch that gives every SM a block): from `batch >= sms` the lazy
/// form's one block per request fills the device and reads no more than the parallel form
/// (usually less: not the rows below the outcome), so it is chosen; below, its blocks would
/// leave SMs idle while each walks whole rows alone, and the parallel form, whose parts spread
/// every row over the device, is chosen.
pub(crate) fn model_form(sms: usize, batch: usize) -> ResidualForm {
    if batch >= sms {
        ResidualForm::Lazy
    } else {
        ResidualForm::Parallel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_that_fill_the_device_walk_lazily() {
        assert_eq!(model_form(132, 1), ResidualForm::Parallel);
        assert_eq!(model_form(132, 131), ResidualForm::Parallel);
        assert_eq!(model_form(132, 132), ResidualForm::Lazy);
        assert_eq!(model_form(132, 256), ResidualForm::Lazy);
    }
}
