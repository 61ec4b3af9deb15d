//! The samplers against the exact laws, by chi-square goodness of fit.
//!
//! Every test uses fixed seeds, so its outcome is deterministic; the thresholds are the
//! significance level ALPHA = 1e-3 (a correct sampler fails a given test with probability 1e-3
//! over the choice of seeds). Bins are merged until each expects at least 5 draws. A single draw
//! of an outcome of probability 0 fails a test outright.

mod common;

use std::collections::HashMap;

use asps::reference::PreparedStep;
use asps::rng::testing::StreamLayout;
use asps::{Method, NoiseKey, Outcome};
use common::{Chi2, chi2_against_law, chi2_sf};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ALPHA: f64 = 1e-3;

fn random_logits(rng: &mut StdRng, rows: usize, vocab: usize, spread: f64) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|_| {
            (0..vocab)
                .map(|_| (rng.random::<f64>() * spread) as f32)
                .collect()
        })
        .collect()
}

/// A step whose draft tokens were drawn from the draft rows, as an engine would.
fn random_step(seed: u64, vocab: usize, n: usize, spread: f64) -> PreparedStep {
    let mut rng = StdRng::seed_from_u64(seed);
    let target = random_logits(&mut rng, n + 1, vocab, spread);
    let draft = random_logits(&mut rng, n, vocab, spread);
    let tokens: Vec<u32> = draft
        .iter()
        .map(|row| {
            let p = asps::reference::softmax(row, 1.0).unwrap();
            let mut u: f64 = rng.random();
            let mut pick = vocab - 1;
            for (v, pv) in p.iter().enumerate() {
                if u < *pv {
                    pick = v;
                    break;
                }
                u -= pv;
            }
            pick as u32
        })
        .collect();
    PreparedStep::from_logits(&target, &draft, &tokens, 1.0).unwrap()
}

fn draw(
    step: &PreparedStep,
    method: Method,
    seed: u64,
    draws: u64,
    layout: &StreamLayout,
) -> HashMap<Outcome, u64> {
    let mut counts = HashMap::new();
    for offset in 0..draws {
        let out = step
            .sample_with_layout(method, NoiseKey::new(seed, offset), layout)
            .unwrap();
        *counts.entry(out).or_default() += 1;
    }
    counts
}

fn test(step: &PreparedStep, method: Method, seed: u64, draws: u64) -> Chi2 {
    let counts = draw(step, method, seed, draws, &StreamLayout::STANDARD);
    chi2_against_law(&counts, &step.law(method))
}

fn assert_fits(result: Chi2, what: &str) {
    assert_eq!(
        result.impossible, 0,
        "{what}: drew outcomes of probability 0"
    );
    assert!(
        result.p_value > ALPHA,
        "{what}: chi-square {:.1} on {} df, p = {:e} < {ALPHA}",
        result.stat,
        result.df,
        result.p_value
    );
}

#[test]
fn chi_square_tail_matches_tables() {
    // Upper 5% points of the chi-square distribution.
    for (stat, df) in [
        (3.841_458_820_694_124, 1.0),
        (18.307_038_053_275_146, 10.0),
        (124.342_113_404_148_5, 100.0),
    ] {
        assert!(
            (chi2_sf(stat, df) - 0.05).abs() < 1e-9,
            "df {df}: {}",
            chi2_sf(stat, df)
        );
    }
    // Upper 0.1% point with 2 df: exp(-x/2) = 1e-3.
    assert!((chi2_sf(2.0 * 1000f64.ln(), 2.0) - 1e-3).abs() < 1e-12);
}

/// Narrow regime: V = 16, n = 3, 10^5 draws per rule.
#[test]
fn narrow_vocabulary_draws_follow_the_law() {
    let step = random_step(1, 16, 3, 3.0);
    for method in [Method::Asps, Method::Sps] {
        assert_fits(
            test(&step, method, 17, 100_000),
            &format!("{method:?} V=16"),
        );
    }
}

/// Wide regime: V = 4096, n = 2, 30 000 draws per rule (bins merged to >= 5 expected draws).
#[test]
fn wide_vocabulary_draws_follow_the_law() {
    let step = random_step(2, 4096, 2, 6.0);
    for method in [Method::Asps, Method::Sps] {
        assert_fits(
            test(&step, method, 23, 30_000),
            &format!("{method:?} V=4096"),
        );
    }
}

/// The test has power: SpS draws scored against the ASpS law are rejected, where the laws
/// differ (the binary example, draft (0, 0): ASpS emits (1) with probability 3/4, SpS with 1/2).
#[test]
fn draws_of_one_rule_fail_against_the_other_rules_law() {
    let p = [1.0 / 3.0, 2.0 / 3.0];
    let q = [2.0 / 3.0, 1.0 / 3.0];
    let step = PreparedStep::from_probs(&[p, p, p], &[q, q], &[0, 0]).unwrap();
    let counts = draw(&step, Method::Sps, 17, 10_000, &StreamLayout::STANDARD);
    assert_fits(
        chi2_against_law(&counts, &step.law(Method::Sps)),
        "SpS, binary example",
    );
    let wrong = chi2_against_law(&counts, &step.law(Method::Asps));
    assert!(wrong.p_value < ALPHA || wrong.impossible > 0, "{wrong:?}");
}

/// If an accept test reused the bonus race's noise (its stream aliased onto the bonus stream,
/// whose tile 0 then shares the test's uniform as its race uniform), the bonus token would be
/// biased by the test that let the bonus happen: a full accept needs a small uniform, which is
/// a large race key for tile 0 (tokens 0..16). Here: n = 1, the target's next row is uniform
/// over V = 32 (two tiles), and the full accept has probability about 1/2, so the bonus falls
/// in tile 0 far more often than half the time. ASpS's test
/// is `U(Accept) < s_1`, SpS's `U(SpsAccept, 0) < rho_1`; each is aliased in turn.
#[test]
fn sharing_noise_between_an_accept_test_and_the_bonus_is_detected() {
    let vocab = 32;
    // Row 1: the target favours tokens 0..16, the draft 16..32; the draft token is 16.
    let target_row1: Vec<f32> = (0..vocab).map(|v| if v < 16 { 1.0 } else { 0.0 }).collect();
    let draft_row1: Vec<f32> = (0..vocab).map(|v| if v < 16 { 0.0 } else { 1.0 }).collect();
    let target_row2 = vec![0.0f32; vocab];
    let step =
        PreparedStep::from_logits(&[target_row1, target_row2], &[draft_row1], &[16], 1.0).unwrap();
    let law = step.law(Method::Asps);
    assert!(
        law.accept_all > 0.2 && law.accept_all < 0.8,
        "{}",
        law.accept_all
    );
    let bonus = StreamLayout::STANDARD.bonus;
    for (method, shared_layout) in [
        (
            Method::Asps,
            StreamLayout {
                accept: bonus,
                ..StreamLayout::STANDARD
            },
        ),
        (
            Method::Sps,
            StreamLayout {
                sps_accept: bonus,
                ..StreamLayout::STANDARD
            },
        ),
    ] {
        let good = draw(&step, method, 5, 100_000, &StreamLayout::STANDARD);
        assert_fits(
            chi2_against_law(&good, &step.law(method)),
            &format!("{method:?}, separate streams"),
        );
        let shared = draw(&step, method, 5, 100_000, &shared_layout);
        let result = chi2_against_law(&shared, &step.law(method));
        assert!(
            result.p_value < ALPHA,
            "{method:?} with its accept test on the bonus noise was not detected: {result:?}"
        );
    }
}

/// Greedy draws no noise: every key gives the point mass of the law.
#[test]
fn greedy_is_deterministic() {
    let step = random_step(3, 64, 4, 5.0);
    let law = step.law(Method::Greedy);
    let first = step.sample(Method::Greedy, NoiseKey::new(0, 0)).unwrap();
    assert_eq!(law.prob(first), 1.0);
    for offset in 1..100 {
        assert_eq!(
            step.sample(Method::Greedy, NoiseKey::new(offset, offset))
                .unwrap(),
            first
        );
    }
}
