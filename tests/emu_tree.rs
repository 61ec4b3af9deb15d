//! The tree verification kernels (kernels/tree.cu), run by the CPU emulator of the CUDA
//! execution model, against the reference's tree sampler (src/reference/tree_sample.rs), which
//! draws with the same noise: greedy trees and trees of deterministic children (RRS's scalar
//! form), ragged batches of random shapes up to the largest tree, V up to 128256, f32, f16 and
//! bf16, with and without target truncation. Every request's accepted node and token equal the
//! reference's (random logits put no decision on a float near-tie here), its emitted count is
//! the node's depth + 1 and its offset advanced by one; malformed requests get their statuses.

use asps::Logit;
use asps::cuda::testing::{
    AspsTreeParams, TREE_WORKSPACE_BUFFERS, build_tree_workspace, tree_plan,
};
use asps::reference::{
    Sampling, SiblingLaw, Tree, TreeRule, Truncation, tree_sample_from_logits, truncated_softmax,
};
use asps::rng::NoiseKey;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::ffi::{CString, c_char};

mod common;
use common::tree::*;

unsafe extern "C" {
    /// Runs one launch of a tree kernel, by name (tests/emu/kernel_emu.cpp), and counts the
    /// bytes it loaded; 0 on success.
    fn asps_emu_tree_launch(
        kernel: *const c_char,
        params: *const AspsTreeParams,
        grid: u32,
        block: u32,
        bytes_read: *mut u64,
    ) -> i32;
}

/// Runs one batched call of TV (rule 0) on the emulator (block of 128 threads), rows packed
/// with `max_nodes` rows per request, through the host's checks and launch plan
/// (src/cuda/tree/plan.rs); returns each request's verdict and advanced offset.
fn run<T: Logit>(requests: &[Request<T>], vocab: usize, max_nodes: usize) -> Vec<(Verdict, u64)> {
    run_counted(requests, vocab, max_nodes, 0).0
}

/// [`run`] with the call's `rule`, and the bytes the call's two launches loaded.
fn run_counted<T: Logit>(
    requests: &[Request<T>],
    vocab: usize,
    max_nodes: usize,
    rule: i32,
) -> (Vec<(Verdict, u64)>, u64) {
    let mut packed = PackedTrees::new(requests, vocab, max_nodes);
    let args = packed.args(rule);
    let shape = args.check().expect("a valid call");
    let mut plan = tree_plan(&args, &shape);
    // The workspace, garbage as a real one holds: NaN floats and out-of-range integers alike.
    let workspace = vec![f32::NAN.to_bits(); TREE_WORKSPACE_BUFFERS * plan.cells];
    plan.params.ws = build_tree_workspace(workspace.as_ptr() as u64, plan.cells);
    let mut bytes_read = 0u64;
    for launch in plan.launches {
        let name = CString::new(launch.kernel.name(shape.dtype)).unwrap();
        let mut bytes = 0u64;
        // SAFETY: every pointer in the parameters is a live host buffer of the extent the
        // kernels index (B entries, B * max_nodes for parents and tokens, B * max_nodes rows of
        // V logits, the plan's workspace cells), borrowed until the call returns.
        let rc = unsafe {
            asps_emu_tree_launch(name.as_ptr(), &plan.params, launch.grid, 128, &mut bytes)
        };
        assert_eq!(rc, 0, "{name:?}");
        bytes_read += bytes;
    }
    (packed.verdicts(), bytes_read)
}

fn check_batch<T: Logit>(seed: u64, b: usize, vocab: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let requests = random_requests::<T>(&mut rng, b, vocab);
    let got = run(&requests, vocab, MAX_TREE_NODES);
    for (i, (r, (verdict, offset))) in requests.iter().zip(&got).enumerate() {
        let want = reference(r);
        assert_eq!(
            *verdict,
            want,
            "{:?} V = {vocab}, request {i}: T = {}, {:?}, tree {:?}",
            T::DTYPE,
            r.temperature,
            r.truncation,
            r.tree
        );
        assert_eq!(*offset, r.offset + 1, "request {i}'s offset");
    }
    requests.len()
}

/// Ragged batches of random trees (1 to 19 nodes, some of 64), greedy and sampled, truncated
/// or not, in every dtype: the reference's outcome, request for request.
#[test]
fn tree_outcomes_match_the_reference() {
    let mut requests = 0;
    for (seed, vocab) in [(1, 50), (2, 1000), (3, 5000)] {
        requests += check_batch::<f32>(seed, 24, vocab);
        requests += check_batch::<f16>(seed + 10, 24, vocab);
        requests += check_batch::<bf16>(seed + 20, 24, vocab);
    }
    println!("{requests} requests match the reference");
}

/// The largest vocabulary: a few requests at V = 128256 (the rows' truncation and race over
/// 8016 tiles).
#[test]
fn tree_outcomes_match_at_a_large_vocabulary() {
    check_batch::<bf16>(4, 3, 128_256);
}

/// Malformed requests get their statuses, beside valid ones that still verify: a parent not
/// before its node, no nodes, a token out of range, a NaN logit, a bad temperature, a bad
/// truncation, children drawn from draft rows by a greedy drafter, an unknown law, a bad draft
/// temperature, a NaN logit in a greedy request, a child its parent's draft row could not have
/// drawn, a token twice among children drawn without replacement.
#[test]
fn malformed_requests_get_their_statuses() {
    let vocab = 40;
    let mut rng = StdRng::seed_from_u64(9);
    let mut requests = random_requests::<f32>(&mut rng, 14, vocab);
    for r in &mut requests {
        r.temperature = 1.0;
        r.truncation = Truncation::OFF;
        if r.tree.parent.len() < 3 {
            let rows = random_rows::<f32>(&mut rng, 3, vocab);
            r.tree = random_tree(&mut rng, 3, &rows);
            r.rows = rows;
            r.draft_rows = vec![None; 3];
        }
    }
    requests[0].tree.parent[2] = 2;
    requests[1].tree.parent.clear();
    requests[1].tree.token.clear();
    requests[2].tree.token[1] = vocab as u32;
    requests[3].rows[1][5] = f32::NAN;
    requests[4].temperature = -1.0;
    requests[5].truncation.top_p = 0.0;
    requests[6].sibling = WITHOUT_REPLACEMENT;
    requests[6].draft_temperature = 0.0;
    requests[7].sibling = 3;
    requests[8].draft_temperature = f32::NAN;
    requests[9].temperature = 0.0;
    requests[9].rows[0][3] = f32::NAN;
    // Children drawn from draft rows: one the root's draft row could not have drawn, and one
    // token twice among children drawn without replacement.
    for r in &mut requests[10..12] {
        r.sibling = WITHOUT_REPLACEMENT;
        r.tree = Tree {
            parent: vec![0, 0, 0],
            token: vec![0, 5, 6],
        };
        r.draft_rows = vec![
            Some(random_rows::<f32>(&mut rng, 1, vocab).remove(0)),
            None,
            None,
        ];
    }
    requests[10].draft_rows[0].as_mut().unwrap()[6] = f32::NEG_INFINITY;
    requests[11].tree.token[2] = 5;
    let want = [
        STATUS_BAD_TREE,
        STATUS_BAD_TREE,
        STATUS_TOKEN_OUT_OF_RANGE,
        STATUS_NAN,
        STATUS_BAD_TEMPERATURE,
        STATUS_BAD_TRUNCATION,
        STATUS_BAD_TREE,
        STATUS_BAD_TREE,
        STATUS_BAD_TEMPERATURE,
        STATUS_NAN,
        STATUS_IMPOSSIBLE_DRAFT,
        STATUS_BAD_TREE,
    ];
    // The reference refuses the greedy request's NaN too.
    assert!(
        tree_sample_from_logits(
            TreeRule::Rrs,
            &requests[9].tree,
            &requests[9].rows,
            &vec![None; requests[9].rows.len()],
            SiblingLaw::Deterministic,
            &Sampling::plain(0.0),
            NoiseKey::new(0, 0),
        )
        .is_err()
    );
    let got = run(&requests, vocab, 20);
    for (i, &status) in want.iter().enumerate() {
        let (v, offset) = got[i];
        assert_eq!(
            v,
            Verdict {
                node: -1,
                token: -1,
                emitted: 0,
                status
            },
            "request {i}"
        );
        assert_eq!(offset, requests[i].offset + 1, "request {i}'s offset");
    }
    for i in want.len()..requests.len() {
        assert_eq!(got[i].0, reference(&requests[i]), "request {i}");
    }
}

/// Stars whose children are the row's four most probable tokens, on peaked rows: the first
/// children carry most of the mass, so the later ones are accepted with p(x) / R, R the mass
/// not yet rejected (RRS with deterministic children), far from p(x) alone.
#[test]
fn deterministic_children_share_the_remaining_mass() {
    let vocab = 64;
    let mut rng = StdRng::seed_from_u64(12);
    let requests: Vec<Request<f32>> = (0..64)
        .map(|i| {
            let row: Vec<f32> = (0..vocab)
                .map(|v| {
                    if v < 4 {
                        3.0 + rng.random::<f32>()
                    } else {
                        rng.random::<f32>()
                    }
                })
                .collect();
            let leaves: Vec<Vec<f32>> = (0..4)
                .map(|_| random_rows::<f32>(&mut rng, 1, vocab).remove(0))
                .collect();
            let mut rows = vec![row];
            rows.extend(leaves);
            Request {
                tree: Tree {
                    parent: vec![0, 0, 0, 0, 0],
                    token: vec![0, 0, 1, 2, 3],
                },
                draft_rows: vec![None; rows.len()],
                draft_truncation: Truncation::OFF,
                rows,
                temperature: 0.5,
                draft_temperature: 0.5,
                truncation: Truncation::OFF,
                sibling: DETERMINISTIC,
                seed: 77,
                offset: i,
            }
        })
        .collect();
    let got = run(&requests, vocab, 5);
    let mut later = 0;
    for (i, r) in requests.iter().enumerate() {
        let want = reference(r);
        assert_eq!(got[i].0, want, "request {i}");
        later += usize::from(want.node >= 2);
    }
    // The test reaches the later children (it can tell R from 1).
    assert!(later >= 16, "only {later} requests accepted a later child");
}

/// Children that cover a node's kept set: after the first is rejected the last one left holds
/// all the mass not yet rejected, so the reference accepts it with probability exactly 1, and
/// the kernels (whose remaining mass is summed, kernels/tree.cu) accept it too at a uniform
/// within 2^-22 of 1 (the offset found by search): rows masked down to the two children's
/// tokens, and rows truncated to them by top-k, at ten gaps between the two. (On these rows the
/// earlier form, 1 less the rejected masses, happened to stay within 2^-22 of 1 as well: the
/// test guards the certain acceptance, it did not catch that form.)
#[test]
fn children_covering_the_kept_set_leave_the_last_one_certain() {
    let vocab = 32;
    let seed = 5;
    // An offset whose first child (node 1, the less probable token) is rejected and whose
    // second child's (node 2) uniform lies within 2^-22 of 1.
    let top_cells = 1.0 - 2f64.powi(-22);
    let offset = (0u64..)
        .find(|&o| {
            let key = NoiseKey::new(seed, o);
            key.uniform_scalar(asps::rng::Purpose::TreeNode, 1) > 0.5
                && key.uniform_scalar(asps::rng::Purpose::TreeNode, 2) >= top_cells
        })
        .expect("an offset");
    let mut rng = StdRng::seed_from_u64(6);
    let mut requests: Vec<Request<f32>> = Vec::new();
    for gap in [0.1f32, 0.3, 0.6, 1.0, 1.4, 2.0, 2.7, 3.5, 4.2, 5.0] {
        for masked in [true, false] {
            let mut root: Vec<f32> = (0..vocab)
                .map(|_| {
                    if masked {
                        f32::NEG_INFINITY
                    } else {
                        -10.0 + rng.random::<f32>()
                    }
                })
                .collect();
            root[7] = gap;
            root[3] = 0.0;
            let mut rows = vec![root];
            rows.extend(random_rows::<f32>(&mut rng, 2, vocab));
            requests.push(Request {
                tree: Tree {
                    parent: vec![0, 0, 0],
                    token: vec![0, 3, 7],
                },
                draft_rows: vec![None; 3],
                draft_truncation: Truncation::OFF,
                rows,
                temperature: 1.0,
                draft_temperature: 1.0,
                truncation: if masked {
                    Truncation::OFF
                } else {
                    Truncation {
                        top_k: 2,
                        top_p: 1.0,
                        min_p: 0.0,
                    }
                },
                sibling: DETERMINISTIC,
                seed,
                offset,
            });
        }
    }
    let got = run(&requests, vocab, 3);
    for (i, r) in requests.iter().enumerate() {
        let want = reference(r);
        assert_eq!(
            want.node, 2,
            "request {i}: the reference accepts the last child"
        );
        assert_eq!(got[i].0, want, "request {i}");
    }
}

/// What a call reads (the emulator's count of global loads): B = 8 trees of 32 nodes with
/// deterministic children, V = 32000, bf16, truncated (top-k 50, top-p 0.9) or not, load at
/// most 1.1 times one read of their logits rows: every node's row once (with top-k, the few
/// tiles that can hold the top-k set again), the emitting node's row again (1/32 of a tree's
/// rows), and a few bytes per block of metadata and cells. The countable target for a tree call
/// is 1.5x.
#[test]
fn a_tree_call_reads_its_rows_about_once() {
    let (b, n, vocab): (usize, usize, usize) = (8, 32, 32_000);
    for truncation in [
        Truncation::OFF,
        Truncation {
            top_k: 50,
            top_p: 0.9,
            min_p: 0.0,
        },
    ] {
        let mut rng = StdRng::seed_from_u64(31);
        let requests: Vec<Request<bf16>> = (0..b)
            .map(|i| {
                let rows = random_rows::<bf16>(&mut rng, n, vocab);
                let tree = random_tree(&mut rng, n, &rows);
                Request {
                    tree,
                    draft_rows: vec![None; rows.len()],
                    draft_truncation: Truncation::OFF,
                    rows,
                    temperature: 1.0,
                    draft_temperature: 1.0,
                    truncation,
                    sibling: DETERMINISTIC,
                    seed: 3,
                    offset: i as u64,
                }
            })
            .collect();
        let (got, bytes) = run_counted(&requests, vocab, n, 0);
        for (i, r) in requests.iter().enumerate() {
            assert_eq!(got[i].0, reference(r), "request {i}");
        }
        let floor = (b * n * vocab * std::mem::size_of::<bf16>()) as f64;
        let ratio = bytes as f64 / floor;
        println!("{truncation:?}: a tree call loaded {ratio:.3}x its logits rows");
        assert!(ratio <= 1.1, "{truncation:?}: {ratio:.3}x the logits rows");
    }
}

/// Checks a batch of trees drawn from draft rows (sampled_requests: 32 in f32, then 16 in bf16,
/// of 1 to 13 nodes) under `rule` (0: TV, 1: RRS) against the reference, request for request.
fn check_sampled_batches(rule: i32, cases: [(u64, usize, i32); 3]) {
    let reference_rule = if rule == 0 {
        TreeRule::Tv
    } else {
        TreeRule::Rrs
    };
    fn check<T: Logit>(
        rng: &mut StdRng,
        b: usize,
        vocab: usize,
        law: i32,
        rule: i32,
        reference_rule: TreeRule,
    ) {
        let batch = sampled_requests::<T>(rng, b, vocab, law, 1..14);
        let (got, _) = run_counted(&batch, vocab, 14, rule);
        for (i, r) in batch.iter().enumerate() {
            assert_eq!(
                got[i].0,
                reference_sampled(r, reference_rule),
                "{:?} V = {vocab}, law {law}, request {i}: tree {:?}",
                T::DTYPE,
                r.tree
            );
        }
    }
    for (seed, vocab, law) in cases {
        let mut rng = StdRng::seed_from_u64(seed);
        check::<f32>(&mut rng, 32, vocab, law, rule, reference_rule);
        check::<bf16>(&mut rng, 16, vocab, law, rule, reference_rule);
    }
}

/// 64 stars of three children drawn under `law` from a root draft row over 8 tokens that favours
/// tokens 0 and 1, where the target favours the others (rows from `rng`; keys (`seed`, 0..64)):
/// the first children drawn are mostly 0 and 1 and rejected, and the later ones are tried
/// under the sibling law after those rejections (without replacement, q without the drawn
/// tokens divided by m, about 0.1: far from q itself).
fn contrarian_stars(rng: &mut StdRng, law: i32, seed: u64, count: u64) -> Vec<Request<f32>> {
    let vocab = 8;
    (0..count)
        .map(|i| {
            let rows: Vec<Vec<f32>> = (0..4)
                .map(|_| {
                    (0..vocab)
                        .map(|v| {
                            let base = if v < 2 { 0.0 } else { 1.0 };
                            base + rng.random::<f32>()
                        })
                        .collect()
                })
                .collect();
            let draft_root: Vec<f32> = (0..vocab)
                .map(|v| {
                    let base = if v < 2 { 3.0 } else { 0.0 };
                    base + rng.random::<f32>()
                })
                .collect();
            let q = truncated_softmax(&draft_root, 1.0, &Truncation::OFF).unwrap();
            let mut token = vec![0];
            for _ in 0..3 {
                let drawn = if law == WITHOUT_REPLACEMENT {
                    token[1..].to_vec()
                } else {
                    Vec::new()
                };
                token.push(draw_excluding(&q, &drawn, rng.random()));
            }
            Request {
                tree: Tree {
                    parent: vec![0, 0, 0, 0],
                    token,
                },
                rows,
                draft_rows: vec![Some(draft_root), None, None, None],
                draft_truncation: Truncation::OFF,
                temperature: 1.0,
                draft_temperature: 1.0,
                truncation: Truncation::OFF,
                sibling: law,
                seed,
                offset: i,
            }
        })
        .collect()
}

/// 64 roots over 8 tokens with two leaf children of tokens `tokens`, drawn without replacement
/// from a confident draft row (`draft_root` at temperature 0.1), the root's target row
/// `target` (leaves' rows from a generator seeded with `rows_seed`; keys (`seed`, 0..64)).
fn confident_draft_requests(
    target: &[f32],
    draft_root: &[f32],
    tokens: [u32; 2],
    rows_seed: u64,
    seed: u64,
) -> Vec<Request<f32>> {
    let vocab = target.len();
    let mut rng = StdRng::seed_from_u64(rows_seed);
    (0..64)
        .map(|i| Request {
            tree: Tree {
                parent: vec![0, 0, 0],
                token: vec![0, tokens[0], tokens[1]],
            },
            rows: vec![
                target.to_vec(),
                random_rows::<f32>(&mut rng, 1, vocab).remove(0),
                random_rows::<f32>(&mut rng, 1, vocab).remove(0),
            ],
            draft_rows: vec![Some(draft_root.to_vec()), None, None],
            draft_truncation: Truncation::OFF,
            temperature: 1.0,
            draft_temperature: 0.1,
            truncation: Truncation::OFF,
            sibling: WITHOUT_REPLACEMENT,
            seed,
            offset: i,
        })
        .collect()
}

/// Traversal Verification of trees drawn from draft rows, without and with replacement: the
/// reference sampler's outcome, request for request (ragged trees of 1 to 13 nodes, both
/// models' temperatures and truncations varied, f32 and bf16).
#[test]
fn traversal_verification_matches_the_reference() {
    check_sampled_batches(
        0,
        [
            (41, 50, WITHOUT_REPLACEMENT),
            (42, 300, WITH_REPLACEMENT),
            (43, 2000, WITHOUT_REPLACEMENT),
        ],
    );
}

/// Stars of three children drawn without replacement, TV (contrarian_stars): the later children
/// are tried under the sibling law after the first ones' rejections, q without the drawn tokens
/// divided by m (about 0.1), far from q itself. The reference's outcomes, request for request,
/// over 96 keys.
#[test]
fn traversal_verification_renormalises_the_sibling_law() {
    let mut rng = StdRng::seed_from_u64(51);
    let requests = contrarian_stars(&mut rng, WITHOUT_REPLACEMENT, 8, 96);
    let got = run(&requests, 8, 4);
    let mut third = 0;
    for (i, r) in requests.iter().enumerate() {
        let want = reference_tv(r);
        assert_eq!(got[i].0, want, "request {i}: tree {:?}", r.tree);
        third += usize::from(want.node == 3);
    }
    println!("{third} draws accepted the third child");
    // The draws reach the third child, where the renormalised law matters.
    assert!(third >= 8, "only {third} draws accepted the third child");
}

/// What a TV call reads (the emulator's count), B = 8 trees of 32 nodes drawn without
/// replacement from draft rows, V = 32000, bf16, over one read of the target rows and the
/// internal nodes' draft rows: every row once, plus a pass over a node's two rows for each
/// rejection the walk meets before a stage accepts, plus the emitting race. Printed, and held
/// to the 1.5x on average over the batch.
#[test]
fn a_tv_call_reads() {
    let (b, vocab): (usize, usize) = (8, 32_000);
    let mut rng = StdRng::seed_from_u64(61);
    let mut requests = sampled_requests::<bf16>(&mut rng, b, vocab, WITHOUT_REPLACEMENT, 32..33);
    for r in &mut requests {
        r.truncation = Truncation::OFF;
        r.draft_truncation = Truncation::OFF;
        r.temperature = 1.0;
        r.draft_temperature = 1.0;
    }
    let (got, bytes) = run_counted(&requests, vocab, 32, 0);
    let mut rows = 0;
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(got[i].0, reference_tv(r), "request {i}");
        rows += r.rows.len() + r.draft_rows.iter().filter(|d| d.is_some()).count();
    }
    let floor = (rows * vocab * std::mem::size_of::<bf16>()) as f64;
    let ratio = bytes as f64 / floor;
    println!("a TV call loaded {ratio:.3}x its {rows} logits rows");
    assert!(ratio <= 1.5, "{ratio:.3}x the logits rows");
}

/// A confident draft (temperature 0.1) whose two children, drawn without replacement, take all
/// but about 2e-9 of its mass: after the first is rejected, m (the draft's mass off the drawn
/// tokens) is that 2e-9, which 1 less the first's f32-rounded mass would leave at 0 (then
/// lambda' infinite and no weight to emit). The kernels sum it, and match the reference over
/// 64 keys, about half of which reject the first child.
#[test]
fn a_confident_draft_keeps_its_remaining_mass() {
    let vocab = 8;
    let mut target = vec![-10.0f32; vocab];
    target[0] = 0.0;
    target[1] = 0.0;
    let mut draft_root = vec![-10.0f32; vocab];
    draft_root[0] = 0.0;
    draft_root[1] = -2.0;
    let requests = confident_draft_requests(&target, &draft_root, [0, 1], 71, 12);
    let got = run(&requests, vocab, 3);
    let mut second = 0;
    for (i, r) in requests.iter().enumerate() {
        let want = reference_tv(r);
        assert_eq!(got[i].0, want, "request {i}");
        second += usize::from(want.node != 1);
    }
    assert!(second >= 16, "only {second} draws rejected the first child");
}

/// Recursive rejection sampling of trees drawn from draft rows, without and with replacement:
/// the reference sampler's outcome, request for request (as the TV test), and stars on the
/// rows where the sibling law after rejections is far from q, so that the law RRS holds after
/// several rejections (p_k, and its race) is exercised.
#[test]
fn recursive_rejection_sampling_matches_the_reference() {
    check_sampled_batches(
        1,
        [
            (81, 50, WITHOUT_REPLACEMENT),
            (82, 300, WITH_REPLACEMENT),
            (83, 2000, WITHOUT_REPLACEMENT),
        ],
    );
    let mut rng = StdRng::seed_from_u64(84);
    let mut emitted_after_rejections = 0;
    for law in [WITHOUT_REPLACEMENT, WITH_REPLACEMENT] {
        let requests = contrarian_stars(&mut rng, law, 9, 64);
        let (got, _) = run_counted(&requests, 8, 4, 1);
        for (i, r) in requests.iter().enumerate() {
            let want = reference_sampled(r, TreeRule::Rrs);
            assert_eq!(got[i].0, want, "law {law}, request {i}: tree {:?}", r.tree);
            emitted_after_rejections += usize::from(want.node == 0 || want.node == 3);
        }
    }
    assert!(
        emitted_after_rejections >= 16,
        "only {emitted_after_rejections} draws went past two rejections"
    );
}

/// RRS with a confident draft (temperature 0.1): its first child holds all but about 1e-43 of
/// the draft's mass, which f32 flushes to 0 at its absolute scale; the sibling law after that
/// child's rejection is q renormalised over the rest, of order 1. The kernels carry m's
/// logarithm, so the second child (accepted with probability 1 by the reference) is accepted,
/// over 64 keys, about half of which reject the first.
#[test]
fn rrs_keeps_a_confident_drafts_renormalised_law() {
    let vocab = 8;
    let mut target = vec![-10.0f32; vocab];
    target[0] = 0.0;
    target[2] = 0.0;
    let mut draft_root = vec![-10.0f32; vocab];
    draft_root[0] = 0.0;
    let requests = confident_draft_requests(&target, &draft_root, [0, 2], 91, 13);
    let (got, _) = run_counted(&requests, vocab, 3, 1);
    let mut second = 0;
    for (i, r) in requests.iter().enumerate() {
        let want = reference_sampled(r, TreeRule::Rrs);
        assert_eq!(got[i].0, want, "request {i}");
        second += usize::from(want.node == 2);
    }
    assert!(
        second >= 16,
        "only {second} draws accepted the second child"
    );
}

/// The kernels' emitted law, fitted by chi-square: one small tree (a root with two children
/// drawn without replacement, the first with a child of its own; V = 5), the same rows for
/// every request, 10000 requests of distinct seeds through the emulator for each rule; the
/// counts of (accepted node, token) against the reference's exact law of that tree
/// (tree_law_from_logits). Significance level 1e-3; the statistic pools categories expected
/// under 5 times.
#[test]
fn the_kernels_draw_the_tree_law() {
    use asps::reference::tree_law_from_logits;
    let vocab = 5;
    let tree = Tree {
        parent: vec![0, 0, 0, 1],
        token: vec![0, 2, 4, 1],
    };
    let rows: Vec<Vec<f32>> = vec![
        vec![0.3, -0.2, 0.9, 0.1, 0.5],
        vec![0.8, 0.4, -0.5, 0.2, 0.0],
        vec![0.1, 0.1, 0.6, -0.3, 0.7],
        vec![-0.4, 0.9, 0.3, 0.3, 0.2],
    ];
    let draft: Vec<Vec<f32>> = vec![
        vec![0.2, 0.1, 1.2, 0.0, 0.4],
        vec![0.5, 0.9, -0.2, 0.1, 0.3],
    ];
    let draft_rows: Vec<Option<Vec<f32>>> =
        vec![Some(draft[0].clone()), Some(draft[1].clone()), None, None];
    let draws = 10_000u64;
    for (rule, code) in [(TreeRule::Tv, 0), (TreeRule::Rrs, 1)] {
        let sampling = Sampling::plain(1.0);
        let law = tree_law_from_logits(
            rule,
            &tree,
            &rows,
            &draft_rows,
            SiblingLaw::WithoutReplacement,
            &sampling,
        )
        .unwrap();
        let mut counts = vec![0u64; tree.parent.len() * vocab];
        for batch in 0..4 {
            let requests: Vec<Request<f32>> = (0..draws / 4)
                .map(|i| Request {
                    tree: tree.clone(),
                    rows: rows.clone(),
                    draft_rows: draft_rows.clone(),
                    draft_truncation: Truncation::OFF,
                    temperature: 1.0,
                    draft_temperature: 1.0,
                    truncation: Truncation::OFF,
                    sibling: WITHOUT_REPLACEMENT,
                    seed: 1_000_000 * batch + i,
                    offset: 3,
                })
                .collect();
            for (v, _) in run_counted(&requests, vocab, 4, code).0 {
                assert_eq!(v.status, STATUS_OK);
                counts[v.node as usize * vocab + v.token as usize] += 1;
            }
        }
        let probs: Vec<f64> = law.emit.iter().flatten().copied().collect();
        let (stat, df, p) = common::chi2::chi2_of_counts(&counts, &probs, draws);
        println!("{rule:?}: chi-square {stat:.2} on {df} degrees of freedom, p = {p:.4}");
        assert!(
            p > 1e-3,
            "{rule:?}: p = {p} (counts {counts:?}, law {probs:?})"
        );
    }
}
