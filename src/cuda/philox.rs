//! The device Philox, run on given counters and keys (kernels/philox_kat.cu), so that tests can
//! hold it to the known-answer vectors and to the CPU twin.

use std::sync::Arc;

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};

use super::module::Gpu;
use crate::error::{Error, Result};

impl Gpu {
    /// `philox4x32_10(counters[i], keys[i])` for every i, computed on the device (synchronises
    /// `stream`). For tests of the device generator.
    #[doc(hidden)]
    pub fn philox_on_device(
        &self,
        stream: &Arc<CudaStream>,
        counters: &[[u32; 4]],
        keys: &[[u32; 2]],
    ) -> Result<Vec<[u32; 4]>> {
        self.check_stream(stream)?;
        if counters.len() != keys.len()
            || counters.is_empty()
            || counters.len() > i32::MAX as usize / 4
        {
            return Err(Error::Shape(format!(
                "{} counters and {} keys: need the same number, at least 1",
                counters.len(),
                keys.len()
            )));
        }
        let n = counters.len();
        let c: Vec<u32> = counters.iter().flatten().copied().collect();
        let k: Vec<u32> = keys.iter().flatten().copied().collect();
        let c = stream.clone_htod(&c)?;
        let k = stream.clone_htod(&k)?;
        let mut out = stream.alloc_zeros::<u32>(4 * n)?;
        let func = self.function("asps_philox_kat")?;
        let n_i32 = n as i32;
        let mut launch = stream.launch_builder(&func);
        launch.arg(&c).arg(&k).arg(&mut out).arg(&n_i32);
        // SAFETY: matches asps_philox_kat(const uint*, const uint*, uint*, int); thread i < n
        // reads counters[4i..4i+4] and keys[2i..2i+2] and writes out[4i..4i+4], all allocated above.
        unsafe { launch.launch(LaunchConfig::for_num_elems(n as u32)) }?;
        let out = stream.clone_dtoh(&out)?;
        Ok(out
            .chunks_exact(4)
            .map(|w| [w[0], w[1], w[2], w[3]])
            .collect())
    }
}
