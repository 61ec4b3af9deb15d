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
use super::softmax::argmax;
use super::truncate::truncated_softmax;
use crate::dtype::Logit;
use crate::error::{Error, Result};

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
    let vocab = check(tree, target, draft, sibling)?;
    let mut emit = vec![vec![0.0; vocab]; tree.len()];
    // With deterministic children TV's law is RRS's (docs/design.md).
    let walk = Walk {
        tree,
        target,
        draft,
        sibling,
    };
    if rule == TreeRule::Rrs || sibling == SiblingLaw::Deterministic {
        walk.rrs(0, 1.0, &mut emit);
    } else {
        let root = TvState {
            lambda: 0.0,
            r: 1.0,
            w: 1.0,
            m: 1.0,
        };
        walk.tv(0, root, 1.0, &mut emit);
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
struct TvState {
    lambda: f64,
    r: f64,
    w: f64,
    m: f64,
}

/// A tree and its rows (checked), which both rules walk.
struct Walk<'a> {
    tree: &'a Tree,
    target: &'a [Vec<f64>],
    draft: &'a [Option<Vec<f64>>],
    sibling: SiblingLaw,
}

impl Walk<'_> {
    /// RRS from node u, reached with probability `reach` and current law `p` = its target row:
    /// child x accepted with probability min(1, p(x) / M(x)); on a rejection p becomes
    /// norm(max(0, p - M)); after every child, emit from p.
    fn rrs(&self, u: usize, reach: f64, emit: &mut [Vec<f64>]) {
        let (tree, target, draft, sibling) = (self.tree, self.target, self.draft, self.sibling);
        let vocab = target[u].len();
        let mut p = target[u].clone();
        let mut reach = reach;
        let mut drawn = Vec::new();
        for c in tree.children(u) {
            let x = tree.token[c];
            let m = sibling_row(draft[u].as_ref(), &drawn, x, vocab, sibling);
            drawn.push(x);
            let accept = (p[x as usize] / m[x as usize]).min(1.0);
            self.rrs(c, reach * accept, emit);
            reach *= 1.0 - accept;
            let residual: Vec<f64> = p.iter().zip(&m).map(|(a, b)| (a - b).max(0.0)).collect();
            let mass: f64 = residual.iter().sum();
            // Mass 0: p <= M everywhere, so the child was accepted with probability 1.
            p = if mass > 0.0 {
                residual.iter().map(|r| r / mass).collect()
            } else {
                vec![0.0; vocab]
            };
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
        let (tree, target, draft, sibling) = (self.tree, self.target, self.draft, self.sibling);
        let p = &target[u];
        let mut reach = reach;
        let mut drawn: Vec<u32> = Vec::new();
        for c in tree.children(u) {
            let q = draft[u].as_ref().expect("checked");
            let x = tree.token[c] as usize;
            let dead = s.w <= 0.0 || s.r <= 0.0;
            let w_child = if dead {
                0.0
            } else {
                let rho = s.m * (p[x] - s.lambda * q[x]).max(0.0) / (s.r * q[x]);
                (s.w * rho).min(1.0)
            };
            let child = TvState {
                lambda: 0.0,
                r: 1.0,
                w: w_child,
                m: 1.0,
            };
            reach = self.tv(c, child, reach, emit);
            // The child's subtree was rejected: update u's state.
            let law = sibling_row(Some(q), &drawn, x as u32, p.len(), sibling);
            drawn.push(x as u32);
            if dead {
                s.w = 0.0;
            } else {
                let lambda = s.lambda + s.r / (s.w * s.m);
                let r: f64 = p
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (a - lambda * b).max(0.0))
                    .sum();
                // A, summed directly (w R' / R + 1 - w would cancel).
                let a: f64 = law
                    .iter()
                    .zip(p.iter().zip(q))
                    .map(|(mv, (pv, qv))| (mv - s.w * (pv - s.lambda * qv).max(0.0) / s.r).max(0.0))
                    .sum();
                let w = if a > 0.0 { (s.w * r / s.r) / a } else { 0.0 };
                s = TvState {
                    lambda,
                    r,
                    w,
                    m: if sibling == SiblingLaw::WithoutReplacement {
                        s.m - q[x]
                    } else {
                        s.m
                    },
                };
            }
        }
        // u's own stage.
        let accept = s.w.clamp(0.0, 1.0);
        if accept > 0.0 && s.r > 0.0 {
            let q = draft[u].as_ref();
            for (v, e) in emit[u].iter_mut().enumerate() {
                let lq = q.map_or(0.0, |q| s.lambda * q[v]);
                *e += reach * accept * (p[v] - lq).max(0.0) / s.r;
            }
        }
        reach * (1.0 - accept)
    }
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
        let probs: Vec<Vec<f64>> = target
            .iter()
            .map(|r| r.as_ref().iter().map(|x| x.to_f64()).collect())
            .collect();
        let none: Vec<Option<Vec<f64>>> = vec![None; tree.len()];
        let vocab = check(tree, &probs, &none, SiblingLaw::Deterministic)?;
        let mut emit = vec![vec![0.0; vocab]; tree.len()];
        let mut u = 0;
        loop {
            let best = argmax(probs[u].iter().copied())
                .ok_or_else(|| Error::InvalidArgument(format!("node {u}'s row has no argmax")))?;
            match tree
                .children(u)
                .into_iter()
                .find(|&c| tree.token[c] as usize == best)
            {
                Some(c) => u = c,
                None => {
                    emit[u][best] = 1.0;
                    return Ok(TreeLaw { emit });
                }
            }
        }
    }
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
    tree_law(rule, tree, &target_probs, &draft_probs, sibling)
}
