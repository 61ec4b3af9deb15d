//! The noise streams of one verification step, keyed exactly as the kernels key them.
//!
//! # Counter layout
//!
//! Every random number is one Philox4x32-10 call (see [`philox4x32_10`]):
//!
//! | Philox word | holds |
//! |---|---|
//! | key\[0\], key\[1\] | the request's 64-bit seed (low, high): the *request* |
//! | counter\[0\] | the tile `j` for race noise (tokens `16 j .. 16 j + 16`), 0 for per-row or per-step noise: the *tile* |
//! | counter\[1\] | `purpose << 24 \| row`, row < 2^24: the *purpose* and the *row* |
//! | counter\[2\], counter\[3\] | the request's 64-bit offset (low, high): the *step* |
//!
//! A call yields four words; a uniform takes two of them, `(hi, lo)`: words (0, 1) for a tile's
//! race uniform and for scalar noise, words (2, 3) for a tile's pick uniform (below, "Races").
//! The uniform is an `f32` built from
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
//! | [`Purpose::Residual`] | 1 | draft position r | tile | race over residual row r: which token follows x_1..x_r (ASpS and SpS) |
//! | [`Purpose::Bonus`] | 2 | 0 | tile | race on the target's last row after a full accept |
//! | [`Purpose::Accept`] | 3 | 0 | - | ASpS: the uniform of the full-accept test `u < s_n` |
//! | [`Purpose::SpsAccept`] | 4 | draft position r | - | SpS's accept/reject uniform at row r |
//! | [`Purpose::Descend`] | 5 | draft position r | - | ASpS: the uniform of the stop-or-descend test at residual row r |
//! | [`Purpose::TreeNode`] | 6 | tree node u | - | trees: TV's stage test at u; RRS's accept test of child u |
//! | [`Purpose::TreeEmit`] | 7 | tree node u | tile | trees: race over the law node u emits from |
//!
//! ASpS draws its outcome from the top (docs/design.md, "Performance model"; `sample.rs`): the full
//! accept with probability s_n (`Accept`); else, from the last residual row down, row r stops
//! the descent with probability R_r / (R_r + 1 - s_r) (`Descend`, tested against s_r first,
//! which bounds that probability, so a row whose test fails there is never read); the stopping
//! row's token is the winner of its race (`Residual`). The kernels evaluate the rows either
//! all at once or lazily from the top, with this one scheme, so both give the same tokens
//! (except on float near-ties).
//!
//! # Races
//!
//! A race draws one token of a row with probability proportional to its weight `w(v) >= 0` (a
//! residual, or the target's probability for the bonus), in two steps over *tiles* of
//! [`RACE_TILE`] = 16 consecutive tokens (tile `j` holds tokens `16 j .. 16 j + 16`):
//!
//! 1. Tiles race: a tile of weight `W_j = sum of w over its tokens > 0` gets the key
//!    `ln W_j - ln E_j` with `E_j = -ln(1 - u_j) ~ Exp(1)`, `u_j` its race uniform, and the
//!    largest key wins (Gumbel-max: tile j wins with probability `W_j / sum W`; equal keys go
//!    to the lowest tile). `E` is computed from `u` near 0, where the uniform's grid is finest,
//!    so the winning (smallest) `E` keeps full relative precision.
//! 2. Inside the winning tile, the token is picked by its cumulative weight: the first `v` whose
//!    weight summed over the tile's tokens up to `v`, in token order, exceeds `u' W_j`, `u'` the
//!    tile's pick uniform (so `v` has probability `w(v) / W_j`); should rounding leave none, the
//!    tile's last token of positive weight.
//!
//! So `P(v) = W_j / sum W * w(v) / W_j = w(v) / sum W`, exactly the row's law, with one Philox
//! call per tile instead of one per token pair, and no logarithm per token: the kernels spend
//! per token only the weight and an add (docs/design.md, "What the floor demands").

use super::philox::philox4x32_10;

/// Why a random number is drawn; each purpose is its own stream (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Race noise per (draft position, tile of 16 tokens) for the residual outcomes.
    Residual,
    /// Race noise per tile of 16 tokens for the bonus token drawn from the target's last row.
    Bonus,
    /// ASpS's full-accept uniform.
    Accept,
    /// SpS accept/reject uniform per draft position.
    SpsAccept,
    /// ASpS's stop-or-descend uniform per residual row.
    Descend,
    /// Trees: per node, the uniform of TV's stage test or of RRS's accept test of that child.
    TreeNode,
    /// Trees: race noise per (node, tile of 16 tokens) for the token emitted after the
    /// accepted node.
    TreeEmit,
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
    /// Code of [`Purpose::TreeNode`].
    pub tree_node: u32,
    /// Code of [`Purpose::TreeEmit`].
    pub tree_emit: u32,
}

impl StreamLayout {
    /// The layout the crate and its kernels use.
    pub const STANDARD: StreamLayout = StreamLayout {
        residual: 1,
        bonus: 2,
        accept: 3,
        sps_accept: 4,
        descend: 5,
        tree_node: 6,
        tree_emit: 7,
    };

    fn code(&self, purpose: Purpose) -> u32 {
        match purpose {
            Purpose::Residual => self.residual,
            Purpose::Bonus => self.bonus,
            Purpose::Accept => self.accept,
            Purpose::SpsAccept => self.sps_accept,
            Purpose::Descend => self.descend,
            Purpose::TreeNode => self.tree_node,
            Purpose::TreeEmit => self.tree_emit,
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

    /// The two uniforms in (0, 1) of tile `tile` of `row` in the stream of `purpose`, as the
    /// kernels draw them: `[race, pick]`, words (0, 1) and (2, 3) of block `tile` (module docs,
    /// "Races").
    pub fn tile_uniforms(&self, purpose: Purpose, row: usize, tile: u32) -> [f64; 2] {
        self.tile_uniforms_in(&StreamLayout::STANDARD, purpose, row, tile)
    }

    /// The one uniform in (0, 1) of `row` in the stream of `purpose` (scalar noise): words 0
    /// and 1 of block 0.
    pub fn uniform_scalar(&self, purpose: Purpose, row: usize) -> f64 {
        self.tile_uniforms(purpose, row, 0)[0]
    }

    /// [`NoiseKey::tile_uniforms`] with the purpose codes of `layout`.
    pub(crate) fn tile_uniforms_in(
        &self,
        layout: &StreamLayout,
        purpose: Purpose,
        row: usize,
        tile: u32,
    ) -> [f64; 2] {
        let w = self.block(layout, purpose, row, tile);
        [f64::from(unit(w[0], w[1])), f64::from(unit(w[2], w[3]))]
    }

    /// [`NoiseKey::uniform_scalar`] with the purpose codes of `layout`.
    pub(crate) fn uniform_scalar_in(
        &self,
        layout: &StreamLayout,
        purpose: Purpose,
        row: usize,
    ) -> f64 {
        self.tile_uniforms_in(layout, purpose, row, 0)[0]
    }
}

/// Tokens per tile of a race (module docs, "Races"; `TILE` in kernels/common.cuh).
pub const RACE_TILE: usize = 16;

/// Where a race over `weights` (one per token, `>= 0`, not NaN) stands under a noise stream:
/// every tile's weight and key, from which [`RaceTiles::winner`] draws (module docs, "Races").
pub(crate) struct RaceTiles<'a> {
    weights: &'a [f64],
    /// Per tile: its weight `W_j`, and its key `ln W_j - ln E_j` (`-inf` for a tile of weight 0).
    tiles: Vec<(f64, f64)>,
    uniforms: Vec<[f64; 2]>,
}

impl<'a> RaceTiles<'a> {
    /// The race over `weights` with the noise of `(purpose, row)` under `key` and `layout`.
    pub(crate) fn new(
        key: &NoiseKey,
        layout: &StreamLayout,
        purpose: Purpose,
        row: usize,
        weights: &'a [f64],
    ) -> Self {
        let mut tiles = Vec::with_capacity(weights.len().div_ceil(RACE_TILE));
        let mut uniforms = Vec::with_capacity(tiles.capacity());
        for (j, chunk) in weights.chunks(RACE_TILE).enumerate() {
            let big_w: f64 = chunk.iter().sum();
            let u = key.tile_uniforms_in(layout, purpose, row, j as u32);
            let k = if big_w > 0.0 {
                big_w.ln() + gumbel(u[0])
            } else {
                f64::NEG_INFINITY
            };
            tiles.push((big_w, k));
            uniforms.push(u);
        }
        RaceTiles {
            weights,
            tiles,
            uniforms,
        }
    }

    /// The winning token, or `None` when every weight is 0.
    pub(crate) fn winner(&self) -> Option<u32> {
        let mut best: Option<(usize, f64)> = None;
        for (j, &(_, k)) in self.tiles.iter().enumerate() {
            if k > f64::NEG_INFINITY && best.is_none_or(|(_, b)| k > b) {
                best = Some((j, k));
            }
        }
        let (j, _) = best?;
        let chunk = &self.weights[j * RACE_TILE..((j + 1) * RACE_TILE).min(self.weights.len())];
        let goal = self.uniforms[j][1] * self.tiles[j].0;
        let mut acc = 0.0;
        let mut last = None;
        for (i, &w) in chunk.iter().enumerate() {
            acc += w;
            if w > 0.0 {
                last = Some(i);
            }
            if acc > goal {
                return Some((j * RACE_TILE + i) as u32);
            }
        }
        last.map(|i| (j * RACE_TILE + i) as u32)
    }

    /// How close the race came to choosing token `b` instead of token `a`, in log units: between
    /// tiles, the gap between their keys; inside one tile, the gap between `ln(u' W_j)` and the
    /// log of the cumulative weight through the lower of the two tokens (the boundary the pick
    /// crosses between them). Infinite when either token has weight 0 (no near-tie gives it).
    /// For the comparison tests (the `testing` feature: `PreparedStep::decision_margin`).
    #[cfg(feature = "testing")]
    pub(crate) fn margin(&self, a: u32, b: u32) -> f64 {
        let (a, b) = (a as usize, b as usize);
        if a >= self.weights.len() || b >= self.weights.len() {
            return f64::INFINITY;
        }
        if self.weights[a] == 0.0 || self.weights[b] == 0.0 {
            return f64::INFINITY;
        }
        let (ja, jb) = (a / RACE_TILE, b / RACE_TILE);
        if ja != jb {
            return (self.tiles[ja].1 - self.tiles[jb].1).abs();
        }
        let low = a.min(b);
        let through: f64 = self.weights[ja * RACE_TILE..=low].iter().sum();
        let goal = self.uniforms[ja][1] * self.tiles[ja].0;
        (goal.ln() - through.ln()).abs()
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
    fn purposes_rows_tiles_and_steps_are_distinct_streams() {
        let k = NoiseKey::new(7, 3);
        let base = k.tile_uniforms(Purpose::Residual, 1, 10);
        assert_ne!(base, k.tile_uniforms(Purpose::Bonus, 1, 10));
        assert_ne!(base, k.tile_uniforms(Purpose::Residual, 2, 10));
        assert_ne!(base, k.tile_uniforms(Purpose::Residual, 1, 11));
        assert_ne!(
            base,
            NoiseKey::new(7, 4).tile_uniforms(Purpose::Residual, 1, 10)
        );
        assert_ne!(
            base,
            NoiseKey::new(8, 3).tile_uniforms(Purpose::Residual, 1, 10)
        );
        // A tile's race and pick uniforms share a Philox call but not its words.
        assert_ne!(base[0], base[1]);
    }

    /// The race's law, by enumeration of the pick: for a fixed winning tile, the pick uniform's
    /// position against the cumulative weights gives each token `w / W`; and the winner is
    /// always a token of positive weight.
    #[test]
    fn races_pick_tokens_of_positive_weight_in_proportion() {
        let weights: Vec<f64> = (0..40)
            .map(|v| {
                if v % 3 == 0 {
                    0.0
                } else {
                    f64::from(v % 7 + 1)
                }
            })
            .collect();
        let mut counts = vec![0u32; weights.len()];
        let trials = 20_000;
        for step in 0..trials {
            let key = NoiseKey::new(11, step);
            let race = RaceTiles::new(&key, &StreamLayout::STANDARD, Purpose::Bonus, 0, &weights);
            let v = race.winner().expect("a positive weight") as usize;
            assert!(weights[v] > 0.0, "token {v} of weight 0");
            counts[v] += 1;
        }
        // Chi-square against w / sum w, 26 cells of positive weight (25 degrees of freedom):
        // the 0.999 quantile is 52.62, so a correct race fails with probability 0.001 (seeded,
        // 20000 draws).
        let total: f64 = weights.iter().sum();
        let chi2: f64 = weights
            .iter()
            .zip(&counts)
            .filter(|(w, _)| **w > 0.0)
            .map(|(w, &c)| {
                let e = w / total * f64::from(trials as u32);
                (f64::from(c) - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 52.62, "chi2 = {chi2}");
        let zero = vec![0.0; 20];
        let race = RaceTiles::new(
            &NoiseKey::new(1, 1),
            &StreamLayout::STANDARD,
            Purpose::Bonus,
            0,
            &zero,
        );
        assert_eq!(race.winner(), None);
    }
}
