//! Softmax with temperature over one row of logits, in f64, max-subtracted.
//!
//! A row's statistics are its largest logit `max` and `log_norm = ln sum_v exp((x_v - max) / T)`;
//! then `ln p(v) = (x_v - max) / T - log_norm`. Subtracting the max before dividing by `T` keeps
//! every intermediate finite, even for logits of 1e4 at T = 1e-3. Entries of -inf are masked
//! tokens with probability 0.

use super::sampling::check_temperature;
use crate::dtype::Logit;
use crate::error::{Error, Result, RowProblem};

/// The softmax statistics of one row under a temperature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    /// The largest logit of the row (not divided by the temperature).
    pub max: f64,
    /// `ln sum_v exp((x_v - max) / T)`, in `[0, ln V]`.
    pub log_norm: f64,
}

impl RowStats {
    /// `ln p(v)` for a token whose logit is `x` (-inf for a masked token).
    pub fn log_prob(&self, x: f64, temperature: f64) -> f64 {
        (x - self.max) / temperature - self.log_norm
    }
}

/// The largest logit, after checking the row: not empty, no NaN, no +inf, not all -inf.
pub(crate) fn checked_max<T: Logit>(row: &[T]) -> std::result::Result<f64, RowProblem> {
    if row.is_empty() {
        return Err(RowProblem::Empty);
    }
    let mut max = f64::NEG_INFINITY;
    for x in row.iter().map(|x| x.to_f64()) {
        if x.is_nan() {
            return Err(RowProblem::NaN);
        }
        if x == f64::INFINITY {
            return Err(RowProblem::NotFinite);
        }
        max = max.max(x);
    }
    if max == f64::NEG_INFINITY {
        return Err(RowProblem::AllMasked);
    }
    Ok(max)
}

/// Statistics of a row known to be valid (see [`checked_max`]).
pub(crate) fn stats_of_valid<T: Logit>(
    row: &[T],
    temperature: f64,
) -> std::result::Result<RowStats, RowProblem> {
    let max = checked_max(row)?;
    let sum: f64 = row
        .iter()
        .map(|x| ((x.to_f64() - max) / temperature).exp())
        .sum();
    Ok(RowStats {
        max,
        log_norm: sum.ln(),
    })
}

/// The softmax statistics of `logits` at `temperature` (> 0).
///
/// Errors: [`Error::BadTemperature`] for a temperature that is 0 or not valid
/// ([`super::temperature_is_valid`]);
/// [`Error::BadInput`] for an empty row, NaN, +inf, or a row that is entirely -inf.
pub fn row_stats<T: Logit>(logits: &[T], temperature: f64) -> Result<RowStats> {
    check_temperature(temperature, false)?;
    stats_of_valid(logits, temperature).map_err(Error::BadInput)
}

/// `ln softmax(logits / temperature)`; masked tokens get -inf. Errors as [`row_stats`].
pub fn log_softmax<T: Logit>(logits: &[T], temperature: f64) -> Result<Vec<f64>> {
    let stats = row_stats(logits, temperature)?;
    Ok(logits
        .iter()
        .map(|x| stats.log_prob(x.to_f64(), temperature))
        .collect())
}

/// `softmax(logits / temperature)`; masked tokens get 0. Errors as [`row_stats`].
///
/// ```
/// let p = asps::reference::softmax(&[0.0f32, 2f32.ln(), f32::NEG_INFINITY], 1.0).unwrap();
/// assert!((p[0] - 1.0 / 3.0).abs() < 1e-7 && (p[1] - 2.0 / 3.0).abs() < 1e-7 && p[2] == 0.0);
/// ```
pub fn softmax<T: Logit>(logits: &[T], temperature: f64) -> Result<Vec<f64>> {
    Ok(log_softmax(logits, temperature)?
        .into_iter()
        .map(f64::exp)
        .collect())
}

/// The index of the largest value; ties go to the lowest index. NaN never wins. `None` for an
/// empty slice.
pub fn argmax(values: impl IntoIterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, x) in values.into_iter().enumerate() {
        if !x.is_nan() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_breaks_ties_by_lowest_index_and_skips_nan() {
        assert_eq!(argmax([1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax([f64::NAN, 0.5]), Some(1));
        assert_eq!(argmax([f64::NEG_INFINITY, f64::NEG_INFINITY]), Some(0));
        assert_eq!(argmax(std::iter::empty()), None);
    }
}
