//! The launch plan of a tree call: a pure function from the call's checked shape to the
//! kernels' parameters and grids. [`super::TreeVerifier`] launches what it says; the kernel
//! emulator's tests (tests/emu_tree.rs) run the same plan on the CPU.

use super::args::TreeShape;
use super::params::{AspsTreeParams, AspsTreeWorkspace};
use crate::capi::bindings::AspsTreeVerifyArgs;
use crate::dtype::Dtype;

/// The tree kernels (kernels/tree.cu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKernel {
    /// One block per (request, node, model): the node's target row statistics, kept set and
    /// its children's gathers; the same for the draft rows of sampled children.
    Rows,
    /// One block per request: the checks, the walk, its passes and the race.
    Decide,
}

impl TreeKernel {
    /// Every kernel, in launch order.
    pub const ALL: [TreeKernel; 2] = [TreeKernel::Rows, TreeKernel::Decide];

    /// The kernel's name for logits of `dtype`, e.g. `asps_tree_rows_bf16`.
    pub fn name(self, dtype: Dtype) -> String {
        let stem = match self {
            TreeKernel::Rows => "rows",
            TreeKernel::Decide => "decide",
        };
        format!("asps_tree_{stem}_{}", dtype.kernel_suffix())
    }
}

/// One launch of a tree plan: `grid` blocks of `VERIFY_THREADS` threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLaunch {
    /// The kernel.
    pub kernel: TreeKernel,
    /// Blocks in the grid.
    pub grid: u32,
}

/// A tree call's launches and the parameters both take.
#[derive(Debug, Clone, Copy)]
pub struct TreePlan {
    /// The kernels' parameters: the call and a workspace left null for the caller to fill
    /// with buffers of at least [`TreePlan::cells`] entries ([`build_tree_workspace`]).
    pub params: AspsTreeParams,
    /// The launches, in order: rows, then decide.
    pub launches: [TreeLaunch; 2],
    /// Node cells per workspace buffer: B max_nodes.
    pub cells: usize,
}

/// Plans `args`, whose checks gave `shape`: B max_nodes row blocks for the target's row of
/// every node slot, then as many for the draft's when the call can have draft rows
/// ([`TreeShape::draft_rows`]; blocks with no row to read return at once), then one
/// decide block per request. The check bounds both grids below 2^31.
pub fn tree_plan(args: &AspsTreeVerifyArgs, shape: &TreeShape) -> TreePlan {
    let cells = shape.batch * shape.max_nodes;
    let row_blocks = if shape.draft_rows > 0 {
        2 * cells
    } else {
        cells
    };
    TreePlan {
        params: AspsTreeParams {
            call: *args,
            ws: AspsTreeWorkspace::default(),
        },
        launches: [
            TreeLaunch {
                kernel: TreeKernel::Rows,
                grid: row_blocks as u32,
            },
            TreeLaunch {
                kernel: TreeKernel::Decide,
                grid: shape.batch as u32,
            },
        ],
        cells,
    }
}

/// The buffers of a tree workspace: 13 of `cells` 4-byte entries each, in
/// `AspsTreeWorkspace`'s field order, laid end to end from `base` (the address of
/// [`TREE_WORKSPACE_BUFFERS`] `* cells` entries).
pub fn build_tree_workspace(base: u64, cells: usize) -> AspsTreeWorkspace {
    let at = |k: u64| base + 4 * cells as u64 * k;
    AspsTreeWorkspace {
        t_max: at(0) as *mut f32,
        t_log_norm: at(1) as *mut f32,
        t_arg: at(2) as *mut i32,
        t_flags: at(3) as *mut i32,
        t_theta: at(4) as *mut f32,
        t_trunc_ln: at(5) as *mut f32,
        t_gather: at(6) as *mut f32,
        d_max: at(7) as *mut f32,
        d_log_norm: at(8) as *mut f32,
        d_flags: at(9) as *mut i32,
        d_theta: at(10) as *mut f32,
        d_trunc_ln: at(11) as *mut f32,
        d_gather: at(12) as *mut f32,
    }
}

/// The buffers of [`build_tree_workspace`].
pub const TREE_WORKSPACE_BUFFERS: usize = 13;

// Every field of the workspace is one buffer.
const _: () = assert!(
    std::mem::size_of::<AspsTreeWorkspace>() == TREE_WORKSPACE_BUFFERS * size_of::<*mut f32>()
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::TreeRule;

    /// The draft's row blocks are launched only for calls that can have draft rows.
    #[test]
    fn row_blocks_cover_the_draft_only_when_it_has_rows() {
        for (draft_rows, want) in [(0, 8 * 32), (31, 2 * 8 * 32)] {
            let shape = TreeShape {
                rule: TreeRule::Tv,
                dtype: Dtype::BF16,
                batch: 8,
                max_nodes: 32,
                vocab: 1000,
                draft_rows,
                truncates: false,
            };
            let plan = tree_plan(&AspsTreeVerifyArgs::new(), &shape);
            assert_eq!(plan.launches[0].grid, want, "{draft_rows} draft rows");
            assert_eq!(plan.launches[1].grid, 8);
            assert_eq!(plan.cells, 8 * 32);
        }
    }
}
