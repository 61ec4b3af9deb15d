//! Randomness shared by the CPU reference and the kernels: the Philox generator and the
//! layout of its counter (which words hold the request, step, row, token and purpose).

mod noise;
mod philox;

pub(crate) use noise::{MAX_NOISE_ROWS, RaceTiles, StreamLayout};
pub use noise::{NoiseKey, Purpose, RACE_TILE};

/// The noise layout with other purpose codes, for this crate's statistical tests (the
/// `testing` feature; not a stable API).
#[cfg(feature = "testing")]
pub mod testing {
    pub use super::noise::StreamLayout;
}
pub use philox::philox4x32_10;
