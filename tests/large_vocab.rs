//! Rows of a LLaMA-3-sized vocabulary (128256 logits) in f32, f16 and bf16 with extreme
//! values (+-1e4, masked entries) at temperatures 1e-3, 1 and 10 give finite, normalised
//! softmaxes and laws, and samples of positive probability.

use asps::reference::{PreparedStep, softmax};
use asps::{Logit, Method, NoiseKey};
use half::{bf16, f16};

const V: usize = 128_256;

/// A row with smooth logits in [-8, 8], a few at +-1e4, and every 7th entry masked.
fn extreme_row<T: Logit>(salt: usize) -> Vec<T> {
    (0..V)
        .map(|v| {
            let x = match (v + salt) % 9973 {
                0 => 1e4,
                1 => -1e4,
                _ if v % 7 == 3 => f64::NEG_INFINITY,
                k => ((k * 2654435761usize) % 1601) as f64 / 100.0 - 8.0,
            };
            T::from_f64(x)
        })
        .collect()
}

fn check_dtype<T: Logit>() {
    let n = 2;
    for temperature in [1e-3, 1.0, 10.0] {
        let target: Vec<Vec<T>> = (0..=n).map(|r| extreme_row(r * 31)).collect();
        let draft: Vec<Vec<T>> = (0..n).map(|r| extreme_row(r * 31 + 5)).collect();
        for row in target.iter().chain(&draft) {
            let p = softmax(row, temperature).unwrap();
            let sum: f64 = p.iter().sum();
            assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0));
            assert!(
                (sum - 1.0).abs() < 1e-12,
                "{:?} T={temperature}: sum {sum}",
                T::DTYPE
            );
        }
        // Draft tokens: one where the draft is sure (its +1e4 entry), one unlikely but finite.
        let sure = (0..V).find(|v| (v + 5) % 9973 == 0).unwrap() as u32;
        let unlikely = (0..V).find(|v| (v + 36) % 9973 == 1).unwrap() as u32;
        let step =
            PreparedStep::from_logits(&target, &draft, &[sure, unlikely], temperature).unwrap();
        for method in Method::ALL {
            let law = step.law(method);
            let total = law.total();
            assert!(
                (total - 1.0).abs() < 1e-9,
                "{:?} {method:?} T={temperature}: {total}",
                T::DTYPE
            );
            assert!(
                law.reject
                    .iter()
                    .flatten()
                    .all(|x| x.is_finite() && *x >= 0.0)
            );
            let e = law.expected_tokens();
            assert!((1.0..=(n + 1) as f64).contains(&e));
            for offset in 0..3 {
                let out = step.sample(method, NoiseKey::new(99, offset)).unwrap();
                assert!(
                    law.prob(out) > 0.0,
                    "{method:?} drew {out:?} of probability 0"
                );
            }
        }
    }
}

#[test]
fn f32_rows() {
    check_dtype::<f32>();
}

#[test]
fn f16_rows() {
    check_dtype::<f16>();
}

#[test]
fn bf16_rows() {
    check_dtype::<bf16>();
}
