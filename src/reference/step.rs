//! One request's verification step, checked and prepared: the target and draft distributions in
//! f64, the acceptance ratios, and the ASpS scan of DESIGN.md (s_r, A_r, t_r, T_r) with the
//! residual rows of both rules. The law ([`super::law`]) and the samplers ([`super::sample`])
//! read from it.

use super::softmax::{RowStats, check_temperature, checked_max};
use super::truncate::{Truncation, kept_of_valid};
use crate::dtype::Logit;
use crate::error::{Error, Model, Result, RowProblem};
use crate::rng::MAX_NOISE_ROWS;

/// How far from 1 a row of probabilities may sum.
pub const NORMALISATION_TOLERANCE: f64 = 1e-9;

/// A verification step of one request, checked and ready to give its law or to be sampled.
///
/// Build it from probabilities ([`PreparedStep::from_probs`]) or from logits and a temperature
/// ([`PreparedStep::from_logits`]).
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

    /// A step from logits at `temperature` (> 0): `target` holds the n + 1 target rows,
    /// `draft` the n draft rows, `tokens` the draft tokens. Probabilities are
    /// `softmax(logits / temperature)` in f64; the acceptance ratios are taken in log space, so a
    /// draft token stays usable even where its probability underflows f64.
    ///
    /// Errors: as [`PreparedStep::from_probs`] for shapes and tokens; rows with NaN or +inf or
    /// entirely -inf; a draft token whose draft logit is -inf; a temperature that is not finite
    /// and > 0 (temperature 0 is greedy: see [`super::verify_logits`]), or so small that an
    /// acceptance log-ratio `((g_t - max_t) - (g_d - max_d)) / T` passes f64's range
    /// ([`Error::BadTemperature`]; for logits of f32 range this needs T below ~1e-300, far
    /// under the kernels' limit, where 1/T must be a finite f32).
    pub fn from_logits<T: Logit>(
        target: &[impl AsRef<[T]>],
        draft: &[impl AsRef<[T]>],
        tokens: &[u32],
        temperature: f64,
    ) -> Result<Self> {
        Self::from_logits_truncated(
            target,
            draft,
            tokens,
            temperature,
            &Truncation::OFF,
            &Truncation::OFF,
        )
    }

    /// [`PreparedStep::from_logits`] with each model's rows truncated ([`Truncation`]: top-k,
    /// top-p, min-p after the temperature, DESIGN.md): p_r is the target row after
    /// `target_truncation`, q_r the draft row after `draft_truncation` (the distribution the
    /// draft token was drawn from), each renormalised over its kept tokens.
    ///
    /// Errors: as [`PreparedStep::from_logits`]; [`Error::BadTruncation`] for parameters out of
    /// their domain; [`Error::ImpossibleDraftToken`] for a draft token that its own draft row's
    /// truncation drops (the drafter could not have drawn it). A draft token that the target's
    /// truncation drops is valid: p_r(x_r) = 0, and it is rejected.
    pub fn from_logits_truncated<T: Logit>(
        target: &[impl AsRef<[T]>],
        draft: &[impl AsRef<[T]>],
        tokens: &[u32],
        temperature: f64,
        target_truncation: &Truncation,
        draft_truncation: &Truncation,
    ) -> Result<Self> {
        check_temperature(temperature, false)?;
        target_truncation.check(Model::Target)?;
        draft_truncation.check(Model::Draft)?;
        check_shape(target, draft, tokens)?;
        let t_rows = truncated_rows(target, temperature, target_truncation, Model::Target)?;
        let d_rows = truncated_rows(draft, temperature, draft_truncation, Model::Draft)?;
        let mut log_rho = Vec::with_capacity(tokens.len());
        for (position, &token) in tokens.iter().enumerate() {
            let x = token as usize;
            let (t, d) = (&t_rows[position], &d_rows[position]);
            if !d.kept[x] {
                return Err(Error::ImpossibleDraftToken { position, token });
            }
            if !t.kept[x] {
                log_rho.push(f64::NEG_INFINITY);
                continue;
            }
            let (gt, gd) = (
                target[position].as_ref()[x].to_f64(),
                draft[position].as_ref()[x].to_f64(),
            );
            // ln p(x) - ln q(x) as the difference of the two centred logits, then the scale,
            // as the kernels take it. The form (gt - mt) / T - (gd - md) / T gives
            // -inf - -inf = NaN once both terms overflow (f64: T ~ 1e-307; f32: T ~ 1e-38).
            let (st, sd) = (&t.stats, &d.stats);
            let lr = ((gt - st.max) - (gd - sd.max)) / temperature - (st.log_norm - sd.log_norm);
            // Both tokens are kept, so finite logits: any infinity is an overflow of f64's
            // range (T below ~1e-300, or logits near f64's limits), not representable.
            if lr.is_infinite() {
                return Err(Error::BadTemperature(temperature));
            }
            log_rho.push(lr);
        }
        Ok(Self::scan(
            prob_rows(target, &t_rows, temperature),
            prob_rows(draft, &d_rows, temperature),
            log_rho,
            tokens.to_vec(),
        ))
    }

    /// The scan of DESIGN.md, in log space where products of many rows meet.
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
            // A_r is summed directly (DESIGN.md): R_r + 1 - s_{r-1} cancels catastrophically.
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
