//! Drawing one tree step's outcome from a [`NoiseKey`], by the scheme of the tree kernels
//! (kernels/tree.cu; the counter layout: [`crate::rng`]; the rules: docs/design.md, "Draft trees").
//!
//! * TV: the stages in post-order (a node's children's subtrees in draw order, then the node
//!   itself); the first stage that accepts ends the walk. Stage u accepts when
//!   `U(TreeNode, u) < w_u`, `w_u` the node's state once all its children were rejected; the
//!   root's stage always accepts (it is reached only when everything else was rejected, and
//!   then accepts with probability 1). The accepted node emits the winner of the race over
//!   `max(0, p_u - lambda_u q_u)` in the stream `(TreeEmit, u)`. Each stage's test has its own
//!   uniform, so the first success in post-order has the law's probability.
//! * RRS: from the root down; child c of the current node is accepted when
//!   `U(TreeNode, c) < min(1, p(x_c) / M(x_c))` (p the node's current law, M the sibling law),
//!   and the walk descends into it; otherwise p becomes `norm(max(0, p - M))`. A node whose
//!   children are all rejected, or a leaf, emits the winner of the race over p in
//!   `(TreeEmit, u)`. Deterministic children run RRS under either rule (their laws are equal).
//! * Greedy (target temperature 0): no noise; down the children holding the row's argmax.
//!
//! A node's uniform and race depend on its index in the tree alone, never on the request's
//! place in a batch.

use super::sampling::Sampling;
use super::tree::{
    SiblingLaw, Tree, TreeOutcome, TreeRule, TvState, Walk, greedy_rows, greedy_walk, tree_rows,
};
use crate::dtype::Logit;
use crate::error::Result;
use crate::rng::NoiseKey;

/// Draws one step of `rule` over `tree` under `key`, from the rows [`super::tree_law`] takes
/// (the same checks). Errors with [`crate::Error::NoOutcome`] when the emitting node's law has
/// rounded to mass 0.
pub fn tree_sample(
    rule: TreeRule,
    tree: &Tree,
    target: &[Vec<f64>],
    draft: &[Option<Vec<f64>>],
    sibling: SiblingLaw,
    key: NoiseKey,
) -> Result<TreeOutcome> {
    let walk = Walk::checked(tree, target, draft, sibling)?;
    if walk.runs_rrs(rule) {
        walk.sample_rrs(0, key)
    } else {
        walk.sample_tv(0, TvState::ROOT, key)
            .expect("the root's stage always accepts")
    }
}

/// [`tree_sample`] from logits with the request's `sampling`, as
/// [`super::tree_law_from_logits`] reads them (temperature 0: greedy, no noise).
pub fn tree_sample_from_logits<T: Logit, R: AsRef<[T]>>(
    rule: TreeRule,
    tree: &Tree,
    target: &[R],
    draft: &[Option<R>],
    sibling: SiblingLaw,
    sampling: &Sampling,
    key: NoiseKey,
) -> Result<TreeOutcome> {
    sampling.check()?;
    if sampling.temperature == 0.0 {
        let rows = greedy_rows(tree, target)?;
        return greedy_walk(tree, &rows);
    }
    let (target_probs, draft_probs) = tree_rows(target, draft, sibling, sampling)?;
    tree_sample(rule, tree, &target_probs, &draft_probs, sibling, key)
}
