//! Draft-tree test support: random requests (trees, logits rows, samplings), the reference's
//! verdict for each, and a batch packed as a tree call's arrays, for the emulator's tests
//! (tests/emu_tree.rs) and the GPU's (tests/gpu_tree.rs).
#![allow(dead_code)]

use asps::Logit;
use asps::capi::{AspsSampling, AspsTreeVerifyArgs, AspsTruncation, AspsVerifyArgs};
use asps::reference::{
    Sampling, SiblingLaw, Tree, TreeOutcome, TreeRule, Truncation, tree_sample_from_logits,
    truncated_softmax,
};
use asps::rng::NoiseKey;
use rand::Rng;
use rand::rngs::StdRng;

pub const MAX_TREE_NODES: usize = 64;
pub const DETERMINISTIC: i32 = 2;
pub const WITHOUT_REPLACEMENT: i32 = 0;
pub const WITH_REPLACEMENT: i32 = 1;
pub const STATUS_OK: i32 = 0;
pub const STATUS_NAN: i32 = 1;
pub const STATUS_TOKEN_OUT_OF_RANGE: i32 = 4;
pub const STATUS_IMPOSSIBLE_DRAFT: i32 = 5;
pub const STATUS_BAD_TEMPERATURE: i32 = 7;
pub const STATUS_BAD_TRUNCATION: i32 = 9;
pub const STATUS_BAD_TREE: i32 = 10;

/// One request of a batch: its tree, logits rows (one per node; draft rows for the internal
/// nodes of trees drawn from them), sampling and law.
pub struct Request<T> {
    pub tree: Tree,
    pub rows: Vec<Vec<T>>,
    pub draft_rows: Vec<Option<Vec<T>>>,
    pub draft_truncation: Truncation,
    pub temperature: f32,
    /// The drafter's temperature (checked only: deterministic children read no draft row).
    pub draft_temperature: f32,
    pub truncation: Truncation,
    pub sibling: i32,
    pub seed: u64,
    pub offset: u64,
}

/// What the kernels wrote for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub node: i32,
    pub token: i32,
    pub emitted: i32,
    pub status: i32,
}

/// A random tree of `n` nodes: each node's parent among the earlier ones (deeper trees
/// favoured), its token one of the parent row's larger logits (as a drafter's top tokens), at
/// times the argmax, so that greedy walks descend.
pub fn random_tree<T: Logit>(rng: &mut StdRng, n: usize, rows: &[Vec<T>]) -> Tree {
    let mut parent = vec![0];
    let mut token = vec![0];
    for i in 1..n {
        let u = if rng.random::<f64>() < 0.5 {
            i - 1
        } else {
            rng.random_range(0..i)
        };
        let row = &rows[u];
        let mut order: Vec<u32> = (0..row.len() as u32).collect();
        order.sort_by(|&a, &b| {
            row[b as usize]
                .to_f64()
                .total_cmp(&row[a as usize].to_f64())
        });
        let x = order[rng.random_range(0..order.len().min(4))];
        parent.push(u);
        token.push(x);
    }
    Tree { parent, token }
}

pub fn random_rows<T: Logit>(rng: &mut StdRng, n: usize, vocab: usize) -> Vec<Vec<T>> {
    let spread = [2.0, 6.0, 12.0][rng.random_range(0..3)];
    (0..n)
        .map(|_| {
            (0..vocab)
                .map(|_| T::from_f64(spread * rng.random::<f64>()))
                .collect()
        })
        .collect()
}

/// The reference's verdict for a request (a valid one).
pub fn reference<T: Logit>(r: &Request<T>) -> Verdict {
    let sampling = Sampling {
        target: r.truncation,
        ..Sampling::plain(f64::from(r.temperature))
    };
    let draft: Vec<Option<Vec<T>>> = vec![None; r.rows.len()];
    let o = tree_sample_from_logits(
        TreeRule::Rrs,
        &r.tree,
        &r.rows,
        &draft,
        SiblingLaw::Deterministic,
        &sampling,
        NoiseKey::new(r.seed, r.offset),
    )
    .expect("a valid request");
    r.verdict(o)
}

pub fn random_requests<T: Logit>(rng: &mut StdRng, b: usize, vocab: usize) -> Vec<Request<T>> {
    (0..b)
        .map(|i| {
            let n = if rng.random::<f64>() < 0.1 {
                MAX_TREE_NODES
            } else {
                rng.random_range(1..20)
            };
            let rows = random_rows::<T>(rng, n, vocab);
            let tree = random_tree(rng, n, &rows);
            let truncation = [
                Truncation::OFF,
                Truncation {
                    top_k: 20,
                    top_p: 1.0,
                    min_p: 0.0,
                },
                Truncation {
                    top_k: 0,
                    top_p: 0.9,
                    min_p: 0.05,
                },
            ][rng.random_range(0..3)];
            Request {
                tree,
                draft_rows: vec![None; rows.len()],
                draft_truncation: Truncation::OFF,
                rows,
                temperature: [0.0f32, 0.7, 1.0, 1.5][rng.random_range(0..4)],
                draft_temperature: 1.0,
                truncation,
                sibling: DETERMINISTIC,
                seed: rng.random(),
                offset: 1000 + i as u64,
            }
        })
        .collect()
}

/// One token drawn from `q` without the `excluded` tokens, by inversion of `u`.
pub fn draw_excluding(q: &[f64], excluded: &[u32], u: f64) -> u32 {
    let kept = |v: usize| !excluded.contains(&(v as u32)) && q[v] > 0.0;
    let mass: f64 = (0..q.len()).filter(|&v| kept(v)).map(|v| q[v]).sum();
    let goal = u * mass;
    let mut acc = 0.0;
    let mut last = 0;
    for v in (0..q.len()).filter(|&v| kept(v)) {
        acc += q[v];
        last = v as u32;
        if goal < acc {
            break;
        }
    }
    last
}

/// Requests whose children were drawn from draft rows under `law` (0: without replacement, 1:
/// with): target rows, draft rows near them for the internal nodes, both temperatures and
/// truncations varied, each node's children drawn from its truncated draft softmax.
pub fn sampled_requests<T: Logit>(
    rng: &mut StdRng,
    b: usize,
    vocab: usize,
    law: i32,
    nodes: std::ops::Range<usize>,
) -> Vec<Request<T>> {
    (0..b)
        .map(|i| {
            let n = rng.random_range(nodes.clone());
            let rows = random_rows::<T>(rng, n, vocab);
            let temperature = [0.7f32, 1.0, 1.5][rng.random_range(0..3)];
            let draft_temperature = [0.8f32, 1.0, 1.3][rng.random_range(0..3)];
            let truncations = [
                Truncation::OFF,
                Truncation {
                    top_k: 20,
                    top_p: 1.0,
                    min_p: 0.0,
                },
                Truncation {
                    top_k: 0,
                    top_p: 0.95,
                    min_p: 0.02,
                },
            ];
            let truncation = truncations[rng.random_range(0..3)];
            let draft_truncation = truncations[rng.random_range(0..3)];
            // Draft rows: the target's, blurred.
            let blurred: Vec<Vec<T>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|x| T::from_f64(x.to_f64() + 1.5 * rng.random::<f64>()))
                        .collect()
                })
                .collect();
            let mut parent = vec![0];
            let mut token = vec![0];
            let mut q_rows: Vec<Option<Vec<f64>>> = vec![None; n];
            for c in 1..n {
                let u = if rng.random::<f64>() < 0.5 {
                    c - 1
                } else {
                    rng.random_range(0..c)
                };
                let q = q_rows[u].get_or_insert_with(|| {
                    truncated_softmax(&blurred[u], f64::from(draft_temperature), &draft_truncation)
                        .unwrap()
                });
                let siblings: Vec<u32> = (1..c)
                    .filter(|&j| parent[j] == u)
                    .map(|j| token[j])
                    .collect();
                let excluded = if law == WITHOUT_REPLACEMENT {
                    siblings
                } else {
                    Vec::new()
                };
                let x = draw_excluding(q, &excluded, rng.random());
                parent.push(u);
                token.push(x);
            }
            let tree = Tree { parent, token };
            let draft_rows = (0..n)
                .map(|u| (!tree.children(u).is_empty()).then(|| blurred[u].clone()))
                .collect();
            Request {
                tree,
                rows,
                draft_rows,
                draft_truncation,
                temperature,
                draft_temperature,
                truncation,
                sibling: law,
                seed: rng.random(),
                offset: 7 + i as u64,
            }
        })
        .collect()
}

/// The reference's TV outcome for a request whose children were drawn from draft rows.
pub fn reference_tv<T: Logit>(r: &Request<T>) -> Verdict {
    reference_sampled(r, TreeRule::Tv)
}

/// The reference's outcome under `rule` for a request whose children were drawn from draft
/// rows.
pub fn reference_sampled<T: Logit>(r: &Request<T>, rule: TreeRule) -> Verdict {
    let sampling = Sampling {
        temperature: f64::from(r.temperature),
        draft_temperature: Some(f64::from(r.draft_temperature)),
        target: r.truncation,
        draft: r.draft_truncation,
    };
    let law = if r.sibling == WITHOUT_REPLACEMENT {
        SiblingLaw::WithoutReplacement
    } else {
        SiblingLaw::WithReplacement
    };
    let o = tree_sample_from_logits(
        rule,
        &r.tree,
        &r.rows,
        &r.draft_rows,
        law,
        &sampling,
        NoiseKey::new(r.seed, r.offset),
    )
    .expect("a valid request");
    r.verdict(o)
}

impl<T> Request<T> {
    /// The verdict of the kernels that emit `o` for this request.
    pub fn verdict(&self, o: TreeOutcome) -> Verdict {
        Verdict {
            node: o.node as i32,
            token: o.token as i32,
            emitted: self.tree.depth(o.node) as i32 + 1,
            status: STATUS_OK,
        }
    }
}

/// A batch of requests as a tree call's host arrays: `max_nodes` node slots per request,
/// rows packed (`[B, max_nodes, V]`; draft rows `[B, max_nodes - 1, V]`, exactly the extent a
/// call reads), outputs filled with 7.
pub struct PackedTrees<T> {
    pub batch: usize,
    pub max_nodes: usize,
    pub vocab: usize,
    pub logits: Vec<T>,
    pub draft: Vec<T>,
    pub num_nodes: Vec<i32>,
    pub parents: Vec<i32>,
    pub tokens: Vec<i32>,
    pub laws: Vec<i32>,
    pub temps: Vec<f32>,
    pub draft_temps: Vec<f32>,
    /// Each model's (top_k, top_p, min_p) per request: the target's, then the draft's.
    pub top_k: [Vec<i32>; 2],
    pub top_p: [Vec<f32>; 2],
    pub min_p: [Vec<f32>; 2],
    pub seeds: Vec<u64>,
    pub offsets: Vec<u64>,
    /// Outputs: node, token, emitted, status.
    pub out: [Vec<i32>; 4],
}

impl<T: Logit> PackedTrees<T> {
    pub fn new(requests: &[Request<T>], vocab: usize, max_nodes: usize) -> Self {
        let b = requests.len();
        let mut logits = vec![T::from_f64(0.0); b * max_nodes * vocab];
        // The last node slot has no child, so no draft row.
        let draft_rows = max_nodes - 1;
        let mut draft = vec![T::from_f64(0.0); b * draft_rows * vocab];
        let mut num_nodes = vec![0i32; b];
        let mut parents = vec![0i32; b * max_nodes];
        let mut tokens = vec![0i32; b * max_nodes];
        for (i, r) in requests.iter().enumerate() {
            num_nodes[i] = r.tree.parent.len() as i32;
            for (u, row) in r.rows.iter().enumerate().take(max_nodes) {
                logits[(i * max_nodes + u) * vocab..][..vocab].copy_from_slice(row);
            }
            for (u, row) in r.draft_rows.iter().enumerate().take(draft_rows) {
                if let Some(row) = row {
                    draft[(i * draft_rows + u) * vocab..][..vocab].copy_from_slice(row);
                }
            }
            for u in 1..r.tree.parent.len().min(max_nodes) {
                parents[i * max_nodes + u] = r.tree.parent[u] as i32;
                tokens[i * max_nodes + u] = r.tree.token[u] as i32;
            }
        }
        let each = |f: &dyn Fn(&Request<T>) -> Truncation| {
            let t: Vec<Truncation> = requests.iter().map(f).collect();
            (
                t.iter().map(|t| t.top_k).collect::<Vec<_>>(),
                t.iter().map(|t| t.top_p).collect::<Vec<_>>(),
                t.iter().map(|t| t.min_p).collect::<Vec<_>>(),
            )
        };
        let (tk, tp, tm) = each(&|r| r.truncation);
        let (dk, dp, dm) = each(&|r| r.draft_truncation);
        PackedTrees {
            batch: b,
            max_nodes,
            vocab,
            logits,
            draft,
            num_nodes,
            parents,
            tokens,
            laws: requests.iter().map(|r| r.sibling).collect(),
            temps: requests.iter().map(|r| r.temperature).collect(),
            draft_temps: requests.iter().map(|r| r.draft_temperature).collect(),
            top_k: [tk, dk],
            top_p: [tp, dp],
            min_p: [tm, dm],
            seeds: requests.iter().map(|r| r.seed).collect(),
            offsets: requests.iter().map(|r| r.offset).collect(),
            out: std::array::from_fn(|_| vec![7; b]),
        }
    }

    /// The call over these arrays (host addresses: for the emulator), under `rule`.
    pub fn args(&mut self, rule: i32) -> AspsTreeVerifyArgs {
        let (b, nodes, v) = (self.batch, self.max_nodes, self.vocab);
        let truncation = |m: usize, s: &Self| AspsTruncation {
            top_k: s.top_k[m].as_ptr(),
            top_p: s.top_p[m].as_ptr(),
            min_p: s.min_p[m].as_ptr(),
        };
        let sampling = AspsSampling {
            temperature: self.temps.as_ptr(),
            target: truncation(0, self),
            draft: truncation(1, self),
            draft_temperature: self.draft_temps.as_ptr(),
        };
        let [node, token, emitted, status] = &mut self.out;
        AspsTreeVerifyArgs {
            rule,
            dtype: AspsVerifyArgs::dtype_code(T::DTYPE),
            batch: b as i32,
            max_nodes: nodes as i32,
            vocab: v as i32,
            target_logits: self.logits.as_ptr().cast(),
            target_batch_stride: (nodes * v) as i64,
            target_node_stride: v as i64,
            // None to read with one node slot.
            draft_logits: if self.draft.is_empty() {
                std::ptr::null()
            } else {
                self.draft.as_ptr().cast()
            },
            draft_batch_stride: ((nodes - 1) * v) as i64,
            draft_node_stride: v as i64,
            num_nodes: self.num_nodes.as_ptr(),
            parents: self.parents.as_ptr(),
            tokens: self.tokens.as_ptr(),
            sibling_laws: self.laws.as_ptr(),
            seeds: self.seeds.as_ptr(),
            offsets: self.offsets.as_mut_ptr(),
            out_node: node.as_mut_ptr(),
            out_token: token.as_mut_ptr(),
            out_num_emitted: emitted.as_mut_ptr(),
            out_status: status.as_mut_ptr(),
            sampling,
            ..AspsTreeVerifyArgs::new()
        }
    }

    /// Each request's verdict (from `out`) and offset.
    pub fn verdicts(&self) -> Vec<(Verdict, u64)> {
        let [node, token, emitted, status] = &self.out;
        (0..self.batch)
            .map(|i| {
                let v = Verdict {
                    node: node[i],
                    token: token[i],
                    emitted: emitted[i],
                    status: status[i],
                };
                (v, self.offsets[i])
            })
            .collect()
    }
}
