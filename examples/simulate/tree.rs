//! `--tree`: draft trees on the CPU reference (docs/design.md, "Draft trees"). For each trial
//! and tree shape the drafter draws a tree over the synthetic models, each node's children
//! sequentially without replacement from its draft row (the drafter's sampling; a greedy
//! drafter takes its most probable tokens, deterministic children), and the tree is verified by
//! Traversal Verification and by recursive rejection sampling; beside them, ASpS on a chain
//! drafted from the same context with as many target rows as the tree has nodes (n = N - 1).
//! Tokens per step, exact (from each step's law, averaged over the drafts) and sampled (one
//! draw per draft, with the tree noise streams that kernels/tree.cu follows). With `--gpu` the
//! trees of each shape are also verified on the GPU, one batched tree call per rule with the
//! CPU's seeds and offsets, and its sampled means are printed beside; a GPU outcome other than
//! the CPU's makes the run fail (the kernels follow the same noise: only a float near-tie of a
//! decision could part them, and none is expected at these logits).

use asps::capi::AspsTreeVerifyArgs;
use asps::cuda::{BatchLogits, Gpu, TreeInputs, TreeOutputs, TreeVerifier};
use asps::reference::{
    PreparedStep, Sampling, SiblingLaw, Tree, TreeRule, argmax, tree_law_from_logits,
    tree_sample_from_logits, truncated_softmax,
};
use asps::rng::NoiseKey;
use asps::{Error, Method, Result};

use super::{DeviceSampling, draft_logits, draw, hash_uniform, target_logits};

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

/// The GPU's outcome (node, token) of each tree of one shape under `rule`, all in one call:
/// request i is `trees[i]`, keyed by `keys[i]` as on the CPU.
fn gpu_outcomes(
    gpu: &Gpu,
    trees: &[DrawnTree],
    keys: &[NoiseKey],
    rule: TreeRule,
    vocab: usize,
    sampling: &Sampling,
) -> Result<Vec<(usize, u32)>> {
    let stream = gpu.context().default_stream();
    let (b, nodes) = (trees.len(), trees[0].tree.parent.len());
    let zeros = vec![0f32; vocab];
    let target: Vec<f32> = trees.iter().flat_map(|t| t.target.concat()).collect();
    // Draft rows for nodes 0..nodes - 1 (the last node has no child); zeros where none.
    let draft: Vec<f32> = trees
        .iter()
        .flat_map(|t| (0..nodes - 1).flat_map(|u| t.draft[u].as_ref().unwrap_or(&zeros).clone()))
        .collect();
    let per_request =
        |f: &dyn Fn(&DrawnTree) -> Vec<i32>| -> Vec<i32> { trees.iter().flat_map(f).collect() };
    let parents = per_request(&|t| t.tree.parent.iter().map(|&p| p as i32).collect());
    let tokens = per_request(&|t| t.tree.token.iter().map(|&x| x as i32).collect());
    let laws = per_request(&|t| vec![AspsTreeVerifyArgs::sibling_law_code(t.sibling)]);
    let sampled = trees[0].sibling != SiblingLaw::Deterministic;
    let d_target = stream.clone_htod(&target)?;
    let d_draft = stream.clone_htod(&draft)?;
    let d_parents = stream.clone_htod(&parents)?;
    let d_tokens = stream.clone_htod(&tokens)?;
    let d_laws = stream.clone_htod(&laws)?;
    let d_nodes = stream.clone_htod(&vec![nodes as i32; b])?;
    let d_seeds = stream.clone_htod(&keys.iter().map(|k| k.seed).collect::<Vec<_>>())?;
    let mut d_offsets = stream.clone_htod(&keys.iter().map(|k| k.offset).collect::<Vec<_>>())?;
    let d_sampling = DeviceSampling::new(&stream, sampling, b)?;
    let inputs = TreeInputs {
        rule,
        batch: b,
        max_nodes: nodes,
        vocab,
        target: BatchLogits::packed(d_target.as_view(), nodes, vocab),
        draft: sampled.then(|| BatchLogits::packed(d_draft.as_view(), nodes - 1, vocab)),
        num_nodes: d_nodes.as_view(),
        parents: d_parents.as_view(),
        tokens: d_tokens.as_view(),
        sibling_laws: d_laws.as_view(),
        seeds: d_seeds.as_view(),
        sampling: d_sampling.inputs(),
    };
    let mut verifier = TreeVerifier::new(gpu, &stream, b, nodes)?;
    let mut out = TreeOutputs::new(&stream, b)?;
    verifier.verify(&inputs, &mut d_offsets, &mut out)?;
    out.read(&stream)?
        .into_iter()
        .map(|r| match r.status {
            asps::cuda::RequestStatus::Ok => Ok((r.node, r.token)),
            status => Err(Error::InvalidArgument(format!(
                "the GPU refused a tree: {status:?}"
            ))),
        })
        .collect()
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

/// Runs the tree mode and prints its table; with `gpu`, verifies every shape's trees on the GPU
/// too and fails if an outcome differs from the CPU's.
pub fn run(trials: u64, vocab: usize, blur: f64, sampling: &Sampling, gpu: bool) -> Result<()> {
    let gpu = gpu.then(|| Gpu::new(0)).transpose()?;
    if let Some(gpu) = &gpu {
        println!("--gpu: on {}", gpu.describe()?.0);
    }
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
        "  {:<18} {:>5} | {:>8} {:>8} | {:>9} {:>8} | {:>11} {:>8} | {:>8}{}",
        "shape",
        "nodes",
        "TV exact",
        "sampled",
        "RRS exact",
        "sampled",
        "chain exact",
        "sampled",
        "TV / RRS",
        if gpu.is_some() {
            format!(" | {:>8} {:>8}", "GPU TV", "GPU RRS")
        } else {
            String::new()
        }
    );
    for (s, (name, parent)) in SHAPES.iter().enumerate() {
        let (mut tv, mut rrs, mut chain) = (Tally::default(), Tally::default(), Tally::default());
        let (mut drawn, mut keys, mut cpu) = (Vec::new(), Vec::new(), [Vec::new(), Vec::new()]);
        for trial in 0..trials {
            let context = [trial as u32];
            let drawn_tree = draw_tree(parent, &context, trial, vocab, blur, sampling)?;
            let DrawnTree {
                tree,
                target,
                draft,
                sibling,
            } = &drawn_tree;
            let key = NoiseKey::new(trial, 1000 + s as u64);
            for (r, (rule, tally)) in [(TreeRule::Tv, &mut tv), (TreeRule::Rrs, &mut rrs)]
                .into_iter()
                .enumerate()
            {
                let law = tree_law_from_logits(rule, tree, target, draft, *sibling, sampling)?;
                let outcome =
                    tree_sample_from_logits(rule, tree, target, draft, *sibling, sampling, key)?;
                tally.exact += law.expected_tokens(tree);
                tally.sampled += (tree.depth(outcome.node) + 1) as f64;
                cpu[r].push((outcome.node, outcome.token));
            }
            drawn.push(drawn_tree);
            keys.push(key);
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
        let mut on_gpu = String::new();
        if let Some(gpu) = &gpu {
            let mut sampled = [0.0; 2];
            for (r, rule) in [TreeRule::Tv, TreeRule::Rrs].into_iter().enumerate() {
                let got = gpu_outcomes(gpu, &drawn, &keys, rule, vocab, sampling)?;
                for (i, (g, c)) in got.iter().zip(&cpu[r]).enumerate() {
                    if g != c {
                        return Err(Error::InvalidArgument(format!(
                            "simulate --tree --gpu: {name}, {rule:?}, tree {i}: GPU (node, \
                             token) {g:?}, CPU {c:?}"
                        )));
                    }
                    sampled[r] += (drawn[i].tree.depth(g.0) + 1) as f64;
                }
            }
            on_gpu = format!(" | {:>8.3} {:>8.3}", sampled[0] / t, sampled[1] / t);
        }
        println!(
            "  {name:<18} {:>5} | {:>8.4} {:>8.3} | {:>9.4} {:>8.3} | {:>11.4} {:>8.3} | {:>+7.2}%{on_gpu}",
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
         ASpS over N - 1 drafted tokens (N target rows, as the tree){}. {:.1} s.",
        if gpu.is_some() {
            "; GPU: the kernels' sampled means (every outcome equal to the CPU's)"
        } else {
            ""
        },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
