//! The reference at extreme temperatures: the acceptance probability of a draft token against a
//! hand computation, from T = 1e-38 (where logits / T overflow f32) to 8e37, and a clear error
//! outside the temperatures the crate takes.

#[path = "common/batch.rs"]
mod batch;

use asps::reference::{MAX_TEMPERATURE, MIN_TEMPERATURE, PreparedStep};
use asps::{Error, Method};
use batch::{EXTREME_TEMPERATURES, extreme_temperature_batch};

/// The rows of `batch::extreme_temperature_batch` (every request holds the same): target gap
/// 20 and draft gap 10 to the draft token 5.
fn rows() -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let h = extreme_temperature_batch::<f32>(0);
    assert_eq!(h.draft_tokens(0), [5]);
    (h.target_rows(0), h.draft_rows(0))
}

/// min(1, p(5) / q(5)) by hand: ln rho = ((0 - 20) - (0 - 10)) / T - ln Z_t + ln Z_d, with
/// Z = sum_v exp((x_v - max) / T) (every term in [0, 1]: no overflow at any T).
fn acceptance_by_hand(target: &[f32], draft: &[f32], t: f64) -> f64 {
    let ln_z = |row: &[f32], max: f64| {
        row.iter()
            .map(|&x| ((f64::from(x) - max) / t).exp())
            .sum::<f64>()
            .ln()
    };
    let ln_rho = -10.0 / t - ln_z(target, 20.0) + ln_z(draft, 10.0);
    ln_rho.min(0.0).exp()
}

#[test]
fn acceptance_matches_a_hand_computation_at_extreme_temperatures() {
    let (target, draft) = rows();
    for t in EXTREME_TEMPERATURES.map(f64::from) {
        let step = PreparedStep::from_logits(&target, &draft, &[5], t).unwrap();
        let want = acceptance_by_hand(&target[0], &draft[0], t);
        for method in [Method::Asps, Method::Sps] {
            let law = step.law(method);
            assert!(
                (law.accept_all - want).abs() <= 1e-12,
                "{method:?} at T = {t:e}: P(keep) = {}, by hand {want}",
                law.accept_all
            );
            assert!(
                (law.total() - 1.0).abs() <= 1e-12,
                "{method:?} at T = {t:e}"
            );
            assert!(law.reject.iter().flatten().all(|p| p.is_finite()));
        }
        if t <= 1e-3 {
            assert_eq!(want, 0.0, "e^(-10/T) underflows f64");
        }
    }
}

/// Temperatures outside the one domain (asps::reference::temperature_is_valid; the kernels'
/// too) are errors, never a NaN log-ratio kept through a NaN-dropping min: below
/// MIN_TEMPERATURE, where log2(e)/T overflows f32 (and far below, where -10 / T overflows f64), and
/// above MAX_TEMPERATURE.
#[test]
fn temperatures_outside_the_domain_are_errors() {
    let (target, draft) = rows();
    let below = f64::from(MIN_TEMPERATURE.next_down());
    let above = f64::from(MAX_TEMPERATURE.next_up());
    for t in [1e-310, 1e-45, below, above, f64::INFINITY, f64::NAN, -1.0] {
        assert!(
            matches!(
                PreparedStep::from_logits(&target, &draft, &[5], t),
                Err(Error::BadTemperature(x)) if x.to_bits() == t.to_bits()
            ),
            "T = {t:e}"
        );
    }
    for t in [MIN_TEMPERATURE, MAX_TEMPERATURE].map(f64::from) {
        PreparedStep::from_logits(&target, &draft, &[5], t).unwrap();
    }
}
