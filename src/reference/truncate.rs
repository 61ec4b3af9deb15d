//! Top-k, top-p and min-p over one row (docs/design.md, "Truncation"), in
//! f64, by sorting: the oracle that the kernels' sort-free thresholds are checked against.
//!
//! After the temperature, in this order, each on what the previous step kept: top-k keeps the
//! tokens whose value is at least the k-th largest; top-p keeps those whose probability
//! (renormalised over the kept set) is at least `tau`, the largest value such that the kept
//! tokens of probability `>= tau` hold at least `top_p` of the mass; min-p keeps those whose
//! probability is at least `min_p` times the largest. Every step keeps ties at its boundary and
//! the row's largest value; masked tokens (-inf) are never kept.

use super::sampling::{Truncation, check_temperature};
use super::softmax::{checked_max, stats_of_valid};
use crate::dtype::Logit;
use crate::error::{Error, Model, Result, RowProblem};

/// Which tokens of `logits` a sampler with `temperature` (> 0) and `truncation` keeps. The
/// row must be valid (no NaN or +inf, not entirely masked); `truncation` checked.
pub(crate) fn kept_of_valid<T: Logit>(
    logits: &[T],
    temperature: f64,
    truncation: &Truncation,
) -> std::result::Result<Vec<bool>, RowProblem> {
    let max = checked_max(logits)?;
    // Values after the temperature, centred: the largest is 0, masked tokens -inf.
    let z: Vec<f64> = logits
        .iter()
        .map(|x| (x.to_f64() - max) / temperature)
        .collect();
    // Masked by its logit (z may also be -inf where a tiny temperature overflows it).
    let x: Vec<f64> = logits.iter().map(|x| x.to_f64()).collect();
    let mut kept: Vec<bool> = x.iter().map(|&x| x > f64::NEG_INFINITY).collect();
    let count = kept.iter().filter(|&&k| k).count();
    let k = truncation.top_k as usize;
    if k > 0 && k < count {
        // On the logits: the temperature does not change their order.
        let mut values: Vec<f64> = kept_values(&x, &kept);
        values.sort_by(|a, b| b.total_cmp(a));
        let kth = values[k - 1];
        keep_where(&mut kept, |v| x[v] >= kth);
    }
    if truncation.top_p < 1.0 {
        let p = f64::from(truncation.top_p);
        // Probabilities over the kept set. Their order is the logits' order, and tokens tie
        // exactly when their logits do (ties are taken on the logits: at huge temperatures
        // distinct probabilities may round to the same f64).
        let sum: f64 = kept_values(&z, &kept).iter().map(|z| z.exp()).sum();
        let w: Vec<f64> = z.iter().map(|z| z.exp() / sum).collect();
        let mut order: Vec<usize> = (0..z.len()).filter(|&v| kept[v]).collect();
        order.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
        // The threshold: the first logit, from the largest down, at which the mass of every
        // kept token at least as large (its ties included) reaches p.
        let mut tau = x[*order.last().expect("the largest value is kept")];
        let mut mass = 0.0;
        let mut i = 0;
        while i < order.len() {
            let value = x[order[i]];
            while i < order.len() && x[order[i]] == value {
                mass += w[order[i]];
                i += 1;
            }
            if mass >= p {
                tau = value;
                break;
            }
        }
        keep_where(&mut kept, |v| x[v] >= tau);
    }
    if truncation.min_p > 0.0 {
        // Renormalising does not change a ratio to the largest probability, exp(z - 0).
        let m = f64::from(truncation.min_p);
        keep_where(&mut kept, |v| z[v].exp() >= m);
    }
    Ok(kept)
}

fn kept_values(values: &[f64], kept: &[bool]) -> Vec<f64> {
    values
        .iter()
        .zip(kept)
        .filter(|(_, k)| **k)
        .map(|(v, _)| *v)
        .collect()
}

fn keep_where(kept: &mut [bool], rule: impl Fn(usize) -> bool) {
    for (v, k) in kept.iter_mut().enumerate() {
        *k = *k && rule(v);
    }
}

/// Which tokens of `logits` a sampler with `temperature` (> 0) and `truncation` keeps.
///
/// Errors: [`Error::BadTemperature`], [`Error::BadTruncation`] (as target parameters), and
/// [`Error::BadInput`] for a row that is empty, holds NaN or +inf, or is entirely masked.
///
/// ```
/// use asps::reference::{Truncation, kept_tokens};
/// // Probabilities at T = 1 are proportional to 4, 2, 2, 1: top-k = 2 keeps the tie at the
/// // boundary, so three tokens.
/// let logits = [4f32.ln(), 2f32.ln(), 2f32.ln(), 0.0];
/// let top2 = Truncation { top_k: 2, ..Truncation::OFF };
/// assert_eq!(kept_tokens(&logits, 1.0, &top2).unwrap(), [true, true, true, false]);
/// // top-p = 0.5: the largest alone holds 4/9 < 0.5, with the tied pair 8/9.
/// let top_half = Truncation { top_p: 0.5, ..Truncation::OFF };
/// assert_eq!(kept_tokens(&logits, 1.0, &top_half).unwrap(), [true, true, true, false]);
/// // min-p = 0.3: probability at least 0.3 times the largest (4/9): not the last (1/9).
/// let min_p = Truncation { min_p: 0.3, ..Truncation::OFF };
/// assert_eq!(kept_tokens(&logits, 1.0, &min_p).unwrap(), [true, true, true, false]);
/// ```
pub fn kept_tokens<T: Logit>(
    logits: &[T],
    temperature: f64,
    truncation: &Truncation,
) -> Result<Vec<bool>> {
    check_temperature(temperature, false)?;
    truncation.check(Model::Target)?;
    kept_of_valid(logits, temperature, truncation).map_err(Error::BadInput)
}

/// `softmax(logits / temperature)` over the tokens `truncation` keeps, 0 elsewhere. Errors as
/// [`kept_tokens`].
pub fn truncated_softmax<T: Logit>(
    logits: &[T],
    temperature: f64,
    truncation: &Truncation,
) -> Result<Vec<f64>> {
    let kept = kept_tokens(logits, temperature, truncation)?;
    let stats = stats_of_valid(logits, temperature).map_err(Error::BadInput)?;
    let w: Vec<f64> = logits
        .iter()
        .zip(&kept)
        .map(|(x, &k)| {
            if k {
                stats.log_prob(x.to_f64(), temperature).exp()
            } else {
                0.0
            }
        })
        .collect();
    let sum: f64 = w.iter().sum();
    Ok(w.into_iter().map(|w| w / sum).collect())
}

/// Whether the kept set of `logits` changes when top-p and min-p move by the relative `eps`
/// (each way): a float near-tie of a threshold, which the kernels (f32 values, fixed-point
/// masses) and this f64 reference may round apart. The comparison tests and `simulate --gpu`
/// excuse a differing outcome only there (the `testing` feature). `false` for rows this module
/// refuses.
#[cfg(feature = "testing")]
pub fn threshold_near_tie<T: Logit>(
    logits: &[T],
    temperature: f64,
    truncation: &Truncation,
    eps: f32,
) -> bool {
    let Ok(kept) = kept_tokens(logits, temperature, truncation) else {
        return false;
    };
    moved_thresholds(truncation, eps)
        .iter()
        .any(|moved| kept_tokens(logits, temperature, moved).is_ok_and(|k| k != kept))
}

/// `truncation` with top-p and min-p moved by the relative `eps` down, then up (each kept in
/// its domain; top_k as it is): the truncations a float near-tie of a threshold could stand
/// for (the `testing` feature).
#[cfg(feature = "testing")]
pub fn moved_thresholds(truncation: &Truncation, eps: f32) -> [Truncation; 2] {
    [1.0 - eps, 1.0 + eps].map(|f| Truncation {
        top_p: if truncation.top_p < 1.0 {
            (truncation.top_p * f).min(1.0)
        } else {
            1.0
        },
        min_p: (truncation.min_p * f).min(0.999_999),
        ..*truncation
    })
}
