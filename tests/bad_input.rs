//! Bad input gives a clear error, never a panic.

use asps::reference::{PreparedStep, row_stats, softmax, step_law, verify_logits, verify_probs};
use asps::{Error, Method, Model, NoiseKey, RowProblem};

const KEY: NoiseKey = NoiseKey::new(1, 0);

fn logits_err(target: &[Vec<f32>], draft: &[Vec<f32>], tokens: &[u32], t: f64) -> Error {
    let mut errors = Method::ALL
        .iter()
        .map(|&m| verify_logits(m, target, draft, tokens, t, KEY).unwrap_err());
    let first = errors.next().unwrap();
    if t > 0.0 {
        // The greedy path checks the same things (except temperature-specific ones).
        for e in errors {
            assert_eq!(e, first);
        }
    }
    first
}

fn ok_rows() -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    (vec![vec![0.0, 1.0, 2.0]; 3], vec![vec![2.0, 1.0, 0.0]; 2])
}

#[test]
fn nan_and_infinite_logits() {
    let (mut target, draft) = ok_rows();
    target[1][2] = f32::NAN;
    let e = logits_err(&target, &draft, &[0, 1], 1.0);
    assert_eq!(
        e,
        Error::BadRow {
            model: Model::Target,
            row: 1,
            problem: RowProblem::NaN
        }
    );
    assert!(e.to_string().contains("target row 1"), "{e}");

    let (target, mut draft) = ok_rows();
    draft[0][0] = f32::INFINITY;
    let e = logits_err(&target, &draft, &[0, 1], 1.0);
    assert_eq!(
        e,
        Error::BadRow {
            model: Model::Draft,
            row: 0,
            problem: RowProblem::NotFinite
        }
    );

    let (mut target, draft) = ok_rows();
    target[2] = vec![f32::NEG_INFINITY; 3];
    let e = logits_err(&target, &draft, &[0, 1], 1.0);
    assert_eq!(
        e,
        Error::BadRow {
            model: Model::Target,
            row: 2,
            problem: RowProblem::AllMasked
        }
    );

    assert_eq!(
        row_stats(&[f32::NAN], 1.0).unwrap_err(),
        Error::BadInput(RowProblem::NaN)
    );
    assert_eq!(
        softmax::<f32>(&[], 1.0).unwrap_err(),
        Error::BadInput(RowProblem::Empty)
    );
}

#[test]
fn token_ids_out_of_range() {
    let (target, draft) = ok_rows();
    let e = logits_err(&target, &draft, &[0, 3], 1.0);
    assert_eq!(
        e,
        Error::TokenOutOfRange {
            position: 1,
            token: 3,
            vocab: 3
        }
    );
    assert!(e.to_string().contains("out of range"));
}

#[test]
fn rows_of_different_lengths() {
    let (target, mut draft) = ok_rows();
    draft[1].push(0.0);
    let e = logits_err(&target, &draft, &[0, 1], 1.0);
    assert_eq!(
        e,
        Error::RowLength {
            model: Model::Draft,
            row: 1,
            expected: 3,
            got: 4
        }
    );
}

#[test]
fn miscounted_rows() {
    let (mut target, draft) = ok_rows();
    target.pop();
    let e = logits_err(&target, &draft, &[0, 1], 1.0);
    assert_eq!(
        e,
        Error::RowCount {
            model: Model::Target,
            expected: 3,
            got: 2
        }
    );
}

#[test]
fn empty_draft_and_empty_vocabulary() {
    let e = logits_err(&[vec![0.0]], &[], &[], 1.0);
    assert_eq!(e, Error::EmptyDraft);
    let e = logits_err(&[vec![], vec![]], &[vec![]], &[0], 1.0);
    assert_eq!(
        e,
        Error::BadRow {
            model: Model::Target,
            row: 0,
            problem: RowProblem::Empty
        }
    );
}

#[test]
fn negative_or_nan_temperature() {
    let (target, draft) = ok_rows();
    for t in [-1.0, f64::NAN, f64::INFINITY] {
        let e = logits_err(&target, &draft, &[0, 1], t);
        assert!(matches!(e, Error::BadTemperature(_)), "{t}: {e:?}");
    }
    // A softmax needs T > 0; verification takes 0 as greedy.
    assert!(matches!(
        row_stats(&[0.0f32], 0.0),
        Err(Error::BadTemperature(_))
    ));
    assert!(verify_logits(Method::Asps, &target, &draft, &[2, 2], 0.0, KEY).is_ok());
}

#[test]
fn draft_token_the_draft_could_not_have_drawn() {
    let (target, mut draft) = ok_rows();
    draft[0][1] = f32::NEG_INFINITY;
    let e = logits_err(&target, &draft, &[1, 0], 1.0);
    assert_eq!(
        e,
        Error::ImpossibleDraftToken {
            position: 0,
            token: 1
        }
    );
    let p = [0.5, 0.5];
    let e = step_law(Method::Asps, &[p, p], &[[1.0, 0.0]], &[1]).unwrap_err();
    assert_eq!(
        e,
        Error::ImpossibleDraftToken {
            position: 0,
            token: 1
        }
    );
}

#[test]
fn probabilities_that_are_not_distributions() {
    let p = [0.5, 0.5];
    let bad = [
        ([0.5, 0.6], RowProblem::NotNormalised),
        ([1.5, -0.5], RowProblem::Negative),
        ([f64::NAN, 1.0], RowProblem::NaN),
        ([f64::INFINITY, 0.0], RowProblem::NotFinite),
        ([0.0, 0.0], RowProblem::AllMasked),
    ];
    for (row, problem) in bad {
        let e = PreparedStep::from_probs(&[p, row], &[p], &[0]).unwrap_err();
        assert_eq!(
            e,
            Error::BadRow {
                model: Model::Target,
                row: 1,
                problem
            }
        );
        let e = verify_probs(Method::Sps, &[p, p], &[row], &[0], KEY).unwrap_err();
        assert!(
            matches!(
                e,
                Error::BadRow {
                    model: Model::Draft,
                    row: 0,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}

#[test]
fn every_error_has_a_message() {
    let errors = [
        Error::EmptyDraft,
        Error::KernelsMissing,
        Error::NoOutcome,
        Error::BadTemperature(-1.0),
        Error::NoCudaDriver("x".into()),
        Error::TooLarge("x".into()),
    ];
    for e in errors {
        assert!(e.to_string().len() > 10, "{e:?}");
    }
}
