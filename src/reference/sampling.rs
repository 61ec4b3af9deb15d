//! How a request samples ([`Sampling`]: each model's temperature and truncation) and the domain
//! of those parameters, written once for Rust: every check of a temperature or a truncation in
//! this crate and its tools goes through [`temperature_is_valid`] and [`Truncation::check`].
//! The kernels have their own copy of the rules (kernels/sampling.cuh), and
//! tests/sampling_rules.rs checks both against one table.

use crate::error::{Error, Model, Result};

/// The smallest temperature other than 0, about `4.2397e-39` (bits `0x002E_2A8F`): the least
/// `f32` whose inverse times `log2(e)`, each rounded to `f32`, is finite, which the kernels'
/// base-2 exponentials need (`ASPS_MIN_TEMPERATURE` in include/asps.h).
pub const MIN_TEMPERATURE: f32 = f32::from_bits(0x002E_2A8F);

/// The largest temperature: `2^126`, the largest `f32` whose inverse is a normal `f32`
/// (`ASPS_MAX_TEMPERATURE`). Past it 1/T is subnormal, which the GPU flushes to 0 under `-ftz`,
/// and a masked logit's `-inf * 0` would be NaN.
pub const MAX_TEMPERATURE: f32 = f32::from_bits(0x7E80_0000);

/// Whether `t` is a temperature a request may have: 0 (greedy), or `t` in
/// [[`MIN_TEMPERATURE`], [`MAX_TEMPERATURE`]], the `f32` values whose `1 / t` is a normal `f32`
/// and whose `log2(e) / t` is finite. NaN, infinities and negative values are not.
///
/// ```
/// use asps::reference::{MAX_TEMPERATURE, MIN_TEMPERATURE, temperature_is_valid};
/// assert!(temperature_is_valid(0.0) && temperature_is_valid(0.7));
/// assert!(temperature_is_valid(MIN_TEMPERATURE.into()) && temperature_is_valid(MAX_TEMPERATURE.into()));
/// assert!(!temperature_is_valid(-1.0) && !temperature_is_valid(f64::NAN) && !temperature_is_valid(1e-300));
/// ```
pub fn temperature_is_valid(t: f64) -> bool {
    t == 0.0 || (t >= f64::from(MIN_TEMPERATURE) && t <= f64::from(MAX_TEMPERATURE))
}

/// [`temperature_is_valid`] as a `Result`; `allow_zero` false also refuses 0 (a softmax needs
/// T > 0).
pub(crate) fn check_temperature(temperature: f64, allow_zero: bool) -> Result<()> {
    if temperature_is_valid(temperature) && (allow_zero || temperature != 0.0) {
        Ok(())
    } else {
        Err(Error::BadTemperature(temperature))
    }
}

/// One model's truncation of its rows: what an engine's top-k, top-p and min-p sampling
/// parameters keep. [`Truncation::OFF`] keeps every token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truncation {
    /// Keep the `top_k` largest values (ties at the boundary kept); 0 turns it off, and a value
    /// of at least the number of unmasked tokens keeps them all. Negative is refused.
    pub top_k: i32,
    /// Keep the most probable tokens until they hold `top_p` of the mass (ties kept); in
    /// (0, 1], 1 turns it off.
    pub top_p: f32,
    /// Keep the tokens of probability at least `min_p` times the largest; in [0, 1), 0 turns it
    /// off.
    pub min_p: f32,
}

impl Default for Truncation {
    fn default() -> Self {
        Truncation::OFF
    }
}

impl Truncation {
    /// No truncation: every unmasked token is kept.
    pub const OFF: Truncation = Truncation {
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
    };

    /// Whether this keeps every unmasked token of every row.
    pub fn is_off(&self) -> bool {
        self.top_k == 0 && self.top_p == 1.0 && self.min_p == 0.0
    }

    /// Whether the values are in their domain: `top_k >= 0`, `top_p` in (0, 1], `min_p` in
    /// [0, 1) (NaN refused).
    pub fn is_valid(&self) -> bool {
        self.out_of_domain().is_none()
    }

    /// The first value out of its domain, described; `None` when all are in it.
    fn out_of_domain(&self) -> Option<String> {
        if self.top_k < 0 {
            Some(format!("top_k = {} is negative", self.top_k))
        } else if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            Some(format!("top_p = {} is not in (0, 1]", self.top_p))
        } else if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            Some(format!("min_p = {} is not in [0, 1)", self.min_p))
        } else {
            None
        }
    }

    /// [`Truncation::is_valid`] as a `Result` whose message says which value is out of its
    /// domain; `model` names whose parameters these are.
    pub fn check(&self, model: Model) -> Result<()> {
        match self.out_of_domain() {
            None => Ok(()),
            Some(what) => Err(Error::BadTruncation(format!("{model} {what}"))),
        }
    }
}

/// How a request samples, per model: the target's temperature and truncation for its n + 1
/// rows, and the draft's for its n rows, which describe the law the drafter really drew each
/// draft token from (it may differ from the target's). The kernels take the same description
/// as `[B]` device arrays (`AspsSampling` in include/asps.h).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The target's temperature; 0 = greedy verification, which ignores every other field
    /// (they are checked all the same).
    pub temperature: f64,
    /// The draft's temperature; `None` means the target's. `Some(0.0)` is a greedy drafter: each
    /// draft token is a largest logit of its draft row (any of them on ties) and was drawn with
    /// probability 1, so q is a point mass on it and the draft's truncation is not used.
    pub draft_temperature: Option<f64>,
    /// The target's truncation.
    pub target: Truncation,
    /// The draft's truncation.
    pub draft: Truncation,
}

impl Sampling {
    /// Plain softmax sampling at `temperature` for both models (no truncation).
    pub const fn plain(temperature: f64) -> Self {
        Sampling {
            temperature,
            draft_temperature: None,
            target: Truncation::OFF,
            draft: Truncation::OFF,
        }
    }

    /// The draft's temperature: [`Sampling::draft_temperature`], or the target's when `None`.
    pub fn draft_temperature(&self) -> f64 {
        self.draft_temperature.unwrap_or(self.temperature)
    }

    /// Whether the request is verified greedily (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the request as a verification call does: both temperatures
    /// ([`temperature_is_valid`]; 0 allowed), then both truncations ([`Truncation::check`]; for
    /// greedy requests too, as the kernels check them, though greedy ignores them).
    ///
    /// ```
    /// use asps::Error;
    /// use asps::reference::{Sampling, Truncation};
    ///
    /// assert!(Sampling::plain(0.0).check().is_ok());
    /// assert!(matches!(Sampling::plain(-1.0).check(), Err(Error::BadTemperature(_))));
    /// let bad_draft_temperature = Sampling { draft_temperature: Some(f64::NAN), ..Sampling::plain(1.0) };
    /// assert!(matches!(bad_draft_temperature.check(), Err(Error::BadTemperature(_))));
    /// let bad_draft = Sampling {
    ///     draft: Truncation { top_p: 0.0, ..Truncation::OFF },
    ///     ..Sampling::plain(1.0)
    /// };
    /// assert!(matches!(bad_draft.check(), Err(Error::BadTruncation(_))));
    /// ```
    pub fn check(&self) -> Result<()> {
        check_temperature(self.temperature, true)?;
        check_temperature(self.draft_temperature(), true)?;
        self.target.check(Model::Target)?;
        self.draft.check(Model::Draft)
    }
}
