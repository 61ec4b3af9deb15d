//! Drawing one step's outcome from a [`NoiseKey`], by exactly the scheme the kernels use
//! (see [`crate::rng`] for the counter layout).
//!
//! * ASpS, from the top (docs/design.md, "Performance model"): keep all n draft tokens when
//!   `U(Accept, 0) < s_n`. Otherwise descend the residual rows from the last: row r (0-based,
//!   `R_r` the sum of its residual `max(0, s_r p_{r+1} - q_{r+1})` over v != x_{r+1}, `s_r` the
//!   scale before it) stops the descent when `u = U(Descend, r)` passes `u < s_r` and then
//!   `u (R_r + 1 - s_r) < R_r`; the first row that stops emits x_1..x_r and the winner of the
//!   race over `res_r(v)`, v != x_{r+1}, in the stream `(Residual, r)`. Row r stops with
//!   probability `R_r / (R_r + 1 - s_r)` given the descent reached it, which gives the law of
//!   docs/design.md (`T_r R_r` for the row, `s_n` for the full accept: see
//!   [`PreparedStep::law`]); the first test is implied
//!   by the second (`R_r <= s_r`), and lets the kernels skip reading a row that fails it.
//! * SpS: at row r, keep x_r when `U(SpsAccept, r) < min(1, rho_r)`; at the first rejection,
//!   emit the winner of the race over `res_r(v)`, v != x_r, in the stream `(Residual, r)`.
//! * Both, after a full accept: the bonus is the winner of the race over `p_{n+1}(v)` in the
//!   stream `(Bonus, 0)`.
//! * Greedy: no noise.
//!
//! A race (src/rng/noise.rs, "Races") draws a tile of 16 tokens by a Gumbel-max race over the
//! tiles' weights, then a token inside it by its cumulative weight. Ties between tile keys go to
//! the lowest tile; they have probability 0 in exact arithmetic, and here two tiles of equal
//! weight tie when their uniforms fall in the same 22-bit cell, about 2^-23 per pair.

use super::step::{PreparedStep, min0};
use crate::error::{Error, Result};
use crate::method::{Method, Outcome};
use crate::rng::{NoiseKey, Purpose, RaceTiles, StreamLayout};

impl PreparedStep {
    /// Draws this step's outcome under `method` with the noise of `key`.
    ///
    /// Errors only with [`Error::NoOutcome`], when the draw reaches a rejection whose residual
    /// rounding has left with mass 0: the target and draft rows agree to f64 precision
    /// everywhere but at the draft token (the kernels, in f32, meet this case at about 1e-7:
    /// see [`crate::cuda::RequestStatus::NoOutcome`]).
    pub fn sample(&self, method: Method, key: NoiseKey) -> Result<Outcome> {
        self.sample_in(method, key, &StreamLayout::STANDARD)
    }

    /// [`PreparedStep::sample`] with the purpose codes of `layout`, for the statistical tests
    /// that show a shared stream is caught (the `testing` feature).
    #[cfg(feature = "testing")]
    pub fn sample_with_layout(
        &self,
        method: Method,
        key: NoiseKey,
        layout: &crate::rng::testing::StreamLayout,
    ) -> Result<Outcome> {
        self.sample_in(method, key, layout)
    }

    fn sample_in(&self, method: Method, key: NoiseKey, layout: &StreamLayout) -> Result<Outcome> {
        match method {
            Method::Asps => self.sample_asps(key, layout),
            Method::Sps => self.sample_sps(key, layout),
            Method::Greedy => Ok(self.greedy_outcome()),
        }
    }

    fn sample_asps(&self, key: NoiseKey, layout: &StreamLayout) -> Result<Outcome> {
        let n = self.draft_len();
        if key.uniform_scalar_in(layout, Purpose::Accept, 0) < self.log_s[n].exp() {
            return self.bonus(key, layout);
        }
        for r in (0..n).rev() {
            if self.asps_row_stops(key, layout, r) {
                let race = RaceTiles::new(&key, layout, Purpose::Residual, r, &self.res_asps[r]);
                let token = race.winner().ok_or(Error::NoOutcome)?;
                return Ok(Outcome { accepted: r, token });
            }
        }
        Err(Error::NoOutcome)
    }

    /// `R_r / (R_r + 1 - s_r)`: the probability that ASpS's descent stops at residual row r
    /// once it reached it (0 when the row has no residual mass).
    #[cfg(feature = "testing")]
    fn asps_stop_probability(&self, r: usize) -> f64 {
        let mass: f64 = self.res_asps[r].iter().sum();
        let gap = -self.log_s[r].exp_m1();
        if mass > 0.0 { mass / (mass + gap) } else { 0.0 }
    }

    /// Whether ASpS's descent stops at residual row r under `key` (module docs).
    fn asps_row_stops(&self, key: NoiseKey, layout: &StreamLayout, r: usize) -> bool {
        let u = key.uniform_scalar_in(layout, Purpose::Descend, r);
        if u >= self.log_s[r].exp() {
            return false;
        }
        let mass: f64 = self.res_asps[r].iter().sum();
        let gap = -self.log_s[r].exp_m1();
        mass > 0.0 && u * (mass + gap) < mass
    }

    fn sample_sps(&self, key: NoiseKey, layout: &StreamLayout) -> Result<Outcome> {
        for (r, (res, &log_rho)) in self.res_sps.iter().zip(&self.log_rho).enumerate() {
            let u = key.uniform_scalar_in(layout, Purpose::SpsAccept, r);
            if u.ln() < min0(log_rho) {
                continue;
            }
            let race = RaceTiles::new(&key, layout, Purpose::Residual, r, res);
            return match race.winner() {
                Some(token) => Ok(Outcome { accepted: r, token }),
                None => Err(Error::NoOutcome),
            };
        }
        self.bonus(key, layout)
    }

    /// The bonus after a full accept: a race on the target's last row.
    fn bonus(&self, key: NoiseKey, layout: &StreamLayout) -> Result<Outcome> {
        let n = self.draft_len();
        RaceTiles::new(&key, layout, Purpose::Bonus, 0, &self.p[n])
            .winner()
            .map(|token| Outcome { accepted: n, token })
            .ok_or(Error::NoOutcome)
    }
}

impl PreparedStep {
    /// How close this step's draw under `key` was to choosing `b` instead of `a`: the gap,
    /// in log units, at the first decision where the two outcomes part (a race between their
    /// tiles' keys or, inside one tile, the pick against the cumulative weight between them;
    /// an accept or stop test `ln u` against the log of its probability; or a greedy argmax in
    /// log-probability). Tests use it to tell float near-ties from real disagreements
    /// between the kernels and this reference (the `testing` feature). 0 for equal outcomes.
    #[cfg(feature = "testing")]
    pub fn decision_margin(&self, method: Method, key: NoiseKey, a: Outcome, b: Outcome) -> f64 {
        if a == b {
            return 0.0;
        }
        let n = self.draft_len();
        let ln_p = |r: usize, v: u32| self.p[r][v as usize].ln();
        let layout = &StreamLayout::STANDARD;
        let bonus_margin =
            || RaceTiles::new(&key, layout, Purpose::Bonus, 0, &self.p[n]).margin(a.token, b.token);
        let residual_margin = |res: &[f64], r: usize| {
            RaceTiles::new(&key, layout, Purpose::Residual, r, res).margin(a.token, b.token)
        };
        match method {
            Method::Asps => {
                // The first test, from the top, where the two outcomes part.
                if (a.accepted == n) != (b.accepted == n) {
                    let u = key.uniform_scalar(Purpose::Accept, 0);
                    (u.ln() - self.log_s[n]).abs()
                } else if a.accepted == n {
                    bonus_margin()
                } else if a.accepted != b.accepted {
                    // The higher row stopped one and not the other.
                    let r = a.accepted.max(b.accepted);
                    let u = key.uniform_scalar(Purpose::Descend, r);
                    (u.ln() - self.asps_stop_probability(r).ln()).abs()
                } else {
                    residual_margin(&self.res_asps[a.accepted], a.accepted)
                }
            }
            Method::Sps => {
                if a.accepted != b.accepted {
                    let r = a.accepted.min(b.accepted);
                    let u = key.uniform_scalar(Purpose::SpsAccept, r);
                    (u.ln() - min0(self.log_rho[r])).abs()
                } else if a.accepted == n {
                    bonus_margin()
                } else {
                    residual_margin(&self.res_sps[a.accepted], a.accepted)
                }
            }
            Method::Greedy => {
                let r = a.accepted.min(b.accepted);
                let other = if a.accepted == r { a.token } else { b.token };
                let mine = if a.accepted == b.accepted {
                    b.token
                } else {
                    self.tokens[r]
                };
                (ln_p(r, other) - ln_p(r, mine)).abs()
            }
        }
    }
}
