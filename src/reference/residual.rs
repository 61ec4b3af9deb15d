//! The residual of one row: `res(v) = max(0, s * p(v) - q(v))`, its mass and its normalised
//! distribution. SpS uses `s = 1`; ASpS uses `s = s_{r-1}` from the scan over the draft.

use crate::error::{Error, Result, RowProblem};

fn check_pair(p: &[f64], q: &[f64], scale: f64) -> Result<()> {
    if p.len() != q.len() {
        return Err(Error::Shape(format!(
            "p has {} entries but q has {}",
            p.len(),
            q.len()
        )));
    }
    if p.is_empty() {
        return Err(Error::BadInput(RowProblem::Empty));
    }
    if !(scale.is_finite() && scale >= 0.0) {
        return Err(Error::Shape(format!(
            "the residual scale must be finite and >= 0, got {scale}"
        )));
    }
    for &x in p.iter().chain(q) {
        if x.is_nan() {
            return Err(Error::BadInput(RowProblem::NaN));
        }
        if !x.is_finite() {
            return Err(Error::BadInput(RowProblem::NotFinite));
        }
        if x < 0.0 {
            return Err(Error::BadInput(RowProblem::Negative));
        }
    }
    Ok(())
}

/// `max(0, scale * p(v) - q(v))` for every v (unnormalised).
///
/// Errors: rows of different lengths ([`Error::Shape`]), an empty row, NaN, infinite or
/// negative entries ([`Error::BadInput`]), a scale that is negative or not finite.
pub fn residual(p: &[f64], q: &[f64], scale: f64) -> Result<Vec<f64>> {
    check_pair(p, q, scale)?;
    Ok(p.iter()
        .zip(q)
        .map(|(&p, &q)| (scale * p - q).max(0.0))
        .collect())
}

/// `sum_v max(0, scale * p(v) - q(v))`. Errors as [`residual`].
pub fn residual_mass(p: &[f64], q: &[f64], scale: f64) -> Result<f64> {
    Ok(residual(p, q, scale)?.iter().sum())
}

/// The residual normalised to sum to 1, or `None` when its mass is 0 (then `q >= scale * p`
/// everywhere and no rejection can happen). Errors as [`residual`].
///
/// ```
/// let r = asps::reference::normalized_residual(&[0.5, 0.5], &[0.75, 0.25], 1.0).unwrap();
/// assert_eq!(r, Some(vec![0.0, 1.0]));
/// ```
pub fn normalized_residual(p: &[f64], q: &[f64], scale: f64) -> Result<Option<Vec<f64>>> {
    let res = residual(p, q, scale)?;
    let mass: f64 = res.iter().sum();
    Ok((mass > 0.0).then(|| res.iter().map(|r| r / mass).collect()))
}
