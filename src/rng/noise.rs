//! The noise streams of one verification step, keyed exactly as the kernels key them.
//!
//! # Counter layout
//!
//! Every random number is one Philox4x32-10 call (see [`philox4x32_10`]):
//!
//! | Philox word | holds |
//! |---|---|
//! | key\[0\], key\[1\] | the request's 64-bit seed (low, high): the *request* |
//! | counter\[0\] | `token >> 1` for per-token noise, 0 for per-row or per-step noise: the *token* |
//! | counter\[1\] | `purpose << 24 \| row`, row < 2^24: the *purpose* and the *row* |
//! | counter\[2\], counter\[3\] | the request's 64-bit offset (low, high): the *step* |
//!
//! A call yields four words; a uniform takes two of them, `(hi, lo)`: words (0, 1) for an even
//! token and for scalar noise, words (2, 3) for an odd token. The uniform is an `f32` built from
//! the two words with integer operations only (see [`unit`]): reading `x = hi * 2^32 + lo` as a
//! 64-bit fraction, `k = clz(x)` picks the binade `[2^-(k+1), 2^-k)` with its exact
//! probability, the 22 bits after the leading one pick one of 2^22 equal cells in it, and `u`
//! is that cell's midpoint. So `u` is a uniform variate rounded to 22 significant bits, with
//! that relative precision down to 2^-42 and exact binade masses down to 2^-64, strictly inside
//! (0, 1) (`2^-65 < u <= 1 - 2^-24`), and exactly the same number on the GPU (no fp64 there, no
//! rounding anywhere). The reference widens it to f64 exactly. Its 22-bit resolution matches
//! what the kernels' f32 logits and statistics resolve anyway; the scalar SpS test `u < rho`
//! is quantised to 2^-23 relative, and rho below 2^-65 counts as 0.
//!
//! The request's position in a batch appears nowhere, so a request draws the same noise whatever
//! batch it is verified in. The caller (or the GPU entry point, on the device) advances the offset
//! once per step, so no noise is reused across steps.
//!
//! # Purposes
//!
//! | purpose | code | row | token | used for |
//! |---|---|---|---|---|
//! | [`Purpose::Residual`] | 1 | draft position r | v | race over residual row r: which token follows x_1..x_r (ASpS and SpS) |
//! | [`Purpose::Bonus`] | 2 | 0 | v | race on the target's last row after a full accept |
//! | [`Purpose::Accept`] | 3 | 0 | - | ASpS: the uniform of the full-accept test `u < s_n` |
//! | [`Purpose::SpsAccept`] | 4 | draft position r | - | SpS's accept/reject uniform at row r |
//! | [`Purpose::Descend`] | 5 | draft position r | - | ASpS: the uniform of the stop-or-descend test at residual row r |
//!
//! ASpS draws its outcome from the top (docs/design.md, "Performance model"; `sample.rs`): the full
//! accept with probability s_n (`Accept`); else, from the last residual row down, row r stops
//! the descent with probability R_r / (R_r + 1 - s_r) (`Descend`, tested against s_r first,
//! which bounds that probability, so a row whose test fails there is never read); the stopping
//! row's token is the winner of its race (`Residual`). The kernels evaluate the rows either
//! all at once or lazily from the top, with this one scheme, so both give the same tokens
//! (except on float near-ties).
//!
//! Races are exponential races: a candidate of weight `w` gets the key `ln w - ln E` with
//! `E = -ln(1 - u) ~ Exp(1)`, and the largest key wins (Gumbel-max). `E` is computed from `u` near 0,
//! where the uniform's grid is finest, so the winning (smallest) `E` keeps full relative precision
//! even in races over millions of candidates.

use super::philox::philox4x32_10;

/// Why a random number is drawn; each purpose is its own stream (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Race noise per (draft position, token) for the residual outcomes.
    Residual,
    /// Race noise per token for the bonus token drawn from the target's last row.
    Bonus,
    /// ASpS's full-accept uniform.
    Accept,
    /// SpS accept/reject uniform per draft position.
    SpsAccept,
    /// ASpS's stop-or-descend uniform per residual row.
    Descend,
}

/// The purpose codes written into counter word 1. Tests swap codes to show that sharing a
/// stream between purposes is detected (the `testing` feature exports it); everything else uses
/// [`StreamLayout::STANDARD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLayout {
    /// Code of [`Purpose::Residual`].
    pub residual: u32,
    /// Code of [`Purpose::Bonus`]. Setting it to `residual` makes the bonus race reuse the
    /// residual noise of draft position 0 (a bug that the statistical tests must catch).
    pub bonus: u32,
    /// Code of [`Purpose::Accept`].
    pub accept: u32,
    /// Code of [`Purpose::SpsAccept`].
    pub sps_accept: u32,
    /// Code of [`Purpose::Descend`].
    pub descend: u32,
}

impl StreamLayout {
    /// The layout the crate and its kernels use.
    pub const STANDARD: StreamLayout = StreamLayout {
        residual: 1,
        bonus: 2,
        accept: 3,
        sps_accept: 4,
        descend: 5,
    };

    fn code(&self, purpose: Purpose) -> u32 {
        match purpose {
            Purpose::Residual => self.residual,
            Purpose::Bonus => self.bonus,
            Purpose::Accept => self.accept,
            Purpose::SpsAccept => self.sps_accept,
            Purpose::Descend => self.descend,
        }
    }
}

/// Rows must fit in the 24 low bits of counter word 1.
pub(crate) const MAX_NOISE_ROWS: usize = 1 << 24;

/// The randomness of one verification step of one request: its seed and the step's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoiseKey {
    /// The request's seed (the Philox key).
    pub seed: u64,
    /// The step's offset (Philox counter words 2 and 3); advance it once per step.
    pub offset: u64,
}

impl NoiseKey {
    /// A key for `seed` at step `offset`.
    pub const fn new(seed: u64, offset: u64) -> Self {
        NoiseKey { seed, offset }
    }

    /// The four Philox words at `(purpose, row, block)` under `layout`.
    fn block(&self, layout: &StreamLayout, purpose: Purpose, row: usize, block: u32) -> [u32; 4] {
        debug_assert!(row < MAX_NOISE_ROWS);
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let counter = [
            block,
            (layout.code(purpose) << 24) | (row as u32 & 0x00FF_FFFF),
            self.offset as u32,
            (self.offset >> 32) as u32,
        ];
        philox4x32_10(counter, key)
    }

    /// The uniform in (0, 1) for `token` of `row` in the stream of `purpose`, as the kernels
    /// draw it.
    pub fn uniform_token(&self, purpose: Purpose, row: usize, token: u32) -> f64 {
        self.uniform_token_in(&StreamLayout::STANDARD, purpose, row, token)
    }

    /// The one uniform in (0, 1) of `row` in the stream of `purpose` (scalar noise): words 0
    /// and 1 of block 0, which is where token 0's would be.
    pub fn uniform_scalar(&self, purpose: Purpose, row: usize) -> f64 {
        self.uniform_token(purpose, row, 0)
    }

    /// The race noise `-ln E`, `E ~ Exp(1)`, of `token` of `row` (a standard Gumbel variate).
    pub fn gumbel_token(&self, purpose: Purpose, row: usize, token: u32) -> f64 {
        gumbel(self.uniform_token(purpose, row, token))
    }

    /// [`NoiseKey::uniform_token`] with the purpose codes of `layout`.
    pub(crate) fn uniform_token_in(
        &self,
        layout: &StreamLayout,
        purpose: Purpose,
        row: usize,
        token: u32,
    ) -> f64 {
        let w = self.block(layout, purpose, row, token >> 1);
        let lane = 2 * (token as usize & 1);
        f64::from(unit(w[lane], w[lane + 1]))
    }

    /// [`NoiseKey::uniform_scalar`] with the purpose codes of `layout`.
    pub(crate) fn uniform_scalar_in(
        &self,
        layout: &StreamLayout,
        purpose: Purpose,
        row: usize,
    ) -> f64 {
        self.uniform_token_in(layout, purpose, row, 0)
    }

    /// [`NoiseKey::gumbel_token`] with the purpose codes of `layout`.
    pub(crate) fn gumbel_token_in(
        &self,
        layout: &StreamLayout,
        purpose: Purpose,
        row: usize,
        token: u32,
    ) -> f64 {
        gumbel(self.uniform_token_in(layout, purpose, row, token))
    }
}

/// The uniform of the words `(hi, lo)`, bit for bit as `unit_from_words` in kernels/philox.cuh:
/// `x = hi * 2^32 + lo`, binade `k = clz(x)` (0..=64), cell = the 22 bits after x's leading one,
/// `u` = the cell's midpoint, as the f32 bits `(126 - k) << 23 | cell << 1 | 1`.
#[inline]
pub(crate) fn unit(hi: u32, lo: u32) -> f32 {
    let x = (u64::from(hi) << 32) | u64::from(lo);
    let k = x.leading_zeros();
    let cell = if k < 64 {
        ((x << k) >> 41) as u32 & 0x3F_FFFF
    } else {
        0
    };
    f32::from_bits(((126 - k) << 23) | (cell << 1) | 1)
}

/// `-ln E` with `E = -ln(1 - u)`: E is small exactly when u is small, where u is finest.
#[inline]
fn gumbel(u: f64) -> f64 {
    -(-(-u).ln_1p()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping on words whose uniform is known by hand.
    #[test]
    fn unit_maps_words_to_cell_midpoints() {
        let ulp = 2f64.powi(-23);
        let u = |hi, lo| f64::from(unit(hi, lo));
        // x's leading bit picks the binade, the 22 bits after it the cell, the midpoint is taken.
        assert_eq!(u(0x8000_0000, 0), 0.5 * (1.0 + ulp));
        assert_eq!(u(0xC000_0000, 0), 0.5 * (1.5 + ulp));
        assert_eq!(u(0x4000_0000, 0), 0.25 * (1.0 + ulp));
        // Below 2^-32 the cell comes from lo: relative precision is kept for tiny u.
        assert_eq!(u(1, 0), 2f64.powi(-32) * (1.0 + ulp));
        assert_eq!(u(1, 0x8000_0000), 2f64.powi(-32) * (1.5 + ulp));
        assert_eq!(u(0, 0x8000_0000), 2f64.powi(-33) * (1.0 + ulp));
        assert_eq!(u(0, 1), 2f64.powi(-64) * (1.0 + ulp));
        assert_eq!(u(0, 0), 2f64.powi(-65) * (1.0 + ulp));
        // Bits past the 22 after the leading one are not used.
        assert_eq!(unit(0x8000_0000, u32::MAX), unit(0x8000_0000, 0));
        assert_eq!(unit(0x8000_01FF, 0), unit(0x8000_0000, 0));
        assert_ne!(unit(0x8000_0200, 0), unit(0x8000_0000, 0));
        // The extremes stay strictly inside (0, 1), and their Gumbel variates are finite.
        assert_eq!(u(u32::MAX, u32::MAX), 1.0 - 2f64.powi(-24));
        assert!(unit(0, 0) > 0.0);
        assert!(gumbel(u(u32::MAX, u32::MAX)).is_finite());
        assert!(gumbel(u(0, 0)).is_finite());
    }

    /// P(u < 2^-j) = 2^-j exactly for j in 1..=64: u < 2^-j holds exactly for the 2^(64 - j)
    /// values x < 2^(64 - j) (checked at both sides of the boundary, the mapping being
    /// monotone); nothing falls below 2^-65.
    #[test]
    fn unit_binades_have_their_probability() {
        let words = |x: u64| ((x >> 32) as u32, x as u32);
        for j in 1..=64u32 {
            let bound = 2f64.powi(-(j as i32));
            let first_above = 1u64 << (64 - j); // the count of x with u < 2^-j
            let (hi, lo) = words(first_above - 1);
            assert!(f64::from(unit(hi, lo)) < bound, "j = {j}");
            let (hi, lo) = words(first_above);
            assert!(f64::from(unit(hi, lo)) >= bound, "j = {j}");
        }
        assert!(f64::from(unit(0, 0)) > 2f64.powi(-65));
    }

    #[test]
    fn purposes_rows_tokens_and_steps_are_distinct_streams() {
        let k = NoiseKey::new(7, 3);
        let base = k.uniform_token(Purpose::Residual, 1, 10);
        assert_ne!(base, k.uniform_token(Purpose::Bonus, 1, 10));
        assert_ne!(base, k.uniform_token(Purpose::Residual, 2, 10));
        assert_ne!(base, k.uniform_token(Purpose::Residual, 1, 11));
        assert_ne!(
            base,
            NoiseKey::new(7, 4).uniform_token(Purpose::Residual, 1, 10)
        );
        assert_ne!(
            base,
            NoiseKey::new(8, 3).uniform_token(Purpose::Residual, 1, 10)
        );
        // Two tokens share a Philox call but not its words.
        assert_ne!(
            k.uniform_token(Purpose::Bonus, 0, 4),
            k.uniform_token(Purpose::Bonus, 0, 5)
        );
    }
}
