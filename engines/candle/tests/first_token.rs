//! With temperature 1, the first token that speculative decoding emits after a fixed prefix
//! follows the target's distribution at that prefix (truncated as the request samples): chi-
//! square over many seeds, each a fresh draft and verification from the same prefilled caches.

mod common;

#[path = "../../../tests/common/chi2.rs"]
mod chi2;

use asps::Method;
use asps::reference::{Sampling, Truncation, truncated_softmax};
use asps_candle::llama::{Llama, row_to_vec};
use asps_candle::prompts::{PROMPTS, chat};
use asps_candle::speculative::{CpuVerify, Session, Settings};

/// Draws per rule.
const TRIALS: u64 = 400;
/// The level: a correct implementation fails with probability 0.001 per rule (seeds fixed, so
/// the outcome is fixed too).
const ALPHA: f64 = 1e-3;

/// SpS samples both models plainly; ASpS samples as an engine with different parameters for
/// the two models would (a test that fails if either model's truncation is applied to the
/// other's rows, or ignored); SpS again with a cooler drafter (its own temperature, 0.5: a test
/// that fails if the drafter's temperature is ignored).
const CASES: [(Method, Sampling); 3] = [
    (Method::Sps, Sampling::plain(1.0)),
    (
        Method::Asps,
        Sampling {
            temperature: 1.0,
            draft_temperature: None,
            target: Truncation {
                top_k: 0,
                top_p: 0.9,
                min_p: 0.02,
            },
            draft: Truncation {
                top_k: 3,
                top_p: 1.0,
                min_p: 0.0,
            },
        },
    ),
    (
        Method::Sps,
        Sampling {
            draft_temperature: Some(0.5),
            ..Sampling::plain(1.0)
        },
    ),
];

#[test]
fn first_emitted_token_follows_the_target() {
    let (weights, tokenizer) = common::model();
    let target = Llama::full(weights);
    // A poor draft (the first 6 blocks): the first token is often rejected, so the residual's
    // draws and the drafts' acceptances both shape what is emitted.
    let draft = Llama::draft(weights, (0..6).collect(), None).unwrap();
    let prefix = format!("{}Once upon a time, in a", chat(PROMPTS[2].text));
    let ids = tokenizer.encode(&prefix).unwrap();
    let row = |model: &Llama| {
        let mut cache = model.new_cache();
        let logits = model.forward(&ids, &mut cache).unwrap();
        row_to_vec(&logits, ids.len() - 1).unwrap()
    };
    let (target_row, draft_row) = (row(&target), row(&draft));
    let base = Session::new(&target, &draft, &ids, 0).unwrap();
    for (method, sampling) in CASES {
        // The target's distribution of the next token as the request samples it, and the
        // draft's.
        let p = truncated_softmax(&target_row, 1.0, &sampling.target).unwrap();
        let q =
            truncated_softmax(&draft_row, sampling.draft_temperature(), &sampling.draft).unwrap();
        // Power: had the draft's first token been emitted as drawn (no verification), the
        // expected statistic would be far above the critical value.
        let divergence: f64 = p
            .iter()
            .zip(&q)
            .filter(|&(&p, _)| p * TRIALS as f64 >= 5.0)
            .map(|(&p, &q)| (q - p) * (q - p) / p)
            .sum::<f64>()
            * TRIALS as f64;
        assert!(
            divergence > 100.0,
            "the draft is too close to the target: {divergence}"
        );
        let settings = Settings {
            method,
            draft_len: 2,
            sampling,
            seed: 0,
            max_new: 1,
            stop: None,
            record_laws: false,
        };
        let mut counts = vec![0u64; p.len()];
        for trial in 0..TRIALS {
            let mut session = base.reseeded(1000 + trial);
            let step = session.step(&mut CpuVerify, &settings, 1).unwrap();
            counts[step.emitted[0] as usize] += 1;
        }
        let outside: u64 = (0..p.len())
            .filter(|&t| p[t] == 0.0)
            .map(|t| counts[t])
            .sum();
        assert_eq!(
            outside, 0,
            "{method:?}: tokens the target's truncation excludes"
        );
        let (stat, df, p_value) = chi2::chi2_of_counts(&counts, &p, TRIALS);
        eprintln!("{method:?}: chi2 {stat:.2}, df {df}, p-value {p_value:.4}");
        assert!(df >= 3, "too few bins: {df}");
        assert!(
            p_value > ALPHA,
            "{method:?}: chi2 {stat:.2} with {df} df, p-value {p_value}"
        );
    }
}
