//! Draft trees in the reference (src/reference/tree.rs), by exact enumeration: for random
//! autoregressive target and draft models over V = 2..4 and several tree shapes, the law of the
//! emitted sequence, averaged over every tree the drafter can draw (each sibling law), satisfies
//! the exactness statement of docs/design.md within 1e-12, for RRS and for Traversal
//! Verification; every per-tree law sums to 1. A chain given as a tree gives ASpS's law (TV) and
//! SpS's law (RRS); with deterministic children TV's law is RRS's.

mod common;

use std::collections::HashMap;

use asps::Method;
use asps::reference::{SiblingLaw, StepLaw, Tree, TreeLaw, TreeRule, tree_law};
use common::{ArModels, Relation, exactness_error};

const TOLERANCE: f64 = 1e-12;

/// Tree shapes as parent arrays (node 0 the root): a chain, a star, a binary tree of depth 2,
/// an EAGLE-like sparse tree, and a root with a deep first child.
const SHAPES: [&[usize]; 5] = [
    &[0, 0, 1, 2],
    &[0, 0, 0, 0],
    &[0, 0, 0, 1, 1, 2, 2],
    &[0, 0, 0, 1, 1, 3],
    &[0, 0, 1, 2, 0],
];

/// Every tree of shape `parent` the drafter can draw under `sibling`, with its probability:
/// node i's token drawn from its parent's draft row (without the earlier siblings' tokens,
/// renormalised, without replacement; the parent's most probable tokens in order, lowest token
/// first on ties, when deterministic).
fn drawn_trees(models: &ArModels, parent: &[usize], sibling: SiblingLaw) -> Vec<(Tree, f64)> {
    let mut trees = vec![(vec![0u32], 1.0)];
    for i in 1..parent.len() {
        let mut next = Vec::new();
        for (tokens, prob) in trees {
            let tree = Tree {
                parent: parent[..i].to_vec(),
                token: tokens.clone(),
            };
            let u = parent[i];
            let q = models.q(&tree.path(u));
            let earlier: Vec<u32> = (1..i)
                .filter(|&j| parent[j] == u)
                .map(|j| tokens[j])
                .collect();
            let choices: Vec<(u32, f64)> = match sibling {
                SiblingLaw::WithReplacement => {
                    (0..q.len() as u32).map(|x| (x, q[x as usize])).collect()
                }
                SiblingLaw::WithoutReplacement => {
                    let left: f64 = (0..q.len() as u32)
                        .filter(|x| !earlier.contains(x))
                        .map(|x| q[x as usize])
                        .sum();
                    (0..q.len() as u32)
                        .filter(|x| !earlier.contains(x) && left > 0.0)
                        .map(|x| (x, q[x as usize] / left))
                        .collect()
                }
                SiblingLaw::Deterministic => {
                    let mut order: Vec<u32> = (0..q.len() as u32).collect();
                    order.sort_by(|&a, &b| q[b as usize].total_cmp(&q[a as usize]).then(a.cmp(&b)));
                    order
                        .get(earlier.len())
                        .filter(|&&x| q[x as usize] > 0.0)
                        .map(|&x| vec![(x, 1.0)])
                        .unwrap_or_default()
                }
            };
            for (x, px) in choices {
                if px > 0.0 {
                    let mut t = tokens.clone();
                    t.push(x);
                    next.push((t, prob * px));
                }
            }
        }
        trees = next;
    }
    trees
        .into_iter()
        .map(|(token, prob)| {
            (
                Tree {
                    parent: parent.to_vec(),
                    token,
                },
                prob,
            )
        })
        .collect()
}

/// The rows a verifier sees for `tree`: every node's target row; every internal node's draft
/// row (none when deterministic).
fn rows(
    models: &ArModels,
    tree: &Tree,
    sibling: SiblingLaw,
) -> (Vec<Vec<f64>>, Vec<Option<Vec<f64>>>) {
    let target = (0..tree.len())
        .map(|u| models.p(&tree.path(u)).to_vec())
        .collect();
    let draft = (0..tree.len())
        .map(|u| {
            (sibling != SiblingLaw::Deterministic && !tree.children(u).is_empty())
                .then(|| models.q(&tree.path(u)).to_vec())
        })
        .collect();
    (target, draft)
}

/// P(Y = y) for every emitted sequence y, averaged over the drawn trees; `None` when the
/// drafter cannot fill the shape (a node with more children than tokens it can draw).
fn output_law(
    models: &ArModels,
    parent: &[usize],
    sibling: SiblingLaw,
    rule: TreeRule,
) -> Option<HashMap<Vec<u32>, f64>> {
    let mut out: HashMap<Vec<u32>, f64> = HashMap::new();
    let trees = drawn_trees(models, parent, sibling);
    let drawn: f64 = trees.iter().map(|(_, p)| p).sum();
    if (drawn - 1.0).abs() > 1e-12 {
        return None;
    }
    for (tree, prob) in trees {
        let (target, draft) = rows(models, &tree, sibling);
        let law: TreeLaw = tree_law(rule, &tree, &target, &draft, sibling).unwrap();
        assert!(
            (law.total() - 1.0).abs() < 1e-12,
            "{rule:?} {sibling:?} {tree:?}: law sums to {}",
            law.total()
        );
        add_emitted(&mut out, &tree, &law, prob);
    }
    Some(out)
}

/// Adds `prob` times each sequence `law` emits over `tree` (the path to the accepted node, then
/// the next token) to `out`.
fn add_emitted(out: &mut HashMap<Vec<u32>, f64>, tree: &Tree, law: &TreeLaw, prob: f64) {
    for (u, row) in law.emit.iter().enumerate() {
        for (v, &pr) in row.iter().enumerate() {
            if pr != 0.0 {
                let mut y = tree.path(u);
                y.push(v as u32);
                *out.entry(y).or_default() += prob * pr;
            }
        }
    }
}

/// Asserts that `law`, over a chain of n draft tokens, is the chain's `step` law outcome for
/// outcome: node u < n is a rejection at row u, node n the full accept and its bonus token.
fn assert_chain_law(law: &TreeLaw, step: &StepLaw, what: &str) {
    let n = step.draft_len();
    for (u, row) in law.emit.iter().enumerate() {
        for (v, &got) in row.iter().enumerate() {
            let want = if u < n {
                step.reject[u][v]
            } else {
                step.accept_all * step.bonus[v]
            };
            assert!(
                (got - want).abs() < 1e-12,
                "{what} node {u} token {v}: {got} vs {want}"
            );
        }
    }
}

fn depth(parent: &[usize]) -> usize {
    let tree = Tree {
        parent: parent.to_vec(),
        token: vec![0; parent.len()],
    };
    (0..parent.len()).map(|u| tree.depth(u)).max().unwrap()
}

#[test]
fn rrs_and_tv_are_lossless_on_random_models() {
    let (mut checked, mut skipped) = (0, 0);
    for rule in [TreeRule::Rrs, TreeRule::Tv] {
        for sibling in [
            SiblingLaw::WithoutReplacement,
            SiblingLaw::WithReplacement,
            SiblingLaw::Deterministic,
        ] {
            for vocab in 2..=4 {
                for (k, parent) in SHAPES.iter().enumerate() {
                    let n = depth(parent);
                    for seed in 0..3u64 {
                        let models = ArModels::new(
                            seed * 100 + (vocab * 10 + k) as u64,
                            vocab,
                            n,
                            Relation::Random,
                        );
                        let Some(out) = output_law(&models, parent, sibling, rule) else {
                            skipped += 1;
                            continue;
                        };
                        checked += 1;
                        let err = exactness_error(&models, &out, n);
                        assert!(
                            err < TOLERANCE,
                            "{rule:?} {sibling:?} V={vocab} shape {parent:?} seed {seed}: \
                             exactness violated by {err:e}"
                        );
                    }
                }
            }
        }
    }
    println!("{checked} cases checked, {skipped} shapes the drafter cannot fill");
    assert!(
        checked >= 4 * skipped,
        "{checked} checked, {skipped} skipped"
    );
}

/// A chain given as a tree: TV's law is ASpS's and RRS's is SpS's, outcome for outcome.
#[test]
fn a_chain_as_a_tree_gives_the_chain_rules() {
    for (rule, method) in [(TreeRule::Tv, Method::Asps), (TreeRule::Rrs, Method::Sps)] {
        for seed in 0..5u64 {
            let (vocab, n) = (4, 3);
            let models = ArModels::new(seed + 40, vocab, n, Relation::Random);
            for x in common::all_sequences(vocab, n) {
                if models.q_seq(&x) == 0.0 {
                    continue;
                }
                let chain = models.law(method, &x);
                let tree = Tree::chain(&x);
                let (target, draft) = rows(&models, &tree, SiblingLaw::WithReplacement);
                let law =
                    tree_law(rule, &tree, &target, &draft, SiblingLaw::WithReplacement).unwrap();
                assert_chain_law(&law, &chain, &format!("{rule:?} draft {x:?}"));
            }
        }
    }
}

/// The exactness check can fail on trees: RRS that keeps the earlier siblings' tokens in the
/// sibling law of trees drawn without replacement (the law the drafter did not use) is lossy.
#[test]
fn the_wrong_sibling_law_is_caught() {
    let models = ArModels::new(5, 3, 1, Relation::Random);
    let parent = SHAPES[1];
    let mut out: HashMap<Vec<u32>, f64> = HashMap::new();
    for (tree, prob) in drawn_trees(&models, parent, SiblingLaw::WithoutReplacement) {
        let (target, draft) = rows(&models, &tree, SiblingLaw::WithReplacement);
        let law = tree_law(
            TreeRule::Rrs,
            &tree,
            &target,
            &draft,
            SiblingLaw::WithReplacement,
        )
        .unwrap();
        add_emitted(&mut out, &tree, &law, prob);
    }
    assert!(exactness_error(&models, &out, 1) > 1e-6);
}

/// Bad trees are refused: a parent after its child, a token out of range, a repeated token
/// among children drawn without replacement, an impossible draft, a missing draft row.
#[test]
fn bad_trees_are_refused() {
    let p = vec![vec![0.5, 0.5]; 3];
    let q = vec![Some(vec![1.0, 0.0]), None, None];
    let good = Tree {
        parent: vec![0, 0, 0],
        token: vec![0, 0, 0],
    };
    let run = |tree: &Tree, draft: &[Option<Vec<f64>>], sibling| {
        tree_law(TreeRule::Tv, tree, &p, draft, sibling)
    };
    assert!(run(&good, &q, SiblingLaw::WithReplacement).is_ok());
    assert!(run(&good, &q, SiblingLaw::WithoutReplacement).is_err());
    let impossible = Tree {
        token: vec![0, 0, 1],
        ..good.clone()
    };
    assert!(run(&impossible, &q, SiblingLaw::WithReplacement).is_err());
    let out_of_range = Tree {
        token: vec![0, 0, 2],
        ..good.clone()
    };
    assert!(run(&out_of_range, &q, SiblingLaw::WithReplacement).is_err());
    let late_parent = Tree {
        parent: vec![0, 2, 0],
        ..good.clone()
    };
    assert!(run(&late_parent, &q, SiblingLaw::WithReplacement).is_err());
    assert!(run(&good, &[None, None, None], SiblingLaw::WithReplacement).is_err());
    assert!(run(&good, &[None, None, None], SiblingLaw::Deterministic).is_ok());
}

/// From logits with a request's sampling (temperatures, truncation of both models): a chain as
/// a tree gives step_law_from_logits's law, TV ASpS's and RRS SpS's.
#[test]
fn from_logits_a_chain_gives_the_chain_laws() {
    use asps::reference::{Sampling, Truncation, step_law_from_logits, tree_law_from_logits};
    let logits = |k: u32| -> Vec<f32> {
        (0..6)
            .map(|v| ((v * 7 + k * 3) % 11) as f32 * 0.4)
            .collect()
    };
    let target: Vec<Vec<f32>> = (0..3).map(logits).collect();
    let draft: Vec<Vec<f32>> = (0..2).map(|k| logits(k + 5)).collect();
    let sampling = Sampling {
        temperature: 0.8,
        draft_temperature: Some(1.3),
        target: Truncation {
            top_k: 4,
            top_p: 0.95,
            min_p: 0.0,
        },
        draft: Truncation {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.01,
        },
    };
    // Tokens the truncated draft keeps: each draft row's argmax.
    let x: Vec<u32> = draft
        .iter()
        .map(|r| asps::reference::argmax(r.iter().map(|&v| f64::from(v))).unwrap() as u32)
        .collect();
    let tree = Tree::chain(&x);
    let tree_draft: Vec<Option<Vec<f32>>> =
        vec![Some(draft[0].clone()), Some(draft[1].clone()), None];
    for (rule, method) in [(TreeRule::Tv, Method::Asps), (TreeRule::Rrs, Method::Sps)] {
        let chain = step_law_from_logits(method, &target, &draft, &x, &sampling).unwrap();
        let law = tree_law_from_logits(
            rule,
            &tree,
            &target,
            &tree_draft,
            SiblingLaw::WithReplacement,
            &sampling,
        )
        .unwrap();
        assert_chain_law(&law, &chain, &format!("{rule:?}"));
    }
}

/// Greedy over a tree (target temperature 0): down the children that hold the target rows'
/// argmaxes, the first such child on duplicates, then the argmax of the last node reached.
#[test]
fn greedy_walks_down_the_target_argmax() {
    use asps::reference::{Sampling, tree_law_from_logits};
    // Node rows: root argmax 2, node 2 (token 2) argmax 0, node 4 (token 0) argmax 1.
    let row =
        |best: usize| -> Vec<f32> { (0..3).map(|v| if v == best { 1.0 } else { 0.0 }).collect() };
    let tree = Tree {
        parent: vec![0, 0, 0, 1, 2, 2],
        token: vec![0, 1, 2, 0, 1, 0],
    };
    let target = vec![row(2), row(0), row(0), row(1), row(2), row(1)];
    let draft: Vec<Option<Vec<f32>>> = vec![None; 6];
    let law = tree_law_from_logits(
        TreeRule::Tv,
        &tree,
        &target,
        &draft,
        SiblingLaw::Deterministic,
        &Sampling::plain(0.0),
    )
    .unwrap();
    let mut want = vec![vec![0.0; 3]; 6];
    want[5][1] = 1.0;
    assert_eq!(law.emit, want);
    assert_eq!(law.expected_tokens(&tree), 3.0);
}
