//! Losslessness by exact enumeration: for random autoregressive target/draft models over
//! V = 2..5 and n = 1..4, and for the edge cases, the law of the emitted sequence, averaged
//! over drafts x ~ q, satisfies the exactness statement of docs/design.md within 1e-12. Every per-draft
//! law also sums to 1 within 1e-12 (checked inside `output_law`).

mod common;

use asps::Method;
use common::{ArModels, Relation, exactness_error};

const TOLERANCE: f64 = 1e-12;

fn check(method: Method, relation: Relation, seeds: std::ops::Range<u64>) {
    for vocab in 2..=5 {
        for n in 1..=4 {
            for seed in seeds.clone() {
                let models =
                    ArModels::new(seed * 1000 + (vocab * 10 + n) as u64, vocab, n, relation);
                let (output, _) = models.output_law(method, n);
                let err = exactness_error(&models, &output, n);
                assert!(
                    err < TOLERANCE,
                    "{method:?} {relation:?} V={vocab} n={n} seed={seed}: exactness violated by {err:e}"
                );
            }
        }
    }
}

#[test]
fn asps_is_lossless_on_random_models() {
    check(Method::Asps, Relation::Random, 0..4);
}

#[test]
fn sps_is_lossless_on_random_models() {
    check(Method::Sps, Relation::Random, 0..4);
}

#[test]
fn both_rules_are_lossless_on_the_edge_cases() {
    for relation in Relation::ALL {
        for method in [Method::Asps, Method::Sps] {
            check(method, relation, 0..2);
        }
    }
}

/// The check itself can fail: a rule that always keeps the draft emits the draft law, not the
/// target's, and the exactness statement catches it.
#[test]
fn the_exactness_check_rejects_a_lossy_rule() {
    let models = ArModels::new(7, 3, 2, Relation::Random);
    let (mut output, _) = models.output_law(Method::Asps, 2);
    // Move a little mass between two outputs of the same length.
    let a = output.get(&vec![0u32, 0]).copied().unwrap_or(0.0);
    output.insert(vec![0, 0], a + 1e-6);
    let b = output.get(&vec![0u32, 1]).copied().unwrap_or(0.0);
    output.insert(vec![0, 1], b - 1e-6);
    assert!(exactness_error(&models, &output, 2) > 1e-7);
}

/// Greedy is exact for the argmax: with point-mass targets, it emits the target's sequence.
#[test]
fn greedy_follows_point_mass_targets() {
    for n in 1..=3 {
        let models = ArModels::new(11 + n as u64, 4, n, Relation::OneHotP);
        let (output, _) = models.output_law(Method::Greedy, n);
        assert!(exactness_error(&models, &output, n) < TOLERANCE);
    }
}
