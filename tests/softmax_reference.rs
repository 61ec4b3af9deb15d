//! The softmax reference against values computed by hand.

use asps::reference::{argmax, log_softmax, row_stats, softmax};
use half::{bf16, f16};

#[test]
fn softmax_of_logs_gives_back_the_weights() {
    let w = [1.0f64, 2.0, 3.0, 4.0];
    let logits: Vec<f32> = w.iter().map(|x| x.ln() as f32).collect();
    let p = softmax(&logits, 1.0).unwrap();
    for (pi, wi) in p.iter().zip(w) {
        assert!((pi - wi / 10.0).abs() < 1e-7, "{pi} vs {}", wi / 10.0);
    }
}

#[test]
fn temperature_divides_the_logits() {
    // logits (0, 2) at T = 2 are logits (0, 1) at T = 1: p(1) = e / (1 + e).
    let p = softmax(&[0.0f32, 2.0], 2.0).unwrap();
    let e = std::f64::consts::E;
    assert!((p[1] - e / (1.0 + e)).abs() < 1e-15);
    let stats = row_stats(&[0.0f32, 2.0], 2.0).unwrap();
    assert_eq!(stats.max, 2.0);
    // ln(exp(-1) + exp(0)) = ln(1 + 1/e)
    assert!((stats.log_norm - (1.0 + 1.0 / e).ln()).abs() < 1e-15);
}

#[test]
fn masked_entries_get_zero_and_are_ignored() {
    let ninf = f32::NEG_INFINITY;
    let p = softmax(&[ninf, 0.0, ninf, 0.0], 1.0).unwrap();
    assert_eq!(p, vec![0.0, 0.5, 0.0, 0.5]);
    let lp = log_softmax(&[ninf, 0.0], 0.7).unwrap();
    assert_eq!(lp[0], f64::NEG_INFINITY);
    assert_eq!(lp[1], 0.0);
}

#[test]
fn shifting_every_logit_changes_nothing() {
    // Quarters stay exact in f32 after adding 1000, so both rows hold the same differences.
    let a: Vec<f32> = (0..50).map(|i| ((i * 37 % 11) as f32) * 0.25).collect();
    let b: Vec<f32> = a.iter().map(|x| x + 1000.0).collect();
    let (pa, pb) = (softmax(&a, 0.9).unwrap(), softmax(&b, 0.9).unwrap());
    for (x, y) in pa.iter().zip(&pb) {
        assert!((x - y).abs() < 1e-12);
    }
}

#[test]
fn half_precision_rows_are_read_exactly() {
    // 0.5 and 1.5 are exact in every dtype, so the three give the same distribution.
    let p32 = softmax(&[0.5f32, 1.5], 1.0).unwrap();
    let p16 = softmax(&[f16::from_f32(0.5), f16::from_f32(1.5)], 1.0).unwrap();
    let pb16 = softmax(&[bf16::from_f32(0.5), bf16::from_f32(1.5)], 1.0).unwrap();
    assert_eq!(p32, p16);
    assert_eq!(p32, pb16);
    let e = std::f64::consts::E;
    assert!((p32[1] - e / (1.0 + e)).abs() < 1e-15);
}

#[test]
fn argmax_takes_the_lowest_id_on_ties() {
    assert_eq!(argmax([0.1, 0.7, 0.2, 0.7]), Some(1));
}
