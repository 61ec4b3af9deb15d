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

/// The verification kernels (kernels/verify.cu): rows, truncate and decide in launch order, and
/// the fused form's one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyKernel {
    /// Each row's softmax statistics and gathers, in parts.
    Rows,
    /// Each truncating row's kept set (only when the call gives truncation arrays).
    Truncate,
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
        VerifyKernel::Truncate,
        VerifyKernel::Decide,
        VerifyKernel::Fused,
    ];

    /// The kernel's name for logits of `dtype`, e.g. `asps_verify_rows_bf16`.
    pub fn name(self, dtype: Dtype) -> String {
        let stem = match self {
            VerifyKernel::Rows => "rows",
            VerifyKernel::Truncate => "truncate",
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
    /// The launches, in order: rows, truncate (only with truncation), decide; or the fused
    /// form's one launch.
    pub launches: [Option<Launch>; 3],
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
    if form == ResidualForm::Fused && shape.truncates {
        return Err(Error::InvalidArgument(
            "the fused form takes no truncation arrays (their kept sets need the truncate \
             launch): use the parallel or lazy form"
                .into(),
        ));
    }
    let (split, chunk) = match (options.parts, form) {
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
    if form == ResidualForm::Fused {
        let fused = Launch {
            kernel: VerifyKernel::Fused,
            grid: row_blocks,
        };
        return Ok(LaunchPlan {
            params,
            launches: [Some(fused), None, None],
            row_cells,
            part_cells,
        });
    }
    let rows = Launch {
        kernel: VerifyKernel::Rows,
        grid: row_blocks,
    };
    // One block per logits row, whole rows, when any request may truncate.
    let truncate = shape
        .truncates
        .then(|| -> Result<Launch> {
            Ok(Launch {
                kernel: VerifyKernel::Truncate,
                grid: grid(b * rows_per_request)?,
            })
        })
        .transpose()?;
    // One block per part of each target row, or (lazy) one per request.
    let decide = Launch {
        kernel: VerifyKernel::Decide,
        grid: if form == ResidualForm::Lazy {
            grid(b)?
        } else {
            grid(b * (n + 1) * split)?
        },
    };
    Ok(LaunchPlan {
        params,
        launches: [Some(rows), truncate, Some(decide)],
        row_cells,
        part_cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::Method;

    /// The fused form is one launch, and refuses calls with truncation arrays, whose kept sets
    /// need the truncate launch, rather than take another form silently.
    #[test]
    fn the_fused_form_is_one_launch_and_refuses_truncation_arrays() {
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
        assert!(matches!(
            plan(&args, &truncating, &options),
            Err(Error::InvalidArgument(_))
        ));
    }
}
