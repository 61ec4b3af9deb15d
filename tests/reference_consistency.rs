//! The logits path and the probabilities path of the reference agree: the same law within
//! 1e-12 and the same draws for the same keys.

use asps::reference::{PreparedStep, softmax, verify_logits, verify_probs};
use asps::{Method, NoiseKey};

#[test]
fn logits_and_probabilities_give_the_same_law_and_draws() {
    let vocab = 50;
    let row = |salt: usize| -> Vec<f32> {
        (0..vocab)
            .map(|v| (((v * 7919 + salt * 104729) % 997) as f32) / 100.0)
            .collect()
    };
    let target: Vec<Vec<f32>> = (0..4).map(row).collect();
    let draft: Vec<Vec<f32>> = (10..13).map(row).collect();
    let tokens = [3u32, 17, 41];
    let t = 0.8;
    let p: Vec<Vec<f64>> = target.iter().map(|r| softmax(r, t).unwrap()).collect();
    let q: Vec<Vec<f64>> = draft.iter().map(|r| softmax(r, t).unwrap()).collect();
    let from_logits = PreparedStep::from_logits(&target, &draft, &tokens, t).unwrap();
    let from_probs = PreparedStep::from_probs(&p, &q, &tokens).unwrap();
    for method in Method::ALL {
        let (a, b) = (from_logits.law(method), from_probs.law(method));
        assert!((a.accept_all - b.accept_all).abs() < 1e-12);
        for (x, y) in a.reject.iter().flatten().zip(b.reject.iter().flatten()) {
            assert!((x - y).abs() < 1e-12);
        }
        for offset in 0..500 {
            let key = NoiseKey::new(12345, offset);
            assert_eq!(
                verify_logits(method, &target, &draft, &tokens, t, key).unwrap(),
                verify_probs(method, &p, &q, &tokens, key).unwrap(),
                "{method:?} offset {offset}"
            );
        }
    }
}
