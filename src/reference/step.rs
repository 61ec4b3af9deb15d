//! One request's verification step, checked and prepared: the target and draft distributions in
//! f64, the acceptance ratios, and the ASpS scan of docs/design.md (s_r, A_r, t_r, T_r) with the
//! residual rows of both rules. The law ([`super::law`]) and the samplers ([`super::sample`])
//! read from it.

use super::sampling::{Sampling, Truncation, check_temperature};
use super::softmax::{RowStats, checked_max};
use super::truncate::kept_of_valid;
use crate::dtype::Logit;
use crate::error::{Error, Model, Result, RowProblem};
use crate::rng::MAX_NOISE_ROWS;

/// How far from 1 a row of probabilities may sum.
pub const NORMALISATION_TOLERANCE: f64 = 1e-9;

/// A verification step of one request, checked and ready to give its law or to be sampled.
///
/// Build it from probabilities ([`PreparedStep::from_probs`]) or from logits as a request samples
/// them ([`PreparedStep::from_logits`], [`PreparedStep::from_sampling`]).
#[derive(Debug, Clone)]
pub struct PreparedStep {
    pub(crate) tokens: Vec<u32>,
    /// Target rows p_1..p_{n+1}.
    pub(crate) p: Vec<Vec<f64>>,
    /// Draft rows q_1..q_n.
    pub(crate) q: Vec<Vec<f64>>,
    /// ln rho_r = ln p_r(x_r) - ln q_r(x_r), r = 1..n (index r - 1).
    pub(crate) log_rho: Vec<f64>,
    /// ln s_r for r = 0..n (s_0 = 1).
    pub(crate) log_s: Vec<f64>,
    /// ln T_r for r = 1..n (index r - 1).
    pub(crate) log_big_t: Vec<f64>,
    /// ASpS residual rows max(0, s_{r-1} p_r - q_r), with the draft token's entry set to 0.
    pub(crate) res_asps: Vec<Vec<f64>>,
    /// SpS residual rows max(0, p_r - q_r), with the draft token's entry set to 0.
    pub(crate) res_sps: Vec<Vec<f64>>,
}

/// Checks the counts and lengths of a request's rows and its draft tokens; returns V.
pub(crate) fn check_shape<A, B>(
    target: &[impl AsRef<[A]>],
    draft: &[impl AsRef<[B]>],
    tokens: &[u32],
) -> Result<usize> {
    let n = tokens.len();
    if n == 0 {
        return Err(Error::EmptyDraft);
    }
    if n >= MAX_NOISE_ROWS {
        return Err(Error::TooLarge(format!(
            "a draft of {n} tokens; at most {} are supported",
            MAX_NOISE_ROWS - 1
        )));
    }
    if target.len() != n + 1 {
        return Err(Error::RowCount {
            model: Model::Target,
            expected: n + 1,
            got: target.len(),
        });
    }
    if draft.len() != n {
        return Err(Error::RowCount {
            model: Model::Draft,
            expected: n,
            got: draft.len(),
        });
    }
    let vocab = target[0].as_ref().len();
    if vocab == 0 {
        return Err(Error::BadRow {
            model: Model::Target,
            row: 0,
            problem: RowProblem::Empty,
        });
    }
    let lengths = target
        .iter()
        .map(|r| (Model::Target, r.as_ref().len()))
        .enumerate()
        .chain(
            draft
                .iter()
                .map(|r| (Model::Draft, r.as_ref().len()))
                .enumerate(),
        );
    for (row, (model, got)) in lengths {
        if got != vocab {
            return Err(Error::RowLength {
                model,
                row,
                expected: vocab,
                got,
            });
        }
    }
    for (position, &token) in tokens.iter().enumerate() {
        if token as usize >= vocab {
            return Err(Error::TokenOutOfRange {
                position,
                token,
                vocab,
            });
        }
    }
    Ok(vocab)
}

fn check_probs(row: &[f64]) -> std::result::Result<(), RowProblem> {
    let mut sum = 0.0;
    for &x in row {
        if x.is_nan() {
            return Err(RowProblem::NaN);
        }
        if !x.is_finite() {
            return Err(RowProblem::NotFinite);
        }
        if x < 0.0 {
            return Err(RowProblem::Negative);
        }
        sum += x;
    }
    if sum == 0.0 {
        return Err(RowProblem::AllMasked);
    }
    if (sum - 1.0).abs() > NORMALISATION_TOLERANCE {
        return Err(RowProblem::NotNormalised);
    }
    Ok(())
}

fn bad_row(model: Model) -> impl Fn((usize, RowProblem)) -> Error {
    move |(row, problem)| Error::BadRow {
        model,
        row,
        problem,
    }
}

/// `min(0, x)` that keeps a NaN a NaN (`f64::min` would drop it and return 0: "accept").
pub(crate) fn min0(x: f64) -> f64 {
    if x > 0.0 { 0.0 } else { x }
}

/// A row's kept tokens and its statistics over them: the largest logit (always kept) and the
/// log-normaliser of the kept tokens alone.
struct TruncatedRow {
    kept: Vec<bool>,
    stats: RowStats,
}

/// Every row checked, truncated, and summarised.
fn truncated_rows<T: Logit>(
    rows: &[impl AsRef<[T]>],
    temperature: f64,
    truncation: &Truncation,
    model: Model,
) -> Result<Vec<TruncatedRow>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let row = row.as_ref();
            let bad = |e| bad_row(model)((i, e));
            let kept = kept_of_valid(row, temperature, truncation).map_err(bad)?;
            let max = checked_max(row).map_err(bad)?;
            let sum: f64 = row
                .iter()
                .zip(&kept)
                .filter(|(_, k)| **k)
                .map(|(x, _)| ((x.to_f64() - max) / temperature).exp())
                .sum();
            Ok(TruncatedRow {
                kept,
                stats: RowStats {
                    max,
                    log_norm: sum.ln(),
                },
            })
        })
        .collect()
}

/// The truncated `softmax(row / temperature)` of every row: 0 outside its kept tokens.
fn prob_rows<T: Logit>(
    rows: &[impl AsRef<[T]>],
    truncated: &[TruncatedRow],
    temperature: f64,
) -> Vec<Vec<f64>> {
    rows.iter()
        .zip(truncated)
        .map(|(row, t)| {
            row.as_ref()
                .iter()
                .zip(&t.kept)
                .map(|(x, &k)| {
                    if k {
                        t.stats.log_prob(x.to_f64(), temperature).exp()
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

impl PreparedStep {
    /// A step from probabilities: `target` holds p_1..p_{n+1}, `draft` holds q_1..q_n (each a
    /// row of V probabilities summing to 1 within [`NORMALISATION_TOLERANCE`]), and `tokens` the n
    /// draft tokens, `tokens[r]` drawn from `draft[r]`.
    ///
    /// Errors: n = 0, miscounted rows, rows of different lengths or V = 0, token ids >= V,
    /// rows with NaN, infinite or negative entries or that do not sum to 1, and a draft token of
    /// draft probability 0 ([`Error::ImpossibleDraftToken`]).
    pub fn from_probs(
        target: &[impl AsRef<[f64]>],
        draft: &[impl AsRef<[f64]>],
        tokens: &[u32],
    ) -> Result<Self> {
        check_shape(target, draft, tokens)?;
        for (i, row) in target.iter().enumerate() {
            check_probs(row.as_ref()).map_err(|e| bad_row(Model::Target)((i, e)))?;
        }
        for (i, row) in draft.iter().enumerate() {
            check_probs(row.as_ref()).map_err(|e| bad_row(Model::Draft)((i, e)))?;
        }
        let p: Vec<Vec<f64>> = target.iter().map(|r| r.as_ref().to_vec()).collect();
        let q: Vec<Vec<f64>> = draft.iter().map(|r| r.as_ref().to_vec()).collect();
        let mut log_rho = Vec::with_capacity(tokens.len());
        for (position, &token) in tokens.iter().enumerate() {
            let x = token as usize;
            if q[position][x] == 0.0 {
                return Err(Error::ImpossibleDraftToken { position, token });
            }
            log_rho.push(p[position][x].ln() - q[position][x].ln());
        }
        Ok(Self::scan(p, q, log_rho, tokens.to_vec()))
    }

    /// A step from logits at `temperature` (> 0) for both models, without truncation:
    /// [`PreparedStep::from_sampling`] with [`Sampling::plain`].
    pub fn from_logits<T: Logit>(
        target: &[impl AsRef<[T]>],
        draft: &[impl AsRef<[T]>],
        tokens: &[u32],
        temperature: f64,
    ) -> Result<Self> {
        Self::from_sampling(target, draft, tokens, &Sampling::plain(temperature))
    }

    /// A step from logits as the request samples them ([`Sampling`], temperature > 0): `target`
    /// holds the n + 1 target rows, `draft` the n draft rows, `tokens` the draft tokens. p_r is
    /// `softmax(target_r / T)` truncated by `sampling.target` (top-k, top-p, min-p; docs/design.md,
    /// "Truncation") and renormalised over its kept tokens, in f64; q_r is the draft row at the
    /// draft's temperature truncated by `sampling.draft` (the law the drafter drew x_r from), or,
    /// for a greedy drafter (draft temperature 0), a point mass at x_r. The acceptance ratios are
    /// taken in log space, so a draft token stays usable even where its probability underflows
    /// f64.
    ///
    /// Errors: [`Sampling::check`]'s, and [`Error::BadTemperature`] for a target temperature of
    /// 0 (greedy: see [`super::verify_logits_sampled`]); as [`PreparedStep::from_probs`] for
    /// shapes and tokens; rows with NaN or +inf or entirely -inf; [`Error::ImpossibleDraftToken`]
    /// for a draft token the drafter could not have drawn: a -inf draft logit, outside its own
    /// draft row's truncation, or, for a greedy drafter, not a largest logit of its row. A draft
    /// token that the target's truncation drops is valid: p_r(x_r) = 0, and it is rejected.
    pub fn from_sampling<T: Logit>(
        target: &[impl AsRef<[T]>],
        draft: &[impl AsRef<[T]>],
        tokens: &[u32],
        sampling: &Sampling,
    ) -> Result<Self> {
        sampling.check()?;
        check_temperature(sampling.temperature, false)?;
        check_shape(target, draft, tokens)?;
        let (t_temp, d_temp) = (sampling.temperature, sampling.draft_temperature());
        let t_rows = truncated_rows(target, t_temp, &sampling.target, Model::Target)?;
        let greedy_drafter = d_temp == 0.0;
        // A greedy drafter's rows are checked but not truncated (its argmax is always kept).
        let d_rows = if greedy_drafter {
            truncated_rows(draft, 1.0, &Truncation::OFF, Model::Draft)?
        } else {
            truncated_rows(draft, d_temp, &sampling.draft, Model::Draft)?
        };
        let mut log_rho = Vec::with_capacity(tokens.len());
        for (position, &token) in tokens.iter().enumerate() {
            let x = token as usize;
            let (t, d) = (&t_rows[position], &d_rows[position]);
            let gd = draft[position].as_ref()[x].to_f64();
            let drawable = if greedy_drafter {
                gd == d.stats.max
            } else {
                d.kept[x]
            };
            if !drawable {
                return Err(Error::ImpossibleDraftToken { position, token });
            }
            if !t.kept[x] {
                log_rho.push(f64::NEG_INFINITY);
                continue;
            }
            // ln p(x) - ln q(x), each term centred before the scale, as the kernels take it:
            // with T >= MIN_TEMPERATURE and logits of f32 range every term is finite.
            let gt = target[position].as_ref()[x].to_f64();
            let log_p = t.stats.log_prob(gt, t_temp);
            let log_q = if greedy_drafter {
                0.0
            } else {
                d.stats.log_prob(gd, d_temp)
            };
            log_rho.push(log_p - log_q);
        }
        let q = if greedy_drafter {
            let vocab = target[0].as_ref().len();
            let point = |x: u32| {
                let mut row = vec![0.0; vocab];
                row[x as usize] = 1.0;
                row
            };
            tokens.iter().map(|&x| point(x)).collect()
        } else {
            prob_rows(draft, &d_rows, d_temp)
        };
        Ok(Self::scan(
            prob_rows(target, &t_rows, t_temp),
            q,
            log_rho,
            tokens.to_vec(),
        ))
    }

    /// The scan of docs/design.md ("The math"), in log space where products of many rows meet.
    fn scan(p: Vec<Vec<f64>>, q: Vec<Vec<f64>>, log_rho: Vec<f64>, tokens: Vec<u32>) -> Self {
        let n = tokens.len();
        let mut log_s = vec![0.0; n + 1];
        for r in 0..n {
            log_s[r + 1] = min0(log_s[r] + log_rho[r]);
        }
        let mut res_asps = Vec::with_capacity(n);
        let mut res_sps = Vec::with_capacity(n);
        let mut log_t = Vec::with_capacity(n);
        for r in 0..n {
            let s_prev = log_s[r].exp();
            let x = tokens[r] as usize;
            // max(0, s p - q), without the draft token (the outcome "emit x_r" is a keep).
            let residual_row = |s: f64| -> Vec<f64> {
                let mut res: Vec<f64> = p[r]
                    .iter()
                    .zip(&q[r])
                    .map(|(&p, &q)| (s * p - q).max(0.0))
                    .collect();
                res[x] = 0.0;
                res
            };
            res_asps.push(residual_row(s_prev));
            res_sps.push(residual_row(1.0));
            // A_r is summed directly (docs/design.md, "The math"): R_r + 1 - s_{r-1} cancels catastrophically.
            let a: f64 = p[r]
                .iter()
                .zip(&q[r])
                .map(|(&p, &q)| (q - s_prev * p).max(0.0))
                .sum();
            // t_r = (1 - s_r) / A_r, and 1 when A_r = 0 (then p_r = q_r and s_r = 1: 0/0).
            log_t.push(if a == 0.0 {
                0.0
            } else {
                (-log_s[r + 1].exp_m1()).ln() - a.ln()
            });
        }
        let mut log_big_t = vec![0.0; n];
        let mut acc = 0.0;
        for r in (0..n).rev() {
            acc += log_t[r];
            log_big_t[r] = acc;
        }
        PreparedStep {
            tokens,
            p,
            q,
            log_rho,
            log_s,
            log_big_t,
            res_asps,
            res_sps,
        }
    }

    /// The number of draft tokens, n.
    pub fn draft_len(&self) -> usize {
        self.tokens.len()
    }

    /// The vocabulary size, V.
    pub fn vocab(&self) -> usize {
        self.p[0].len()
    }

    /// The draft tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The target rows p_1..p_{n+1}, as probabilities.
    pub fn target(&self) -> &[Vec<f64>] {
        &self.p
    }

    /// The draft rows q_1..q_n, as probabilities.
    pub fn draft(&self) -> &[Vec<f64>] {
        &self.q
    }

    /// `s_r = min(1, s_{r-1} p_r(x_r) / q_r(x_r))` for r = 0..n: the probability that ASpS keeps
    /// the whole draft is `s_n`.
    pub fn acceptance_scales(&self) -> Vec<f64> {
        self.log_s.iter().map(|l| l.exp()).collect()
    }
}

/// Every row of logits checked (no NaN, no +inf, not all -inf, no masked draft token), for
/// greedy verification, which needs no probabilities. Returns V.
pub(crate) fn check_logit_rows<T: Logit>(
    target: &[impl AsRef<[T]>],
    draft: &[impl AsRef<[T]>],
    tokens: &[u32],
) -> Result<usize> {
    let vocab = check_shape(target, draft, tokens)?;
    for (i, row) in target.iter().enumerate() {
        checked_max(row.as_ref()).map_err(|e| bad_row(Model::Target)((i, e)))?;
    }
    for (i, row) in draft.iter().enumerate() {
        checked_max(row.as_ref()).map_err(|e| bad_row(Model::Draft)((i, e)))?;
    }
    // Greedy needs no draft probabilities, but a draft token that the draft model had masked
    // is a caller bug all the same, reported as by the sampling rules.
    for (position, (&token, row)) in tokens.iter().zip(draft).enumerate() {
        if row.as_ref()[token as usize].to_f64() == f64::NEG_INFINITY {
            return Err(Error::ImpossibleDraftToken { position, token });
        }
    }
    Ok(vocab)
}
