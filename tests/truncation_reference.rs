//! The reference's truncation (top-k, top-p, min-p; docs/design.md, "Truncation"): the kept
//! sets against a second, brute-force reading of the definitions and against hand-computed
//! cases with ties at every boundary; the exactness of ASpS and SpS over truncated rows by
//! enumeration, for every combination of the three parameters on target and draft; a check that
//! ignoring the draft's parameters breaks exactness; impossible draft tokens; and a chi-square
//! test of the sampler with truncation.

mod common;

use std::collections::HashMap;

use asps::reference::{
    Sampling, Truncation, argmax, kept_tokens, step_law_from_logits, truncated_softmax,
    verify_logits_sampled,
};
use asps::{Error, Method, NoiseKey, Outcome};
use common::{ArModels, all_sequences, chi2_against_law, exactness_error};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The kept set by the definitions read literally, each step a search over the row's own
/// values (no sorting, no running sums): the k-th largest is a value with fewer than k values
/// above it and at least k at or above it; tau is the largest value whose "at least as
/// probable" mass reaches p; min-p compares to the largest probability.
fn brute_force(logits: &[f32], t: f64, tr: &Truncation) -> Vec<bool> {
    let v = logits.len();
    let z: Vec<f64> = logits.iter().map(|&x| f64::from(x) / t).collect();
    let mut kept: Vec<bool> = z.iter().map(|z| z.is_finite()).collect();
    let k = tr.top_k as usize;
    if k > 0 {
        let kept_now = kept.clone();
        for u in 0..v {
            let above = (0..v).filter(|&w| kept_now[w] && z[w] > z[u]).count();
            kept[u] = kept[u] && above < k;
        }
    }
    let probs = |kept: &[bool]| -> Vec<f64> {
        let m = (0..v)
            .filter(|&u| kept[u])
            .map(|u| z[u])
            .fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = (0..v)
            .map(|u| if kept[u] { (z[u] - m).exp() } else { 0.0 })
            .collect();
        let sum: f64 = w.iter().sum();
        w.iter().map(|w| w / sum).collect()
    };
    if tr.top_p < 1.0 {
        let w = probs(&kept);
        let p = f64::from(tr.top_p);
        let mass_from = |tau: f64| -> f64 {
            (0..v)
                .filter(|&u| kept[u] && w[u] >= tau)
                .map(|u| w[u])
                .sum()
        };
        let tau = (0..v)
            .filter(|&u| kept[u] && mass_from(w[u]) >= p)
            .map(|u| w[u])
            .fold(f64::NEG_INFINITY, f64::max);
        let kept_now = kept.clone();
        for u in 0..v {
            kept[u] = kept_now[u] && w[u] >= tau;
        }
    }
    if tr.min_p > 0.0 {
        let w = probs(&kept);
        let max = w.iter().cloned().fold(0.0, f64::max);
        for u in 0..v {
            kept[u] = kept[u] && w[u] >= f64::from(tr.min_p) * max;
        }
    }
    kept
}

/// Logits drawn from a few values (so ties are everywhere), with some tokens masked.
fn tied_row(rng: &mut StdRng, v: usize) -> Vec<f32> {
    let values = [0.0f32, 0.5, 1.0, 1.0, 2.0, f32::NEG_INFINITY];
    let mut row: Vec<f32> = (0..v)
        .map(|_| values[rng.random_range(0..values.len())])
        .collect();
    row[rng.random_range(0..v)] = 2.0; // never entirely masked
    row
}

fn truncations() -> Vec<Truncation> {
    let mut out = Vec::new();
    for top_k in [0, 1, 2, 3] {
        for top_p in [1.0f32, 0.3, 0.6, 0.9] {
            for min_p in [0.0f32, 0.2, 0.5] {
                out.push(Truncation {
                    top_k,
                    top_p,
                    min_p,
                });
            }
        }
    }
    out
}

#[test]
fn kept_sets_follow_the_definitions() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut truncated = 0;
    for _ in 0..300 {
        let v = rng.random_range(1..9);
        let row = tied_row(&mut rng, v);
        for t in [1.0, 0.7] {
            for tr in truncations() {
                let got = kept_tokens(&row, t, &tr).unwrap();
                assert_eq!(got, brute_force(&row, t, &tr), "{row:?} T = {t} {tr:?}");
                // The row's largest value is always kept; masked tokens never are.
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                for (u, &x) in row.iter().enumerate() {
                    assert!(x != max || got[u]);
                    assert!(x != f32::NEG_INFINITY || !got[u]);
                }
                if got.iter().filter(|&&k| k).count() < row.iter().filter(|x| x.is_finite()).count()
                {
                    truncated += 1;
                }
            }
        }
    }
    assert!(truncated > 10_000, "{truncated} truncating cases");
}

/// Hand-computed cases, ties at each boundary kept.
#[test]
fn ties_at_each_boundary_are_kept() {
    let ln = |x: f32| x.ln();
    // Probabilities 4/9, 2/9, 2/9, 1/9 at T = 1.
    let row = [ln(4.0), ln(2.0), ln(2.0), 0.0];
    let keep = |tr: Truncation| kept_tokens(&row, 1.0, &tr).unwrap();
    let off = Truncation::OFF;
    assert_eq!(
        keep(Truncation { top_k: 1, ..off }),
        [true, false, false, false]
    );
    assert_eq!(
        keep(Truncation { top_k: 2, ..off }),
        [true, true, true, false]
    );
    assert_eq!(
        keep(Truncation { top_k: 3, ..off }),
        [true, true, true, false]
    );
    assert_eq!(keep(Truncation { top_k: 4, ..off }), [true; 4]);
    assert_eq!(keep(Truncation { top_k: 100, ..off }), [true; 4]);
    assert_eq!(
        keep(Truncation { top_p: 0.4, ..off }),
        [true, false, false, false]
    );
    assert_eq!(
        keep(Truncation { top_p: 0.5, ..off }),
        [true, true, true, false]
    );
    assert_eq!(keep(Truncation { top_p: 0.95, ..off }), [true; 4]);
    // min-p against the largest, 4/9: the tied pair at 2/9 (half of it, up to the f32 logits'
    // rounding) is kept or dropped together.
    assert_eq!(
        keep(Truncation { min_p: 0.49, ..off }),
        [true, true, true, false]
    );
    assert_eq!(
        keep(Truncation { min_p: 0.51, ..off }),
        [true, false, false, false]
    );
    assert_eq!(keep(Truncation { min_p: 0.24, ..off }), [true; 4]);
    // In order: top-k = 2 keeps three (renormalised: 1/2, 1/4, 1/4); top-p = 0.5 then keeps
    // the largest alone, whose mass is exactly 1/2.
    assert_eq!(
        keep(Truncation {
            top_k: 2,
            top_p: 0.5,
            min_p: 0.0
        }),
        [true, false, false, false]
    );
    // Exact binary masses: 1/2, 1/4, 1/4; top-p = 0.75 needs the tied pair, whole.
    let row = [ln(2.0), 0.0, 0.0];
    assert_eq!(
        kept_tokens(&row, 1.0, &Truncation { top_p: 0.75, ..off }).unwrap(),
        [true, true, true]
    );
    // A masked token is never kept, whatever k.
    let row = [1.0, f32::NEG_INFINITY, 0.0];
    assert_eq!(
        kept_tokens(&row, 1.0, &Truncation { top_k: 3, ..off }).unwrap(),
        [true, false, true]
    );
}

#[test]
fn bad_parameters_are_refused() {
    let row = [0.0f32, 1.0];
    for tr in [
        Truncation {
            top_k: -1,
            ..Truncation::OFF
        },
        Truncation {
            top_p: 0.0,
            ..Truncation::OFF
        },
        Truncation {
            top_p: 1.5,
            ..Truncation::OFF
        },
        Truncation {
            top_p: f32::NAN,
            ..Truncation::OFF
        },
        Truncation {
            min_p: 1.0,
            ..Truncation::OFF
        },
        Truncation {
            min_p: -0.1,
            ..Truncation::OFF
        },
        Truncation {
            min_p: f32::NAN,
            ..Truncation::OFF
        },
    ] {
        assert!(
            matches!(kept_tokens(&row, 1.0, &tr), Err(Error::BadTruncation(_))),
            "{tr:?}"
        );
        let s = Sampling {
            target: tr,
            ..Sampling::plain(1.0)
        };
        let r = step_law_from_logits(Method::Asps, &[row, row], &[row], &[1], &s);
        assert!(matches!(r, Err(Error::BadTruncation(_))), "{tr:?}");
        let s = Sampling {
            draft: tr,
            ..Sampling::plain(1.0)
        };
        let r = step_law_from_logits(Method::Sps, &[row, row], &[row], &[1], &s);
        assert!(matches!(r, Err(Error::BadTruncation(_))), "{tr:?}");
    }
}

/// Target and draft logits at every prefix of length <= n over `vocab` tokens, with ties.
struct LogitModels {
    vocab: usize,
    target: HashMap<Vec<u32>, Vec<f32>>,
    draft: HashMap<Vec<u32>, Vec<f32>>,
}

impl LogitModels {
    fn new(seed: u64, vocab: usize, n: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut target, mut draft) = (HashMap::new(), HashMap::new());
        for len in 0..=n {
            for prefix in all_sequences(vocab, len) {
                target.insert(prefix.clone(), tied_row(&mut rng, vocab));
                draft.insert(prefix, tied_row(&mut rng, vocab));
            }
        }
        LogitModels {
            vocab,
            target,
            draft,
        }
    }

    /// The probabilities the request really samples from: each model's rows at its temperature
    /// and truncation; a greedy drafter (draft temperature 0) proposes its argmax (the lowest
    /// id of its largest logit) with probability 1.
    fn truncated(&self, s: &Sampling) -> ArModels {
        let rows = |m: &HashMap<Vec<u32>, Vec<f32>>, t: f64, tr: &Truncation| {
            m.iter()
                .map(|(k, row)| {
                    let p = if t == 0.0 {
                        let best = argmax(row.iter().map(|&x| f64::from(x))).unwrap();
                        (0..row.len()).map(|v| f64::from(v == best)).collect()
                    } else {
                        truncated_softmax(row, t, tr).unwrap()
                    };
                    (k.clone(), p)
                })
                .collect()
        };
        ArModels::from_rows(
            self.vocab,
            rows(&self.target, s.temperature, &s.target),
            rows(&self.draft, s.draft_temperature(), &s.draft),
        )
    }

    /// The logit rows a verifier sees for draft `x`.
    fn rows(&self, x: &[u32]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let target = (0..=x.len())
            .map(|r| self.target[&x[..r]].clone())
            .collect();
        let draft = (0..x.len()).map(|r| self.draft[&x[..r]].clone()).collect();
        (target, draft)
    }

    /// The exactness error of `method` verifying with `verify_with` drafts drawn under `drawn`.
    fn error(&self, method: Method, n: usize, drawn: &Sampling, verify_with: &Sampling) -> f64 {
        let drafts = self.truncated(drawn);
        let (output, _) = drafts.output_law_of(n, |x| {
            let (target, draft) = self.rows(x);
            step_law_from_logits(method, &target, &draft, x, verify_with).unwrap()
        });
        exactness_error(&drafts, &output, n)
    }
}

/// The exactness statement (docs/design.md, "The math") with the truncated target, by enumeration (V = 5, n = 2, rows
/// from a few tied values), for ASpS and SpS, at every combination of top-k, top-p and min-p
/// on or off for the target and for the draft (64), at two temperatures.
#[test]
fn truncated_verification_is_exact() {
    let settings = |on: usize| Truncation {
        top_k: if on & 1 != 0 { 2 } else { 0 },
        top_p: if on & 2 != 0 { 0.6 } else { 1.0 },
        min_p: if on & 4 != 0 { 0.3 } else { 0.0 },
    };
    let (vocab, n) = (5, 2);
    let mut worst: f64 = 0.0;
    for seed in 0..3 {
        let models = LogitModels::new(seed, vocab, n);
        for temperature in [1.0, 0.6] {
            for t_on in 0..8 {
                for d_on in 0..8 {
                    let s = Sampling {
                        target: settings(t_on),
                        draft: settings(d_on),
                        ..Sampling::plain(temperature)
                    };
                    for method in [Method::Asps, Method::Sps] {
                        worst = worst.max(models.error(method, n, &s, &s));
                    }
                }
            }
        }
    }
    assert!(worst < 1e-12, "worst exactness error {worst:e}");
}

/// The exactness statement with the draft at its own temperature, by enumeration (V = 5, n = 2,
/// rows with ties): a greedy drafter (its argmax, q a point mass), a cooler and a hotter one,
/// against targets at T = 1 and 0.6, without truncation and with a few truncations of either
/// model (a greedy drafter's own truncation is not used); ASpS and SpS.
#[test]
fn draft_temperature_verification_is_exact() {
    let truncations = [
        (Truncation::OFF, Truncation::OFF),
        (
            Truncation {
                top_k: 2,
                ..Truncation::OFF
            },
            Truncation {
                top_p: 0.6,
                min_p: 0.3,
                ..Truncation::OFF
            },
        ),
        (
            Truncation {
                min_p: 0.3,
                ..Truncation::OFF
            },
            Truncation {
                top_k: 2,
                ..Truncation::OFF
            },
        ),
    ];
    let mut worst: f64 = 0.0;
    for seed in 0..3 {
        let models = LogitModels::new(20 + seed, 5, 2);
        for temperature in [1.0, 0.6] {
            for draft_temperature in [0.0, 0.5, 1.7] {
                for (target, draft) in truncations {
                    let s = Sampling {
                        temperature,
                        draft_temperature: Some(draft_temperature),
                        target,
                        draft,
                    };
                    for method in [Method::Asps, Method::Sps] {
                        worst = worst.max(models.error(method, 2, &s, &s));
                    }
                }
            }
        }
    }
    assert!(worst < 1e-12, "worst exactness error {worst:e}");
}

/// Drafts drawn at their own temperature but verified as if at the target's: not exact, for a
/// cooler drafter and for a greedy one (whose q is not a softmax at all).
#[test]
fn ignoring_the_draft_temperature_breaks_exactness() {
    let models = LogitModels::new(8, 5, 2);
    for draft_temperature in [0.5, 0.0] {
        let drawn = Sampling {
            draft_temperature: Some(draft_temperature),
            ..Sampling::plain(1.0)
        };
        let ignored = Sampling::plain(1.0);
        for method in [Method::Asps, Method::Sps] {
            assert!(models.error(method, 2, &drawn, &drawn) < 1e-12);
            let err = models.error(method, 2, &drawn, &ignored);
            assert!(
                err > 1e-3,
                "{method:?}: error {err:e} with the draft temperature {draft_temperature} ignored"
            );
        }
    }
}

/// A greedy drafter proposes a largest logit of each draft row (any, on ties); any other token
/// is an impossible draft. Its token is kept with probability p(x) (SpS, n = 1; ASpS alike).
#[test]
fn a_greedy_drafter_proposes_its_argmax() {
    let target = [[2.0f32, 1.0, 0.0], [0.0, 0.0, 0.0]];
    let draft = [[0.0f32, 1.5, 1.5]];
    let greedy = Sampling {
        draft_temperature: Some(0.0),
        ..Sampling::plain(1.0)
    };
    let p = asps::reference::softmax(&target[0], 1.0).unwrap();
    for method in [Method::Asps, Method::Sps] {
        assert_eq!(
            step_law_from_logits(method, &target, &draft, &[0], &greedy).unwrap_err(),
            Error::ImpossibleDraftToken {
                position: 0,
                token: 0
            }
        );
        for x in [1u32, 2] {
            let law = step_law_from_logits(method, &target, &draft, &[x], &greedy).unwrap();
            assert!((law.accept_all - p[x as usize]).abs() < 1e-15, "{method:?}");
            // Rejected (probability 1 - p(x)): the residual is p without x, renormalised.
            for (v, (&got, &pv)) in law.reject[0].iter().zip(&p).enumerate() {
                let want = if v == x as usize { 0.0 } else { pv };
                assert!((got - want).abs() < 1e-15, "{method:?} {v}");
            }
        }
    }
}

/// Drafts drawn under top-k = 2 but verified as if drawn from the whole draft row: not exact.
#[test]
fn ignoring_the_draft_parameters_breaks_exactness() {
    let models = LogitModels::new(7, 5, 2);
    let drawn = Sampling {
        draft: Truncation {
            top_k: 2,
            ..Truncation::OFF
        },
        ..Sampling::plain(1.0)
    };
    let ignored = Sampling {
        draft: Truncation::OFF,
        ..drawn
    };
    for method in [Method::Asps, Method::Sps] {
        assert!(models.error(method, 2, &drawn, &drawn) < 1e-12);
        let err = models.error(method, 2, &drawn, &ignored);
        assert!(
            err > 1e-3,
            "{method:?}: error {err:e} with the draft's top-k ignored"
        );
    }
}

/// A draft token that its own draft row's truncation drops could not have been drawn: refused.
/// One that only the target's truncation drops is valid, and always rejected.
#[test]
fn a_draft_token_outside_its_own_kept_set_is_impossible() {
    let target = [[2.0f32, 1.0, 0.0], [0.0, 0.0, 0.0]];
    let draft = [[2.0f32, 1.0, 0.0]];
    let top2 = Truncation {
        top_k: 2,
        ..Truncation::OFF
    };
    let s = Sampling {
        draft: top2,
        ..Sampling::plain(1.0)
    };
    for method in [Method::Asps, Method::Sps] {
        assert_eq!(
            step_law_from_logits(method, &target, &draft, &[2], &s).unwrap_err(),
            Error::ImpossibleDraftToken {
                position: 0,
                token: 2
            }
        );
        assert!(
            verify_logits_sampled(method, &target, &draft, &[2], &s, NoiseKey::new(1, 0)).is_err()
        );
        let s = Sampling {
            target: top2,
            ..Sampling::plain(1.0)
        };
        let law = step_law_from_logits(method, &target, &draft, &[2], &s).unwrap();
        assert_eq!(law.accept_all, 0.0);
        assert_eq!(law.reject[0][2], 0.0);
    }
}

/// The sampler with truncation follows the truncated law: chi-square at ALPHA = 1e-3 over
/// 40000 draws per rule (seeded), V = 12, n = 3, target top-k 6 and top-p 0.8, draft min-p 0.1;
/// no draw of probability 0 (a dropped token).
#[test]
fn truncated_draws_follow_the_law() {
    const ALPHA: f64 = 1e-3;
    let mut rng = StdRng::seed_from_u64(3);
    let v = 12;
    let row =
        |rng: &mut StdRng| -> Vec<f32> { (0..v).map(|_| 3.0 * rng.random::<f32>()).collect() };
    let target: Vec<Vec<f32>> = (0..4).map(|_| row(&mut rng)).collect();
    let draft: Vec<Vec<f32>> = (0..3).map(|_| row(&mut rng)).collect();
    let s = Sampling {
        target: Truncation {
            top_k: 6,
            top_p: 0.8,
            min_p: 0.0,
        },
        draft: Truncation {
            min_p: 0.1,
            ..Truncation::OFF
        },
        ..Sampling::plain(1.0)
    };
    // Draft tokens each kept by its own draft row.
    let tokens: Vec<u32> = draft
        .iter()
        .map(|r| {
            let kept = kept_tokens(r, 1.0, &s.draft).unwrap();
            kept.iter().rposition(|&k| k).unwrap() as u32
        })
        .collect();
    for method in [Method::Asps, Method::Sps] {
        let law = step_law_from_logits(method, &target, &draft, &tokens, &s).unwrap();
        let mut counts: HashMap<Outcome, u64> = HashMap::new();
        for offset in 0..40_000 {
            let out = verify_logits_sampled(
                method,
                &target,
                &draft,
                &tokens,
                &s,
                NoiseKey::new(9, offset),
            )
            .unwrap();
            *counts.entry(out).or_default() += 1;
        }
        let result = chi2_against_law(&counts, &law);
        assert_eq!(result.impossible, 0, "{method:?}: draws of probability 0");
        assert!(result.p_value > ALPHA, "{method:?}: {result:?}");
    }
}
