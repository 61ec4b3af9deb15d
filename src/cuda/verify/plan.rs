//! The launch plan of a verification call: a pure function from the call's checked shape and
//! the device to the kernels' parameters and grids. [`super::Verifier`] launches what it says;
//! the kernel emulator's tests (tests/emu_verify.rs) run the same plan on the CPU.

use super::args::CallShape;
use super::form::{ResidualForm, model_form};
use super::params::{AspsVerifyLayout, AspsVerifyParams};
use super::split::{row_parts, split_rows, split_rows_fused};
use crate::capi::bindings::AspsVerifyArgs;
use crate::cuda::launch_config::MAX_SPLIT;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::method::Method;

/// The verification kernels (kernels/verify.cu): rows (or rows with truncation) then decide, or
/// the fused form's one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyKernel {
    /// Each row's softmax statistics and gathers, in parts.
    Rows,
    /// The same over whole rows, and each truncating row's kept set: the row kernel of ASpS and
    /// SpS calls that give truncation arrays.
    RowsTruncating,
    /// The plan, the second passes and the outcome of each request.
    Decide,
    /// The fused form's one launch: rows, then each request's kept sets, plan, second passes
    /// and outcome in its last block.
    Fused,
}

impl VerifyKernel {
    /// Every kernel.
    pub const ALL: [VerifyKernel; 4] = [
        VerifyKernel::Rows,
        VerifyKernel::RowsTruncating,
        VerifyKernel::Decide,
        VerifyKernel::Fused,
    ];

    /// The kernel's name for logits of `dtype`, e.g. `asps_verify_rows_bf16`.
    pub fn name(self, dtype: Dtype) -> String {
        let stem = match self {
            VerifyKernel::Rows => "rows",
            VerifyKernel::RowsTruncating => "rows_truncating",
            VerifyKernel::Decide => "decide",
            VerifyKernel::Fused => "fused",
        };
        format!("asps_verify_{stem}_{}", dtype.kernel_suffix())
    }
}

/// One launch of a plan: `grid` blocks of `VERIFY_THREADS` threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// The kernel.
    pub kernel: VerifyKernel,
    /// Blocks in the grid.
    pub grid: u32,
}

/// What the plan depends on besides the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// The device's SM count, which sizes the row split and picks the decide step's form.
    pub sms: usize,
    /// The decide step's form; `None`: the performance model's choice (src/cuda/verify/form.rs).
    pub form: Option<ResidualForm>,
    /// About how many parts to read each row in (at most `MAX_SPLIT`); `None`: enough for
    /// every SM (src/cuda/verify/split.rs). A fixed number is for the emulator's tests, which
    /// try every split on small rows.
    pub parts: Option<usize>,
}

/// A call's launches and the parameters every one of them takes.
#[derive(Debug, Clone, Copy)]
pub struct LaunchPlan {
    /// The kernels' parameters: the call, the layout, and a workspace left null for the caller
    /// to fill with buffers of at least [`LaunchPlan::row_cells`] and
    /// [`LaunchPlan::part_cells`] entries.
    pub params: AspsVerifyParams,
    /// The launches, in order: rows (or rows with truncation), decide; or the fused form's
    /// one launch.
    pub launches: [Option<Launch>; 2],
    /// Row cells the call uses: B (n + 1).
    pub row_cells: usize,
    /// Part cells the call uses: B (n + 1) split.
    pub part_cells: usize,
}

impl LaunchPlan {
    /// The launches, in order.
    pub fn launches(&self) -> impl Iterator<Item = Launch> + '_ {
        self.launches.iter().flatten().copied()
    }
}

/// Plans `args`, whose checks gave `shape`: the decide step's form, the row split, every
/// launch's grid, and the parameters (with a null workspace).
pub fn plan(args: &AspsVerifyArgs, shape: &CallShape, options: &PlanOptions) -> Result<LaunchPlan> {
    let (b, n, v) = (shape.batch, shape.max_draft, shape.vocab);
    let form = options
        .form
        .unwrap_or_else(|| model_form(options.sms, shape));
    // A truncating row's block finds its kept set from the whole row (kernels/truncate.cuh).
    // Greedy verification ignores truncation (the deciding block still checks its parameters).
    let truncating = shape.truncates && shape.method != Method::Greedy;
    if form == ResidualForm::Fused && truncating {
        return Err(Error::InvalidArgument(
            "the fused form takes no truncation arrays in a sampling call (their kept sets \
             need the truncating row kernel): use the parallel or lazy form"
                .into(),
        ));
    }
    if truncating && options.parts.is_some_and(|parts| parts > 1) {
        return Err(Error::InvalidArgument(
            "a call with truncation arrays reads each row whole (1 part): its kept sets are \
             found by the row's one block"
                .into(),
        ));
    }
    let (split, chunk) = match (options.parts, form) {
        _ if truncating => row_parts(v, 1),
        (Some(parts), _) => row_parts(v, parts.clamp(1, MAX_SPLIT as usize)),
        (None, ResidualForm::Fused) => split_rows_fused(options.sms, b, n, v),
        (None, _) => split_rows(options.sms, b, n, v),
    };
    let grid = |cells: usize| {
        u32::try_from(cells)
            .ok()
            .filter(|&g| g <= i32::MAX as u32)
            .ok_or_else(|| Error::TooLarge(format!("a launch of {cells} blocks")))
    };
    let rows_per_request = 2 * n + 1;
    let row_blocks = grid(b * rows_per_request * split)?;
    let params = AspsVerifyParams {
        call: *args,
        layout: AspsVerifyLayout {
            split: split as i32,
            chunk: chunk as i32,
            form: form.code(),
        },
        ..AspsVerifyParams::default()
    };
    let (row_cells, part_cells) = (b * (n + 1), b * (n + 1) * split);
    let first = Launch {
        kernel: match form {
            ResidualForm::Fused => VerifyKernel::Fused,
            _ if truncating => VerifyKernel::RowsTruncating,
            _ => VerifyKernel::Rows,
        },
        grid: row_blocks,
    };
    // One block per part of each target row, or (lazy) one per request.
    let decide = match form {
        ResidualForm::Fused => None,
        ResidualForm::Lazy => Some(grid(b)?),
        ResidualForm::Parallel => Some(grid(b * (n + 1) * split)?),
    }
    .map(|grid| Launch {
        kernel: VerifyKernel::Decide,
        grid,
    });
    Ok(LaunchPlan {
        params,
        launches: [Some(first), decide],
        row_cells,
        part_cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused form is one launch, and refuses sampling calls with truncation arrays, whose
    /// kept sets need the truncating row kernel, rather than take another form silently; such a
    /// call is two launches over whole rows, and refuses a split; a greedy one, which ignores
    /// truncation, is planned as without (fused, or rows read in parts).
    #[test]
    fn the_fused_form_is_one_launch_and_refuses_truncating_sampling_calls() {
        let shape = CallShape {
            method: Method::Greedy,
            dtype: Dtype::BF16,
            batch: 1,
            max_draft: 4,
            vocab: 32_000,
            truncates: false,
        };
        let options = PlanOptions {
            sms: 132,
            form: Some(ResidualForm::Fused),
            parts: None,
        };
        let args = AspsVerifyArgs::new();
        let one = plan(&args, &shape, &options).unwrap();
        let kernels: Vec<VerifyKernel> = one.launches().map(|l| l.kernel).collect();
        assert_eq!(kernels, [VerifyKernel::Fused]);
        let truncating = CallShape {
            truncates: true,
            ..shape
        };
        let greedy = plan(&args, &truncating, &options).unwrap();
        let kernels: Vec<VerifyKernel> = greedy.launches().map(|l| l.kernel).collect();
        assert_eq!(kernels, [VerifyKernel::Fused]);
        for method in [Method::Asps, Method::Sps] {
            let sampling = CallShape {
                method,
                ..truncating
            };
            assert!(matches!(
                plan(&args, &sampling, &options),
                Err(Error::InvalidArgument(_))
            ));
        }
        for form in [ResidualForm::Parallel, ResidualForm::Lazy] {
            let options = PlanOptions {
                form: Some(form),
                ..options
            };
            let greedy = plan(&args, &truncating, &options).unwrap();
            assert_eq!(greedy.launches[0].unwrap().kernel, VerifyKernel::Rows);
            assert!(greedy.params.layout.split > 1);
            let truncating = CallShape {
                method: Method::Asps,
                ..truncating
            };
            let two = plan(&args, &truncating, &options).unwrap();
            let kernels: Vec<VerifyKernel> = two.launches().map(|l| l.kernel).collect();
            assert_eq!(
                kernels,
                [VerifyKernel::RowsTruncating, VerifyKernel::Decide]
            );
            assert_eq!(two.params.layout.split, 1);
            assert_eq!(two.launches[0].unwrap().grid, 9);
            let split = PlanOptions {
                parts: Some(2),
                ..options
            };
            assert!(matches!(
                plan(&args, &truncating, &split),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
