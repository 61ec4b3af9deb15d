//! Residuals by hand.

use asps::reference::{normalized_residual, residual, residual_mass};

#[test]
fn residual_is_the_positive_part_of_scaled_p_minus_q() {
    let p = [0.5, 0.3, 0.2];
    let q = [0.2, 0.3, 0.5];
    let r = residual(&p, &q, 1.0).unwrap();
    assert!((r[0] - 0.3).abs() < 1e-15 && r[1] == 0.0 && r[2] == 0.0);
    // s = 0.5: (0.25 - 0.2, 0.15 - 0.3, 0.1 - 0.5)+ = (0.05, 0, 0)
    let r = residual(&p, &q, 0.5).unwrap();
    assert!((r[0] - 0.05).abs() < 1e-15 && r[1] == 0.0 && r[2] == 0.0);
    assert!((residual_mass(&p, &q, 2.0).unwrap() - (0.8 + 0.3)).abs() < 1e-15);
}

#[test]
fn normalised_residual_sums_to_one_or_is_none() {
    let p = [0.4, 0.4, 0.2];
    let q = [0.1, 0.3, 0.6];
    let r = normalized_residual(&p, &q, 1.0).unwrap().unwrap();
    assert!((r[0] - 0.75).abs() < 1e-15 && (r[1] - 0.25).abs() < 1e-15 && r[2] == 0.0);
    assert_eq!(normalized_residual(&p, &p, 1.0).unwrap(), None);
}

#[test]
fn bad_residual_input_is_an_error() {
    assert!(residual(&[0.5, 0.5], &[1.0], 1.0).is_err());
    assert!(residual(&[], &[], 1.0).is_err());
    assert!(residual(&[f64::NAN, 1.0], &[0.5, 0.5], 1.0).is_err());
    assert!(residual(&[-0.5, 1.5], &[0.5, 0.5], 1.0).is_err());
    assert!(residual(&[0.5, 0.5], &[0.5, 0.5], -1.0).is_err());
    assert!(residual(&[0.5, 0.5], &[0.5, 0.5], f64::INFINITY).is_err());
}
