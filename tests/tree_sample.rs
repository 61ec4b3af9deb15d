//! The tree sampler (src/reference/tree_sample.rs, the noise scheme the tree kernels are to
//! use) against the exact tree laws (src/reference/tree.rs, checked by enumeration in
//! tests/tree_law.rs), by chi-square goodness of fit over (accepted node, emitted token).
//!
//! Fixed seeds make every test deterministic. Each fit is at significance ALPHA = 1e-3 (a
//! correct sampler fails a given fit with probability 1e-3 over the choice of seeds) with
//! DRAWS = 20000 draws, the steps' keys (seed, offset) = (case seed, 0..DRAWS); bins expecting
//! fewer than 5 draws are pooled. A draw of an outcome of probability 0 fails outright.

mod common;

use std::collections::HashMap;

use asps::NoiseKey;
use asps::reference::{
    Sampling, SiblingLaw, Tree, TreeLaw, TreeOutcome, TreeRule, Truncation, tree_law,
    tree_law_from_logits, tree_sample, tree_sample_from_logits,
};
use common::chi2::chi2_of_counts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ALPHA: f64 = 1e-3;
const DRAWS: u64 = 20_000;

/// Tree shapes as parent arrays: a chain, a star, a binary tree of depth 2, an EAGLE-like
/// sparse tree.
const SHAPES: [&[usize]; 4] = [
    &[0, 0, 1, 2],
    &[0, 0, 0, 0],
    &[0, 0, 0, 1, 1, 2, 2],
    &[0, 0, 0, 1, 1, 3],
];

/// A random law over `vocab` tokens, every token at least 0.02 / vocab.
fn random_row(rng: &mut StdRng, vocab: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..vocab)
        .map(|_| rng.random::<f64>().powi(3) + 0.02 / vocab as f64)
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|x| x / sum).collect()
}

/// One token drawn from `row` without the `excluded` tokens.
fn draw_from(rng: &mut StdRng, row: &[f64], excluded: &[u32]) -> u32 {
    let mass: f64 = (0..row.len())
        .filter(|v| !excluded.contains(&(*v as u32)))
        .map(|v| row[v])
        .sum();
    let mut u = rng.random::<f64>() * mass;
    let mut last = 0;
    for (v, &p) in row.iter().enumerate() {
        if excluded.contains(&(v as u32)) {
            continue;
        }
        last = v as u32;
        if u < p {
            return v as u32;
        }
        u -= p;
    }
    last
}

/// A tree, its target rows and its draft rows (internal nodes, unless deterministic).
struct Case {
    tree: Tree,
    target: Vec<Vec<f64>>,
    draft: Vec<Option<Vec<f64>>>,
}

/// A tree of shape `parent` with random rows, its children drawn as `sibling` says (the draft
/// row's most probable tokens in order when deterministic).
fn random_case(seed: u64, parent: &[usize], vocab: usize, sibling: SiblingLaw) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = parent.len();
    let target: Vec<Vec<f64>> = (0..n).map(|_| random_row(&mut rng, vocab)).collect();
    let draft_rows: Vec<Vec<f64>> = (0..n).map(|_| random_row(&mut rng, vocab)).collect();
    let mut token = vec![0u32];
    for i in 1..n {
        let u = parent[i];
        let siblings: Vec<u32> = (1..i)
            .filter(|&j| parent[j] == u)
            .map(|j| token[j])
            .collect();
        let x = match sibling {
            SiblingLaw::WithoutReplacement => draw_from(&mut rng, &draft_rows[u], &siblings),
            SiblingLaw::WithReplacement => draw_from(&mut rng, &draft_rows[u], &[]),
            SiblingLaw::Deterministic => {
                let mut order: Vec<u32> = (0..vocab as u32).collect();
                order.sort_by(|&a, &b| {
                    draft_rows[u][b as usize].total_cmp(&draft_rows[u][a as usize])
                });
                order[siblings.len()]
            }
        };
        token.push(x);
    }
    let tree = Tree {
        parent: parent.to_vec(),
        token,
    };
    let draft = (0..n)
        .map(|u| {
            (!tree.children(u).is_empty() && sibling != SiblingLaw::Deterministic)
                .then(|| draft_rows[u].clone())
        })
        .collect();
    Case {
        tree,
        target,
        draft,
    }
}

/// The p-value of `draws` against `law`: 0 when an outcome of probability 0 was drawn.
fn fit(draws: &HashMap<TreeOutcome, u64>, law: &TreeLaw, what: &str) -> f64 {
    let vocab = law.emit[0].len();
    let mut counts = vec![0u64; law.emit.len() * vocab];
    for (o, &c) in draws {
        if law.emit[o.node][o.token as usize] <= 0.0 {
            println!("{what}: drew {o:?}, of probability 0");
            return 0.0;
        }
        counts[o.node * vocab + o.token as usize] += c;
    }
    let probs: Vec<f64> = law.emit.iter().flatten().copied().collect();
    chi2_of_counts(&counts, &probs, DRAWS).2
}

fn draw(mut sample: impl FnMut(NoiseKey) -> TreeOutcome, seed: u64) -> HashMap<TreeOutcome, u64> {
    let mut counts = HashMap::new();
    for offset in 0..DRAWS {
        *counts
            .entry(sample(NoiseKey::new(seed, offset)))
            .or_insert(0) += 1;
    }
    counts
}

/// Both rules, every sibling law, four shapes (24 fits): the draws follow the exact law.
#[test]
fn draws_follow_the_tree_laws() {
    let mut case = 0;
    for (s, parent) in SHAPES.iter().enumerate() {
        for sibling in [
            SiblingLaw::WithoutReplacement,
            SiblingLaw::WithReplacement,
            SiblingLaw::Deterministic,
        ] {
            let Case {
                tree,
                target,
                draft,
            } = random_case(100 + s as u64, parent, 5, sibling);
            for rule in [TreeRule::Tv, TreeRule::Rrs] {
                case += 1;
                let law = tree_law(rule, &tree, &target, &draft, sibling).unwrap();
                let counts = draw(
                    |key| tree_sample(rule, &tree, &target, &draft, sibling, key).unwrap(),
                    case,
                );
                let what = format!("{rule:?}, {sibling:?}, tree {tree:?}");
                let p = fit(&counts, &law, &what);
                assert!(p > ALPHA, "{what}: p = {p:.2e}");
            }
        }
    }
}

/// The fit can fail: on a tree where TV's and RRS's laws differ by far more than the draws
/// resolve, RRS's draws are rejected against TV's law, and TV's against RRS's.
#[test]
fn draws_of_the_other_rule_are_rejected() {
    let sibling = SiblingLaw::WithoutReplacement;
    let laws = |seed: u64| {
        let Case {
            tree,
            target,
            draft,
        } = random_case(seed, &[0, 0, 0, 1, 1, 2, 2], 5, sibling);
        let tv = tree_law(TreeRule::Tv, &tree, &target, &draft, sibling).unwrap();
        let rrs = tree_law(TreeRule::Rrs, &tree, &target, &draft, sibling).unwrap();
        let gap: f64 = tv
            .emit
            .iter()
            .flatten()
            .zip(rrs.emit.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .sum();
        (gap, tree, target, draft, tv, rrs)
    };
    // The first case whose laws differ by 0.1 in total variation times two.
    let (gap, tree, target, draft, tv, rrs) = (0..100)
        .map(laws)
        .find(|case| case.0 > 0.1)
        .expect("a case whose laws differ");
    println!("laws {gap:.3} apart");
    for (rule, other) in [(TreeRule::Rrs, &tv), (TreeRule::Tv, &rrs)] {
        let counts = draw(
            |key| tree_sample(rule, &tree, &target, &draft, sibling, key).unwrap(),
            9,
        );
        let p = fit(&counts, other, &format!("{rule:?}"));
        assert!(
            p < ALPHA,
            "{rule:?}'s draws fit the other rule's law: p = {p:.2e}"
        );
    }
}

/// From logits with the request's sampling (both temperatures and truncations): the draws
/// follow tree_law_from_logits; at temperature 0 every draw is the greedy walk's outcome.
#[test]
fn draws_from_logits_follow_the_law() {
    let mut rng = StdRng::seed_from_u64(11);
    let parent = [0, 0, 0, 1, 1, 3];
    let vocab = 8;
    let logits = |rng: &mut StdRng| -> Vec<f32> {
        (0..vocab)
            .map(|_| (rng.random::<f64>() * 4.0) as f32)
            .collect()
    };
    let target: Vec<Vec<f32>> = (0..parent.len()).map(|_| logits(&mut rng)).collect();
    let draft: Vec<Option<Vec<f32>>> = (0..parent.len()).map(|_| Some(logits(&mut rng))).collect();
    let sampling = Sampling {
        temperature: 0.8,
        draft_temperature: Some(1.2),
        target: Truncation {
            top_k: 6,
            top_p: 0.95,
            min_p: 0.0,
        },
        draft: Truncation {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.05,
        },
    };
    // Children drawn from the truncated draft rows, without replacement.
    let draft_probs: Vec<Vec<f64>> = draft
        .iter()
        .map(|r| {
            asps::reference::truncated_softmax(r.as_ref().unwrap(), 1.2, &sampling.draft).unwrap()
        })
        .collect();
    let mut token = vec![0u32];
    for i in 1..parent.len() {
        let siblings: Vec<u32> = (1..i)
            .filter(|&j| parent[j] == parent[i])
            .map(|j| token[j])
            .collect();
        token.push(draw_from(&mut rng, &draft_probs[parent[i]], &siblings));
    }
    let tree = Tree {
        parent: parent.to_vec(),
        token,
    };
    let sibling = SiblingLaw::WithoutReplacement;
    for (seed, rule) in [(21, TreeRule::Tv), (22, TreeRule::Rrs)] {
        let law = tree_law_from_logits(rule, &tree, &target, &draft, sibling, &sampling).unwrap();
        let counts = draw(
            |key| {
                tree_sample_from_logits(rule, &tree, &target, &draft, sibling, &sampling, key)
                    .unwrap()
            },
            seed,
        );
        let p = fit(&counts, &law, &format!("{rule:?} from logits"));
        assert!(p > ALPHA, "{rule:?} from logits: p = {p:.2e}");
    }
    let greedy = Sampling {
        temperature: 0.0,
        ..sampling
    };
    let law = tree_law_from_logits(TreeRule::Tv, &tree, &target, &draft, sibling, &greedy).unwrap();
    for offset in 0..50 {
        let o = tree_sample_from_logits(
            TreeRule::Tv,
            &tree,
            &target,
            &draft,
            sibling,
            &greedy,
            NoiseKey::new(3, offset),
        )
        .unwrap();
        assert_eq!(law.emit[o.node][o.token as usize], 1.0, "greedy drew {o:?}");
    }
}
