//! The one description of a tree verification call, [`AspsTreeVerifyArgs`] (include/asps.h),
//! and every check the host can make of it before launching: the same discipline as the
//! chain's `AspsVerifyArgs` (src/cuda/verify/args.rs), whose checks of arrays it shares
//! (src/cuda/call_args.rs).

use std::mem::{offset_of, size_of};

use crate::capi::bindings::{
    ASPS_SIBLINGS_DETERMINISTIC, ASPS_SIBLINGS_WITH_REPLACEMENT, ASPS_SIBLINGS_WITHOUT_REPLACEMENT,
    ASPS_TREE_MAX_NODES, ASPS_TREE_RRS, ASPS_TREE_TRAVERSAL, AspsSampling, AspsTreeVerifyArgs,
};
use crate::cuda::MAX_VOCAB;
use crate::cuda::call_args::{
    Array, check_arrays, check_logits_layout, dtype_of, non_negative, read_sized, sampling_arrays,
    truncates,
};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::reference::{SiblingLaw, TreeRule};

/// The most nodes a request's tree may have, its root included (`ASPS_TREE_MAX_NODES`).
pub const TREE_MAX_NODES: usize = ASPS_TREE_MAX_NODES as usize;

/// The smallest `struct_size` a caller may give (`ASPS_TREE_VERIFY_ARGS_MIN_SIZE`): every
/// field up to and including `sampling.temperature`.
pub const TREE_VERIFY_ARGS_MIN_SIZE: usize =
    offset_of!(AspsTreeVerifyArgs, sampling) + offset_of!(AspsSampling, target);

/// A tree call's shape, converted once from [`AspsTreeVerifyArgs`] by its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeShape {
    /// The rule for children drawn from draft rows.
    pub rule: TreeRule,
    /// The element type of both logits buffers.
    pub dtype: Dtype,
    /// B, the number of requests.
    pub batch: usize,
    /// The node slots of each request.
    pub max_nodes: usize,
    /// V, the vocabulary size.
    pub vocab: usize,
    /// Draft rows per request the kernels may read: `max_nodes - 1` (the last node has no
    /// child), 0 when the call gives no draft logits.
    pub draft_rows: usize,
    /// Whether any truncation array is given.
    pub truncates: bool,
}

impl AspsTreeVerifyArgs {
    /// Every field zero (every pointer null, every option off, the rule Traversal
    /// Verification) but `struct_size`, which is this header's size.
    pub const fn new() -> Self {
        // SAFETY: every field is an integer or a raw pointer, for which all-zero bytes are a
        // valid value (0, null).
        let mut args: AspsTreeVerifyArgs = unsafe { std::mem::zeroed() };
        args.struct_size = size_of::<AspsTreeVerifyArgs>() as u32;
        args
    }

    /// The rule `rule`, as the `rule` field holds it.
    pub const fn rule_code(rule: TreeRule) -> i32 {
        (match rule {
            TreeRule::Tv => ASPS_TREE_TRAVERSAL,
            TreeRule::Rrs => ASPS_TREE_RRS,
        }) as i32
    }

    /// The sibling law `law`, as the `sibling_laws` array holds it.
    pub const fn sibling_law_code(law: SiblingLaw) -> i32 {
        (match law {
            SiblingLaw::WithoutReplacement => ASPS_SIBLINGS_WITHOUT_REPLACEMENT,
            SiblingLaw::WithReplacement => ASPS_SIBLINGS_WITH_REPLACEMENT,
            SiblingLaw::Deterministic => ASPS_SIBLINGS_DETERMINISTIC,
        }) as i32
    }

    /// Every check that needs no device: `struct_size`, codes, sizes, strides and index
    /// ranges; null, misaligned and overlapping arrays. Values in device memory (trees, sibling
    /// laws, temperatures, truncations, logits) are checked by the kernels and reported per
    /// request. Returns the call's shape.
    pub fn check(&self) -> Result<TreeShape> {
        let shape = self.check_shape()?;
        check_arrays(&self.arrays(&shape))?;
        Ok(shape)
    }

    fn check_shape(&self) -> Result<TreeShape> {
        if self.struct_size as usize != size_of::<AspsTreeVerifyArgs>() {
            return Err(Error::InvalidArgument(format!(
                "struct_size = {}, but an AspsTreeVerifyArgs is {} bytes (build it from \
                 AspsTreeVerifyArgs::new(); C callers' shorter structs are widened by \
                 asps_tree_verify)",
                self.struct_size,
                size_of::<AspsTreeVerifyArgs>()
            )));
        }
        let rule = match self.rule as u32 {
            ASPS_TREE_TRAVERSAL => TreeRule::Tv,
            ASPS_TREE_RRS => TreeRule::Rrs,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "tree rule code {}",
                    self.rule
                )));
            }
        };
        let dtype = dtype_of(self.dtype)?;
        let batch = non_negative("batch", self.batch)?;
        let max_nodes = non_negative("max_nodes", self.max_nodes)?;
        let vocab = non_negative("vocab", self.vocab)?;
        if batch == 0 {
            return Err(Error::Shape("the batch is empty (B = 0)".into()));
        }
        if max_nodes == 0 {
            return Err(Error::Shape(
                "max_nodes = 0: a tree holds at least its root".into(),
            ));
        }
        if max_nodes > TREE_MAX_NODES {
            return Err(Error::TooLarge(format!(
                "max_nodes = {max_nodes}; a tree holds at most {TREE_MAX_NODES} nodes"
            )));
        }
        if vocab == 0 {
            return Err(Error::Shape("the vocabulary is empty (V = 0)".into()));
        }
        if vocab > MAX_VOCAB {
            return Err(Error::TooLarge(format!(
                "V = {vocab} passes the largest vocabulary the kernels take, MAX_VOCAB = \
                 {MAX_VOCAB}"
            )));
        }
        // The row launch's grid: one block per node and model.
        let i32_max = i32::MAX as usize;
        if batch.checked_mul(2 * max_nodes).is_none_or(|b| b > i32_max) {
            return Err(Error::TooLarge(format!(
                "B * 2 max_nodes = {batch} * {} blocks passes {i32_max}",
                2 * max_nodes
            )));
        }
        let (bs, ns) = (self.target_batch_stride, self.target_node_stride);
        check_logits_layout("target", "node", (batch, max_nodes, vocab), dtype, bs, ns)?;
        let draft_rows = if self.draft_logits.is_null() {
            0
        } else {
            max_nodes - 1
        };
        if draft_rows > 0 {
            let (bs, ns) = (self.draft_batch_stride, self.draft_node_stride);
            check_logits_layout("draft", "node", (batch, draft_rows, vocab), dtype, bs, ns)?;
        }
        Ok(TreeShape {
            rule,
            dtype,
            batch,
            max_nodes,
            vocab,
            draft_rows,
            truncates: truncates(&self.sampling),
        })
    }

    /// Every array of the call with the bytes it spans, for a shape that passed
    /// [`AspsTreeVerifyArgs::check_shape`].
    fn arrays(&self, shape: &TreeShape) -> Vec<Array> {
        let (b, nodes) = (shape.batch, shape.max_nodes);
        let elem = shape.dtype.size();
        let logits = |rows: usize, bs: i64, ns: i64| {
            crate::cuda::call_args::extent(b, rows, shape.vocab, bs as usize, ns as usize)
                .expect("checked by check_shape")
                * elem
        };
        let (read, write) = (Array::read, Array::write);
        let draft_bytes = match shape.draft_rows {
            0 => 0,
            rows => logits(rows, self.draft_batch_stride, self.draft_node_stride),
        };
        let mut arrays = vec![
            read(
                "target_logits",
                self.target_logits as u64,
                elem,
                logits(nodes, self.target_batch_stride, self.target_node_stride),
            ),
            Array {
                required: false,
                ..read("draft_logits", self.draft_logits as u64, elem, draft_bytes)
            },
            read("num_nodes", self.num_nodes as u64, 4, 4 * b),
            read("parents", self.parents as u64, 4, 4 * b * nodes),
            read("tokens", self.tokens as u64, 4, 4 * b * nodes),
            read("sibling_laws", self.sibling_laws as u64, 4, 4 * b),
            read("seeds", self.seeds as u64, 8, 8 * b),
            write("offsets", self.offsets as u64, 8, 8 * b),
            write("out_node", self.out_node as u64, 4, 4 * b),
            write("out_token", self.out_token as u64, 4, 4 * b),
            write("out_num_emitted", self.out_num_emitted as u64, 4, 4 * b),
            write("out_status", self.out_status as u64, 4, 4 * b),
        ];
        arrays.extend(sampling_arrays(&self.sampling, b));
        arrays
    }

    /// Reads a caller's struct of `struct_size` bytes at `args` into a whole one, as the C
    /// ABI reads an `AspsVerifyArgs` (src/cuda/call_args.rs, `read_sized`).
    ///
    /// # Safety
    ///
    /// `args` is null or points to at least 4 readable bytes holding `struct_size`, followed by
    /// the rest of `struct_size` readable bytes.
    pub(crate) unsafe fn read_sized(args: *const AspsTreeVerifyArgs) -> Result<Self> {
        // SAFETY: AspsTreeVerifyArgs is integers and raw pointers, struct_size first; the
        // caller's contract on `args` is read_sized's.
        unsafe {
            read_sized(
                args,
                AspsTreeVerifyArgs::new(),
                TREE_VERIFY_ARGS_MIN_SIZE,
                "AspsTreeVerifyArgs",
            )
        }
    }
}

impl Default for AspsTreeVerifyArgs {
    /// [`AspsTreeVerifyArgs::new`].
    fn default() -> Self {
        AspsTreeVerifyArgs::new()
    }
}
