//! Randomness shared by the CPU reference and the kernels: the Philox generator and the
//! layout of its counter (which words hold the request, step, row, token and purpose).

mod noise;
mod philox;

pub(crate) use noise::MAX_NOISE_ROWS;
pub use noise::{NoiseKey, Purpose, StreamLayout};
pub use philox::philox4x32_10;
