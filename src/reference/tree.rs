//! Draft trees (docs/design.md, "Draft trees"): the exact law of one verification step over a
//! tree of drafted tokens, by recursive rejection sampling (RRS) and by Traversal Verification
//! (TV), in f64, from probability rows. The oracle for tree kernels, as [`super::step_law`] is
//! for chains.
//!
//! A tree has N nodes; node 0 is the root (the last committed position), every other node `i`
//! has a parent `parent[i] < i` and a token `token[i]` (the edge from its parent), and the
//! children of a node, in increasing index, are in the order the drafter drew them. Node `u`'s
//! target row `p_u` is the target's law after the path to `u`; an internal node's draft row
//! `q_u` is the law its children were drawn from.

use super::sampling::Sampling;
use super::softmax::{argmax, checked_max};
use super::truncate::truncated_softmax;
use crate::dtype::Logit;
use crate::error::{Error, Model, Result};
use crate::rng::{NoiseKey, Purpose, RaceTiles, StreamLayout};

/// How the drafter drew a node's children from its draft row `q_u`, which is the law the
/// verifier assumes for each child given the earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiblingLaw {
    /// Sequentially without replacement: `q_u` without the earlier siblings' tokens,
    /// renormalised (sequential sampling, Gumbel-top-k in key order).
    WithoutReplacement,
    /// Independent draws from `q_u` (duplicates are separate nodes).
    WithReplacement,
    /// The draft's most probable tokens, not drawn: each child is a point mass. No draft row
    /// is needed; TV's law equals RRS's here.
    Deterministic,
}

/// The verification rule over a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeRule {
    /// Recursive rejection sampling: from the root down, children tried in order.
    Rrs,
    /// Traversal Verification: the tree-wise coupling (bottom-up, post-order).
    Tv,
}

/// A draft tree: `parent[0]` is unused (the root), `token[0]` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Each node's parent, `parent[i] < i` for `i >= 1`.
    pub parent: Vec<usize>,
    /// Each node's token, the edge from its parent.
    pub token: Vec<u32>,
}

impl Tree {
    /// A chain of the draft tokens `x`: node r + 1 is x_r, child of node r.
    pub fn chain(x: &[u32]) -> Tree {
        let mut parent = vec![0];
        let mut token = vec![0];
        for (r, &t) in x.iter().enumerate() {
            parent.push(r);
            token.push(t);
        }
        Tree { parent, token }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether the tree is empty (never for a checked tree: the root is a node).
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The children of node `u`, in draw order.
    pub fn children(&self, u: usize) -> Vec<usize> {
        (u + 1..self.len())
            .filter(|&i| self.parent[i] == u)
            .collect()
    }

    /// The tokens on the path from the root to `u` (empty for the root).
    pub fn path(&self, u: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut v = u;
        while v != 0 {
            out.push(self.token[v]);
            v = self.parent[v];
        }
        out.reverse();
        out
    }

    /// The depth of node `u` (the root's is 0).
    pub fn depth(&self, u: usize) -> usize {
        self.path(u).len()
    }
}

/// One step's outcome over a tree: the accepted node (0: the root, none of the tree kept) and
/// the token that follows it. The emitted tokens are the path to `node`, then `token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeOutcome {
    /// The accepted node.
    pub node: usize,
    /// The token emitted after its path.
    pub token: u32,
}

/// The law of one tree step: `emit[u][v]` = P(the accepted node is u and the next token is v).
/// The emitted tokens are the path to u, then v.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeLaw {
    /// Per node, per token.
    pub emit: Vec<Vec<f64>>,
}

impl TreeLaw {
    /// The total probability (1 for a valid law).
    pub fn total(&self) -> f64 {
        self.emit.iter().flatten().sum()
    }

    /// The expected number of emitted tokens, for `tree`.
    pub fn expected_tokens(&self, tree: &Tree) -> f64 {
        self.emit
            .iter()
            .enumerate()
            .map(|(u, row)| (tree.depth(u) + 1) as f64 * row.iter().sum::<f64>())
            .sum()
    }
}

/// Checks a tree against its rows: parents in order, tokens in range, a draft row for every
/// internal node (unless `Deterministic`), no repeated token among children drawn without
/// replacement, and no child its draft row gives probability 0 (an impossible draft).
fn check(
    tree: &Tree,
    target: &[Vec<f64>],
    draft: &[Option<Vec<f64>>],
    sibling: SiblingLaw,
) -> Result<usize> {
    let n = tree.len();
    let bad = |what: String| Err(Error::InvalidArgument(what));
    if n == 0 || tree.token.len() != n || target.len() != n || draft.len() != n {
        return bad(format!(
            "a tree of {} parents, {} tokens, {} target rows and {} draft rows",
            n,
            tree.token.len(),
            target.len(),
            draft.len()
        ));
    }
    let vocab = target[0].len();
    if vocab == 0 || target.iter().any(|row| row.len() != vocab) {
        return bad("target rows of different or zero lengths".into());
    }
    for i in 1..n {
        if tree.parent[i] >= i {
            return bad(format!(
                "node {i} has parent {} (not before it)",
                tree.parent[i]
            ));
        }
        if tree.token[i] as usize >= vocab {
            return bad(format!("node {i} has token {} of {vocab}", tree.token[i]));
        }
    }
    for (u, row) in draft.iter().enumerate() {
        let children = tree.children(u);
        if children.is_empty() || sibling == SiblingLaw::Deterministic {
            continue;
        }
        let Some(q) = row else {
            return bad(format!("internal node {u} has no draft row"));
        };
        if q.len() != vocab {
            return bad(format!(
                "node {u}'s draft row has {} entries of {vocab}",
                q.len()
            ));
        }
        let mut seen = Vec::new();
        for &c in &children {
            let x = tree.token[c];
            if q[x as usize] <= 0.0 {
                return bad(format!("node {c}'s token {x} has draft probability 0"));
            }
            if sibling == SiblingLaw::WithoutReplacement && seen.contains(&x) {
                return bad(format!("token {x} twice among node {u}'s children"));
            }
            seen.push(x);
        }
    }
    Ok(vocab)
}

/// The exact law of one step of `rule` over `tree`, from the target row of every node and the
/// draft row of every internal node (`None` elsewhere, and everywhere for `Deterministic`).
pub fn tree_law(
    rule: TreeRule,
    tree: &Tree,
    target: &[Vec<f64>],
    draft: &[Option<Vec<f64>>],
    sibling: SiblingLaw,
) -> Result<TreeLaw> {
    let walk = Walk::checked(tree, target, draft, sibling)?;
    let mut emit = vec![vec![0.0; target[0].len()]; tree.len()];
    // With deterministic children TV's law is RRS's (docs/design.md).
    if walk.runs_rrs(rule) {
        walk.rrs(0, 1.0, &mut emit);
    } else {
        walk.tv(0, TvState::ROOT, 1.0, &mut emit);
    }
    Ok(TreeLaw { emit })
}

/// The law node u's next child is assumed drawn from: `q` without the `drawn` tokens,
/// renormalised (without replacement), `q` (with replacement), or a point mass at `x`.
fn sibling_row(
    q: Option<&Vec<f64>>,
    drawn: &[u32],
    x: u32,
    vocab: usize,
    law: SiblingLaw,
) -> Vec<f64> {
    match law {
        SiblingLaw::Deterministic => {
            let mut m = vec![0.0; vocab];
            m[x as usize] = 1.0;
            m
        }
        SiblingLaw::WithReplacement => q.expect("checked").clone(),
        SiblingLaw::WithoutReplacement => {
            let q = q.expect("checked");
            let mut m: Vec<f64> = q
                .iter()
                .enumerate()
                .map(|(v, &p)| if drawn.contains(&(v as u32)) { 0.0 } else { p })
                .collect();
            let sum: f64 = m.iter().sum();
            m.iter_mut().for_each(|p| *p /= sum);
            m
        }
    }
}

/// A node's TV state (docs/design.md): lambda, R, w and m.
#[derive(Debug, Clone, Copy)]
pub(super) struct TvState {
    lambda: f64,
    r: f64,
    w: f64,
    m: f64,
}

impl TvState {
    /// The root's state: lambda = 0, R = 1, w = 1, m = 1.
    pub(super) const ROOT: TvState = TvState {
        lambda: 0.0,
        r: 1.0,
        w: 1.0,
        m: 1.0,
    };

    /// A child's state when it is entered with `w`.
    fn entered(w: f64) -> TvState {
        TvState { w, ..TvState::ROOT }
    }

    /// A dead node (w = 0 or R = 0) gives its children w = 0.
    fn dead(&self) -> bool {
        self.w <= 0.0 || self.r <= 0.0
    }

    /// The state of the child of token x, entered from this node: w = min(1, w rho) with
    /// rho = m max(0, p(x) - lambda q(x)) / (R q(x)).
    fn child(&self, p: &[f64], q: &[f64], x: usize) -> TvState {
        if self.dead() {
            return TvState::entered(0.0);
        }
        let rho = self.m * (p[x] - self.lambda * q[x]).max(0.0) / (self.r * q[x]);
        TvState::entered((self.w * rho).min(1.0))
    }

    /// This node's state once its child of token x, drawn from `law` (the sibling law before
    /// that draw), was rejected.
    fn after_rejection(
        &self,
        p: &[f64],
        q: &[f64],
        law: &[f64],
        x: usize,
        sibling: SiblingLaw,
    ) -> TvState {
        if self.dead() {
            return TvState { w: 0.0, ..*self };
        }
        let lambda = self.lambda + self.r / (self.w * self.m);
        let r: f64 = p
            .iter()
            .zip(q)
            .map(|(a, b)| (a - lambda * b).max(0.0))
            .sum();
        // A, summed directly (w R' / R + 1 - w would cancel).
        let a: f64 = law
            .iter()
            .zip(p.iter().zip(q))
            .map(|(mv, (pv, qv))| {
                (mv - self.w * (pv - self.lambda * qv).max(0.0) / self.r).max(0.0)
            })
            .sum();
        let w = if a > 0.0 {
            (self.w * r / self.r) / a
        } else {
            0.0
        };
        TvState {
            lambda,
            r,
            w,
            m: if sibling == SiblingLaw::WithoutReplacement {
                self.m - q[x]
            } else {
                self.m
            },
        }
    }

    /// The probability that this node's own stage accepts (0 for a dead node).
    fn acceptance(&self) -> f64 {
        if self.r > 0.0 {
            self.w.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The law emitted by this node's stage, max(0, p - lambda q) / R (q: the node's draft row,
    /// `None` at a leaf, where lambda = 0).
    fn emission(&self, p: &[f64], q: Option<&Vec<f64>>) -> Vec<f64> {
        p.iter()
            .enumerate()
            .map(|(v, &pv)| (pv - q.map_or(0.0, |q| self.lambda * q[v])).max(0.0) / self.r)
            .collect()
    }
}

/// RRS: the probability of accepting child x under the current law `p` and the sibling law
/// `m`, min(1, p(x) / M(x)).
fn rrs_acceptance(p: &[f64], m: &[f64], x: usize) -> f64 {
    (p[x] / m[x]).min(1.0)
}

/// RRS: the current law after a rejection under `m`, norm(max(0, p - M)); all zeros when that
/// mass is 0 (p <= M everywhere: the child was accepted with probability 1).
fn rrs_residual(p: &[f64], m: &[f64]) -> Vec<f64> {
    let residual: Vec<f64> = p.iter().zip(m).map(|(a, b)| (a - b).max(0.0)).collect();
    let mass: f64 = residual.iter().sum();
    if mass > 0.0 {
        residual.iter().map(|r| r / mass).collect()
    } else {
        vec![0.0; p.len()]
    }
}

/// A tree and its rows (checked), which both rules walk, for the law and for the sampler.
pub(super) struct Walk<'a> {
    tree: &'a Tree,
    target: &'a [Vec<f64>],
    draft: &'a [Option<Vec<f64>>],
    sibling: SiblingLaw,
}

impl<'a> Walk<'a> {
    /// The walk over `tree` and its rows, once they pass `check`.
    pub(super) fn checked(
        tree: &'a Tree,
        target: &'a [Vec<f64>],
        draft: &'a [Option<Vec<f64>>],
        sibling: SiblingLaw,
    ) -> Result<Self> {
        check(tree, target, draft, sibling)?;
        Ok(Walk {
            tree,
            target,
            draft,
            sibling,
        })
    }

    /// Node u's children with, for each, its token and the sibling law it was drawn from.
    pub(super) fn children_with_laws(&self, u: usize) -> Vec<(usize, usize, Vec<f64>)> {
        let vocab = self.target[u].len();
        let mut drawn = Vec::new();
        self.tree
            .children(u)
            .into_iter()
            .map(|c| {
                let x = self.tree.token[c];
                let law = sibling_row(self.draft[u].as_ref(), &drawn, x, vocab, self.sibling);
                drawn.push(x);
                (c, x as usize, law)
            })
            .collect()
    }

    /// Whether TV's law is RRS's here (deterministic children), so that RRS is run for TV.
    pub(super) fn runs_rrs(&self, rule: TreeRule) -> bool {
        rule == TreeRule::Rrs || self.sibling == SiblingLaw::Deterministic
    }

    /// RRS from node u, reached with probability `reach` and current law `p` = its target row:
    /// child x accepted with probability min(1, p(x) / M(x)); on a rejection p becomes
    /// norm(max(0, p - M)); after every child, emit from p.
    fn rrs(&self, u: usize, reach: f64, emit: &mut [Vec<f64>]) {
        let mut p = self.target[u].clone();
        let mut reach = reach;
        for (c, x, law) in self.children_with_laws(u) {
            let accept = rrs_acceptance(&p, &law, x);
            self.rrs(c, reach * accept, emit);
            reach *= 1.0 - accept;
            p = rrs_residual(&p, &law);
        }
        for (e, pv) in emit[u].iter_mut().zip(&p) {
            *e += reach * pv;
        }
    }

    /// TV from node u in state `s`, its subtree reached with probability `reach`: the children's
    /// subtrees in order (each entered with w = min(1, w rho)), u's state updated after each one's
    /// rejection, then u's own stage: accept with probability w and emit from
    /// max(0, p_u - lambda q_u) / R. Returns the probability that the whole subtree is rejected.
    fn tv(&self, u: usize, mut s: TvState, reach: f64, emit: &mut [Vec<f64>]) -> f64 {
        let p = &self.target[u];
        let mut reach = reach;
        for (c, x, law) in self.children_with_laws(u) {
            let q = self.draft[u].as_ref().expect("checked");
            reach = self.tv(c, s.child(p, q, x), reach, emit);
            s = s.after_rejection(p, q, &law, x, self.sibling);
        }
        let accept = s.acceptance();
        if accept > 0.0 {
            for (e, m) in emit[u]
                .iter_mut()
                .zip(s.emission(p, self.draft[u].as_ref()))
            {
                *e += reach * accept * m;
            }
        }
        reach * (1.0 - accept)
    }

    /// RRS's draw from node u under `key` (src/reference/tree_sample.rs): children tried in
    /// order, child c accepted when U(TreeNode, c) < min(1, p(x) / M(x)); after every child the
    /// winner of the race over p in the stream (TreeEmit, u).
    pub(super) fn sample_rrs(&self, u: usize, key: NoiseKey) -> Result<TreeOutcome> {
        let mut p = self.target[u].clone();
        for (c, x, law) in self.children_with_laws(u) {
            if key.uniform_scalar(Purpose::TreeNode, c) < rrs_acceptance(&p, &law, x) {
                return self.sample_rrs(c, key);
            }
            p = rrs_residual(&p, &law);
        }
        emit_race(&key, u, &p)
    }

    /// TV's draw from node u in state `s` under `key`: the first stage in post-order that
    /// accepts, stage u accepting when U(TreeNode, u) < w (the root always: its stage is
    /// reached only with the rest of the tree rejected, and then accepts with probability 1),
    /// then the winner of the race over max(0, p_u - lambda q_u) in the stream (TreeEmit, u).
    /// `None` when the whole subtree is rejected. A subtree entered with w = 0 is skipped: no
    /// stage in it can accept.
    pub(super) fn sample_tv(
        &self,
        u: usize,
        mut s: TvState,
        key: NoiseKey,
    ) -> Option<Result<TreeOutcome>> {
        let p = &self.target[u];
        for (c, x, law) in self.children_with_laws(u) {
            let q = self.draft[u].as_ref().expect("checked");
            let child = s.child(p, q, x);
            if child.w > 0.0 {
                if let Some(outcome) = self.sample_tv(c, child, key) {
                    return Some(outcome);
                }
            }
            s = s.after_rejection(p, q, &law, x, self.sibling);
        }
        if u != 0 && key.uniform_scalar(Purpose::TreeNode, u) >= s.acceptance() {
            return None;
        }
        Some(emit_race(&key, u, &s.emission(p, self.draft[u].as_ref())))
    }
}

/// Node u's emitted token: the winner of the race over `weights` in the stream (TreeEmit, u).
fn emit_race(key: &NoiseKey, u: usize, weights: &[f64]) -> Result<TreeOutcome> {
    RaceTiles::new(key, &StreamLayout::STANDARD, Purpose::TreeEmit, u, weights)
        .winner()
        .map(|token| TreeOutcome { node: u, token })
        .ok_or(Error::NoOutcome)
}

/// Greedy verification over a tree (target rows as probabilities or logits: only their
/// argmaxes matter): from the root down, into the first child whose token is the row's argmax,
/// then that argmax is emitted.
pub(super) fn greedy_walk(tree: &Tree, rows: &[Vec<f64>]) -> Result<TreeOutcome> {
    let mut u = 0;
    loop {
        let best = argmax(rows[u].iter().copied())
            .ok_or_else(|| Error::InvalidArgument(format!("node {u}'s row has no argmax")))?;
        match tree
            .children(u)
            .into_iter()
            .find(|&c| tree.token[c] as usize == best)
        {
            Some(c) => u = c,
            None => {
                return Ok(TreeOutcome {
                    node: u,
                    token: best as u32,
                });
            }
        }
    }
}

/// A tree's probability rows: every node's target row, and the draft rows of its internal nodes.
pub(super) type TreeRows = (Vec<Vec<f64>>, Vec<Option<Vec<f64>>>);

/// The probability rows of a request over `tree` with its `sampling` (checked, T > 0): each
/// node's target row softmaxed at the target's temperature and truncated by `sampling.target`,
/// each internal node's draft row at the draft's temperature and truncated by `sampling.draft`
/// (`None` where absent and everywhere for `Deterministic`).
pub(super) fn tree_rows<T: Logit, R: AsRef<[T]>>(
    target: &[R],
    draft: &[Option<R>],
    sibling: SiblingLaw,
    sampling: &Sampling,
) -> Result<TreeRows> {
    let d_temp = sampling.draft_temperature();
    let target_probs = target
        .iter()
        .map(|r| truncated_softmax(r.as_ref(), sampling.temperature, &sampling.target))
        .collect::<Result<Vec<_>>>()?;
    let draft_probs = draft
        .iter()
        .map(|r| match r {
            Some(r) if sibling != SiblingLaw::Deterministic => {
                truncated_softmax(r.as_ref(), d_temp, &sampling.draft).map(Some)
            }
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((target_probs, draft_probs))
}

/// A greedy request's target rows as f64 values, each checked as the sampling rules check
/// them (no NaN, no +inf, a finite value), its tree checked against them.
pub(super) fn greedy_rows<T: Logit, R: AsRef<[T]>>(
    tree: &Tree,
    target: &[R],
) -> Result<Vec<Vec<f64>>> {
    for (row, logits) in target.iter().enumerate() {
        checked_max(logits.as_ref()).map_err(|problem| Error::BadRow {
            model: Model::Target,
            row,
            problem,
        })?;
    }
    let rows: Vec<Vec<f64>> = target
        .iter()
        .map(|r| r.as_ref().iter().map(|x| x.to_f64()).collect())
        .collect();
    let none: Vec<Option<Vec<f64>>> = vec![None; tree.len()];
    Walk::checked(tree, &rows, &none, SiblingLaw::Deterministic)?;
    Ok(rows)
}

/// The exact law of one step over `tree` from logits, with the request's `sampling` (as
/// [`super::step_law_from_logits`] for chains): each node's target row softmaxed at the target's
/// temperature and truncated by `sampling.target`, each internal node's draft row at the draft's
/// temperature and truncated by `sampling.draft` (not read when the children are
/// `Deterministic`). A target temperature of 0 verifies greedily: from the root down, into the
/// first child whose token is the target row's argmax, then that argmax is emitted.
pub fn tree_law_from_logits<T: Logit, R: AsRef<[T]>>(
    rule: TreeRule,
    tree: &Tree,
    target: &[R],
    draft: &[Option<R>],
    sibling: SiblingLaw,
    sampling: &Sampling,
) -> Result<TreeLaw> {
    sampling.check()?;
    if sampling.temperature == 0.0 {
        let rows = greedy_rows(tree, target)?;
        let outcome = greedy_walk(tree, &rows)?;
        let mut emit = vec![vec![0.0; rows[0].len()]; tree.len()];
        emit[outcome.node][outcome.token as usize] = 1.0;
        return Ok(TreeLaw { emit });
    }
    let (target_probs, draft_probs) = tree_rows(target, draft, sibling, sampling)?;
    tree_law(rule, tree, &target_probs, &draft_probs, sibling)
}
