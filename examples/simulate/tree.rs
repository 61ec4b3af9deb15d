//! `--tree`: draft trees on the CPU reference (docs/design.md, "Draft trees"). For each trial
//! and tree shape the drafter draws a tree over the synthetic models, each node's children
//! sequentially without replacement from its draft row (the drafter's sampling; a greedy
//! drafter takes its most probable tokens, deterministic children), and the tree is verified by
//! Traversal Verification and by recursive rejection sampling; beside them, ASpS on a chain
//! drafted from the same context with as many target rows as the tree has nodes (n = N - 1).
//! Tokens per step, exact (from each step's law, averaged over the drafts) and sampled (one
//! draw per draft, with the tree noise streams that kernels/tree.cu follows). No front takes
//! trees yet: `--tree --gpu` is refused.

use asps::reference::{
    PreparedStep, Sampling, SiblingLaw, Tree, TreeRule, argmax, tree_law_from_logits,
    tree_sample_from_logits, truncated_softmax,
};
use asps::rng::NoiseKey;
use asps::{Error, Method, Result};

use super::{draft_logits, draw, hash_uniform, target_logits};

/// The tree shapes, as parent arrays (node 0 the root; a node's children in draw order).
const SHAPES: [(&str, &[usize]); 3] = [
    (
        "binary, depth 3",
        &[0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6],
    ),
    (
        "EAGLE-like sparse",
        &[0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 5, 5, 6, 8, 11],
    ),
    ("star of 8", &[0, 0, 0, 0, 0, 0, 0, 0, 0]),
];

/// Exact and sampled tokens per step, summed over the trials.
#[derive(Default, Clone, Copy)]
struct Tally {
    exact: f64,
    sampled: f64,
}

/// One token drawn from `row` (probabilities) without the `excluded` tokens, by inversion of
/// `u`; `None` when nothing of positive probability is left.
fn draw_excluding(row: &[f64], excluded: &[u32], u: f64) -> Option<u32> {
    let kept = |v: usize| !excluded.contains(&(v as u32)) && row[v] > 0.0;
    let mass: f64 = (0..row.len()).filter(|&v| kept(v)).map(|v| row[v]).sum();
    if mass <= 0.0 {
        return None;
    }
    let goal = u * mass;
    let mut acc = 0.0;
    let mut last = None;
    for v in (0..row.len()).filter(|&v| kept(v)) {
        acc += row[v];
        last = Some(v as u32);
        if goal < acc {
            break;
        }
    }
    last
}

/// A drafted tree, its target rows (every node) and draft rows (internal nodes; none when the
/// children are deterministic), and how its children were drawn.
struct DrawnTree {
    tree: Tree,
    target: Vec<Vec<f32>>,
    draft: Vec<Option<Vec<f32>>>,
    sibling: SiblingLaw,
}

/// The tree of shape `parent` that the drafter draws after `context` in `trial`.
fn draw_tree(
    parent: &[usize],
    context: &[u32],
    trial: u64,
    vocab: usize,
    blur: f64,
    sampling: &Sampling,
) -> Result<DrawnTree> {
    let greedy_drafter = sampling.draft_temperature() == 0.0;
    let sibling = if greedy_drafter {
        SiblingLaw::Deterministic
    } else {
        SiblingLaw::WithoutReplacement
    };
    let n = parent.len();
    let mut tree = Tree {
        parent: parent.to_vec(),
        token: vec![0],
    };
    let mut draft: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut draft_probs: Vec<Option<Vec<f64>>> = vec![None; n];
    for i in 1..n {
        let u = parent[i];
        let prefix = [context, &tree.path(u)].concat();
        if draft[u].is_none() {
            let row = draft_logits(&prefix, vocab, blur);
            if !greedy_drafter {
                draft_probs[u] = Some(truncated_softmax(
                    &row,
                    sampling.draft_temperature(),
                    &sampling.draft,
                )?);
            }
            draft[u] = Some(row);
        }
        let siblings: Vec<u32> = (1..i)
            .filter(|&j| parent[j] == u)
            .map(|j| tree.token[j])
            .collect();
        let token = match &draft_probs[u] {
            Some(q) => draw_excluding(q, &siblings, hash_uniform(trial, 100 + i, 7)),
            // A greedy drafter's children: its most probable tokens, in order.
            None => {
                let row = draft[u].as_ref().expect("drawn above");
                argmax(row.iter().enumerate().map(|(v, &x)| {
                    if siblings.contains(&(v as u32)) {
                        f64::NEG_INFINITY
                    } else {
                        f64::from(x)
                    }
                }))
                .map(|v| v as u32)
            }
        };
        let token = token.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--tree: node {u}'s draft row keeps fewer tokens than its {} children",
                parent.iter().skip(1).filter(|&&p| p == u).count()
            ))
        })?;
        tree.token.push(token);
    }
    let target = (0..n)
        .map(|u| target_logits(&[context, &tree.path(u)].concat(), vocab))
        .collect();
    if greedy_drafter {
        draft = vec![None; n];
    }
    Ok(DrawnTree {
        tree,
        target,
        draft,
        sibling,
    })
}

/// ASpS's exact and sampled tokens over a chain of `n` tokens drafted after `context`.
fn chain_asps(
    context: &[u32],
    n: usize,
    trial: u64,
    vocab: usize,
    blur: f64,
    sampling: &Sampling,
    key: NoiseKey,
) -> Result<(f64, f64)> {
    let mut path = context.to_vec();
    let mut draft_rows = Vec::new();
    let mut tokens = Vec::new();
    for r in 0..n {
        let row = draft_logits(&path, vocab, blur);
        let token = draw(&row, sampling, hash_uniform(trial, 2 + r, 0))?;
        draft_rows.push(row);
        tokens.push(token);
        path.push(token);
    }
    let target_rows: Vec<Vec<f32>> = (0..=n)
        .map(|r| target_logits(&path[..context.len() + r], vocab))
        .collect();
    let step = PreparedStep::from_sampling(&target_rows, &draft_rows, &tokens, sampling)?;
    let sampled = step.sample(Method::Asps, key)?.num_emitted() as f64;
    Ok((step.law(Method::Asps).expected_tokens(), sampled))
}

/// Runs the tree mode and prints its table.
pub fn run(trials: u64, vocab: usize, blur: f64, sampling: &Sampling) -> Result<()> {
    println!(
        "asps simulate --tree (CPU reference): V = {vocab}, temperature {}, draft temperature \
         {}, draft blur {blur}, {trials} trees per shape; children drawn {}",
        sampling.temperature,
        sampling.draft_temperature(),
        if sampling.draft_temperature() == 0.0 {
            "as the draft's most probable tokens (deterministic)"
        } else {
            "without replacement"
        }
    );
    let start = std::time::Instant::now();
    println!(
        "  {:<18} {:>5} | {:>8} {:>8} | {:>9} {:>8} | {:>11} {:>8} | {:>8}",
        "shape",
        "nodes",
        "TV exact",
        "sampled",
        "RRS exact",
        "sampled",
        "chain exact",
        "sampled",
        "TV / RRS"
    );
    for (s, (name, parent)) in SHAPES.iter().enumerate() {
        let (mut tv, mut rrs, mut chain) = (Tally::default(), Tally::default(), Tally::default());
        for trial in 0..trials {
            let context = [trial as u32];
            let DrawnTree {
                tree,
                target,
                draft,
                sibling,
            } = draw_tree(parent, &context, trial, vocab, blur, sampling)?;
            let key = NoiseKey::new(trial, 1000 + s as u64);
            for (rule, tally) in [(TreeRule::Tv, &mut tv), (TreeRule::Rrs, &mut rrs)] {
                let law = tree_law_from_logits(rule, &tree, &target, &draft, sibling, sampling)?;
                let outcome =
                    tree_sample_from_logits(rule, &tree, &target, &draft, sibling, sampling, key)?;
                tally.exact += law.expected_tokens(&tree);
                tally.sampled += (tree.depth(outcome.node) + 1) as f64;
            }
            let (exact, sampled) = chain_asps(
                &context,
                parent.len() - 1,
                trial,
                vocab,
                blur,
                sampling,
                key,
            )?;
            chain.exact += exact;
            chain.sampled += sampled;
        }
        let t = trials as f64;
        println!(
            "  {name:<18} {:>5} | {:>8.4} {:>8.3} | {:>9.4} {:>8.3} | {:>11.4} {:>8.3} | {:>+7.2}%",
            parent.len(),
            tv.exact / t,
            tv.sampled / t,
            rrs.exact / t,
            rrs.sampled / t,
            chain.exact / t,
            chain.sampled / t,
            100.0 * (tv.exact / rrs.exact - 1.0)
        );
    }
    println!(
        "tokens per step (the accepted path and the next token); exact: mean over the drafts of \
         each step's expected tokens from its law; sampled: mean of one draw per draft; chain: \
         ASpS over N - 1 drafted tokens (N target rows, as the tree). {:.1} s.",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
