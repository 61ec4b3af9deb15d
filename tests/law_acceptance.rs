//! How many tokens each rule emits, from the exact laws.

mod common;

use asps::Method;
use asps::reference::{PreparedStep, step_law};
use common::{ArModels, Relation, all_sequences};

/// With n = 1 the two rules are the same coupling: equal laws for every draft.
#[test]
fn asps_and_sps_laws_are_equal_for_one_draft_token() {
    for relation in Relation::ALL {
        for vocab in 2..=6 {
            let models = ArModels::new(vocab as u64, vocab, 1, relation);
            for x in all_sequences(vocab, 1) {
                if models.q_seq(&x) == 0.0 {
                    continue;
                }
                let a = models.law(Method::Asps, &x);
                let s = models.law(Method::Sps, &x);
                assert!(
                    (a.accept_all - s.accept_all).abs() < 1e-14,
                    "{relation:?} {x:?}"
                );
                for (ra, rs) in a.reject[0].iter().zip(&s.reject[0]) {
                    assert!((ra - rs).abs() < 1e-14, "{relation:?} V={vocab} {x:?}");
                }
            }
        }
    }
}

/// Averaged over drafts x ~ q, ASpS emits at least as many tokens as SpS (n >= 2).
#[test]
fn asps_emits_at_least_as_many_tokens_as_sps_on_average() {
    let mut strictly_more = 0;
    for relation in [
        Relation::Random,
        Relation::QZeroWhereP,
        Relation::PZeroWhereQ,
        Relation::OneHotQ,
    ] {
        for vocab in 2..=5 {
            for n in 2..=4 {
                for seed in 0..3 {
                    let models = ArModels::new(100 + seed, vocab, n, relation);
                    let (_, asps) = models.output_law(Method::Asps, n);
                    let (_, sps) = models.output_law(Method::Sps, n);
                    assert!(
                        asps >= sps - 1e-12,
                        "{relation:?} V={vocab} n={n} seed={seed}: ASpS {asps} < SpS {sps}"
                    );
                    if asps > sps + 1e-9 {
                        strictly_more += 1;
                    }
                }
            }
        }
    }
    // The gain is real, not an artefact of equal laws.
    assert!(
        strictly_more > 50,
        "ASpS was strictly better in only {strictly_more} cases"
    );
}

/// p = (1/3, 2/3), q = (2/3, 1/3) at every prefix, n = 2: SpS emits 1 + 2/3 + 4/9 = 19/9 tokens
/// per step, ASpS 20/9.
#[test]
fn binary_example_gives_19_over_9_and_20_over_9() {
    let p = [1.0 / 3.0, 2.0 / 3.0];
    let q = [2.0 / 3.0, 1.0 / 3.0];
    let models = ArModels::stationary(2, 2, &p, &q);
    let (_, sps) = models.output_law(Method::Sps, 2);
    let (_, asps) = models.output_law(Method::Asps, 2);
    assert!((sps - 19.0 / 9.0).abs() < 1e-14, "SpS: {sps}");
    assert!((asps - 20.0 / 9.0).abs() < 1e-14, "ASpS: {asps}");
}

/// ASpS beats SpS on average but not draft by draft. In the binary example, the draft (0, 0)
/// has s = (1, 1/2, 1/4); row 1: res = (0, 1/3), A = 1/3, t = (1/2)/(1/3) = 3/2; row 2:
/// res = max(0, p/2 - q) = 0, A = 1/2, t = (3/4)/(1/2) = 3/2. So ASpS emits token 1 at once with
/// probability T_1 res_1(1) = 9/4 * 1/3 = 3/4 and keeps both with probability 1/4: 3/2 tokens,
/// against SpS's 1/2 * 1 + 1/4 * 2 + 1/4 * 3 = 7/4.
#[test]
fn asps_is_not_better_for_every_single_draft() {
    let p = [1.0 / 3.0, 2.0 / 3.0];
    let q = [2.0 / 3.0, 1.0 / 3.0];
    let asps = step_law(Method::Asps, &[p, p, p], &[q, q], &[0, 0]).unwrap();
    assert!((asps.reject[0][1] - 0.75).abs() < 1e-15);
    assert!(asps.reject[0][0] == 0.0 && asps.reject[1].iter().all(|&x| x == 0.0));
    assert!((asps.accept_all - 0.25).abs() < 1e-15);
    assert!((asps.expected_tokens() - 1.5).abs() < 1e-15);
    let sps = step_law(Method::Sps, &[p, p, p], &[q, q], &[0, 0]).unwrap();
    assert!((sps.expected_tokens() - 1.75).abs() < 1e-15);
}

/// The expected token count is the mean of (accepted + 1) under the law; check it against
/// the accepted-count law computed by hand for SpS: P(k kept) = a^k (1 - a) for k < n.
#[test]
fn expected_tokens_matches_a_hand_computed_sps_case() {
    // Same token drafted at every position, with p(x) / q(x) = 0.6 each time.
    let p = [0.3, 0.7];
    let q = [0.5, 0.5];
    let law = step_law(Method::Sps, &[p, p, p, p], &[q, q, q], &[0, 0, 0]).unwrap();
    let a: f64 = 0.6;
    let expect = [1.0 - a, a * (1.0 - a), a * a * (1.0 - a), a * a * a];
    for (k, (&got, want)) in law.accepted_law().iter().zip(expect).enumerate() {
        assert!(
            (got - want).abs() < 1e-15,
            "P({k} kept) = {got}, want {want}"
        );
    }
    let mean: f64 = expect
        .iter()
        .enumerate()
        .map(|(k, pk)| (k + 1) as f64 * pk)
        .sum();
    assert!((law.expected_tokens() - mean).abs() < 1e-14);
    assert!((law.total() - 1.0).abs() < 1e-15);
}

/// ASpS's scan: s_r = min(1, s_{r-1} rho_r) by hand.
#[test]
fn acceptance_scales_follow_the_scan() {
    let p1 = [0.2, 0.8];
    let q1 = [0.4, 0.6]; // rho(0) = 0.5
    let p2 = [0.9, 0.1];
    let q2 = [0.3, 0.7]; // rho(0) = 3
    let step = PreparedStep::from_probs(&[p1, p2, p1], &[q1, q2], &[0, 0]).unwrap();
    let s = step.acceptance_scales();
    assert_eq!(s.len(), 3);
    assert!((s[0] - 1.0).abs() < 1e-15);
    assert!((s[1] - 0.5).abs() < 1e-15);
    assert!((s[2] - 1.0).abs() < 1e-15); // min(1, 0.5 * 3)
    let law = step.law(Method::Asps);
    assert!((law.accept_all - 1.0).abs() < 1e-15);
    assert!((law.total() - 1.0).abs() < 1e-15);
}
