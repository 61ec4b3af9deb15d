//! The draft sampler draws from the truncated softmax that asps assumes for q (no model
//! needed).

#[path = "../../../tests/common/chi2.rs"]
mod chi2;

use asps::reference::{Truncation, truncated_softmax};
use asps_candle::speculative::sample_token;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Draws per case; the level: a correct sampler fails a case with probability 0.001.
const DRAWS: u64 = 40_000;
const ALPHA: f64 = 1e-3;

#[test]
fn draws_follow_the_truncated_softmax() {
    // 40 logits with a tie at the top and smooth decay.
    let logits: Vec<f32> = (0..40)
        .map(|i| 3.0 - 0.15 * i as f32)
        .chain([3.0])
        .collect();
    let cases = [
        (1.0, Truncation::OFF),
        (
            0.7,
            Truncation {
                top_k: 12,
                ..Truncation::OFF
            },
        ),
        (
            1.3,
            Truncation {
                top_p: 0.8,
                ..Truncation::OFF
            },
        ),
        (
            1.0,
            Truncation {
                top_k: 30,
                top_p: 0.9,
                min_p: 0.1,
            },
        ),
    ];
    let mut rng = StdRng::seed_from_u64(11);
    for (temperature, truncation) in cases {
        let probs = truncated_softmax(&logits, temperature, &truncation).unwrap();
        let mut counts = vec![0u64; logits.len()];
        for _ in 0..DRAWS {
            counts[sample_token(&logits, temperature, &truncation, &mut rng).unwrap() as usize] +=
                1;
        }
        // Every kept token has expected count >= 5 here: one bin each.
        let kept: Vec<usize> = (0..logits.len()).filter(|&i| probs[i] > 0.0).collect();
        assert!(kept.iter().all(|&i| probs[i] * DRAWS as f64 >= 5.0));
        let outside: u64 = (0..logits.len())
            .filter(|&i| probs[i] == 0.0)
            .map(|i| counts[i])
            .sum();
        assert_eq!(
            outside, 0,
            "T = {temperature}, {truncation:?}: a token outside the kept set"
        );
        let (stat, df, p_value) = chi2::chi2_of_counts(&counts, &probs, DRAWS);
        assert_eq!(df, kept.len() - 1, "one bin per kept token");
        assert!(
            p_value > ALPHA,
            "T = {temperature}, {truncation:?}: chi2 {stat:.1}, p {p_value}"
        );
    }
    // Temperature 0: the argmax, the lowest id on ties.
    assert_eq!(
        sample_token(&logits, 0.0, &Truncation::OFF, &mut rng).unwrap(),
        0
    );
}
