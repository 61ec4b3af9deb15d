//! The kernels of kernels/testing/ (the `testing` feature): the device Philox on given counters
//! and keys, which tests hold to the known-answer vectors and to the CPU twin; a read probe,
//! whose timing gives the device's read bandwidth (the memory floor of the benches); and an
//! empty kernel, whose launches time the launch floor.
//! They live in their own image, never in the production one.

use std::sync::Arc;

use cudarc::driver::{
    CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg, sys,
};

use super::module::Gpu;
use crate::error::{Error, Result};

/// The test and bench kernels, loaded into a [`Gpu`]'s context.
#[derive(Debug, Clone)]
pub struct TestKernels {
    gpu: Gpu,
    module: Arc<CudaModule>,
}

impl TestKernels {
    /// Loads the test image into `gpu`'s context.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(TestKernels {
            gpu: gpu.clone(),
            module: gpu.load_test_image()?,
        })
    }

    /// `philox4x32_10(counters[i], keys[i])` for every i, computed on the device (synchronises
    /// `stream`). For tests of the device generator.
    pub fn philox(
        &self,
        stream: &Arc<CudaStream>,
        counters: &[[u32; 4]],
        keys: &[[u32; 2]],
    ) -> Result<Vec<[u32; 4]>> {
        self.gpu.check_stream(stream)?;
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
        let func = self.module.load_function("asps_philox_kat")?;
        let n_i32 = n as i32;
        let mut launch = stream.launch_builder(&func);
        launch.arg(&c).arg(&k).arg(&mut out).arg(&n_i32);
        // SAFETY: matches asps_philox_kat (kernels/testing/philox_kat.cu); thread i < n
        // reads counters[4i..4i+4] and keys[2i..2i+2] and writes out[4i..4i+4], all allocated above.
        unsafe { launch.launch(LaunchConfig::for_num_elems(n as u32)) }?;
        let out = stream.clone_dtoh(&out)?;
        Ok(out
            .chunks_exact(4)
            .map(|w| [w[0], w[1], w[2], w[3]])
            .collect())
    }

    /// Queues one read of every byte of `data` (a read-only reduction with 16-byte streaming
    /// loads; `data.len()` must be a multiple of 16 bytes) and writes nothing useful to `sink`.
    /// Timing it with CUDA events over a buffer larger than L2 gives the read bandwidth.
    pub fn read_probe(
        &self,
        stream: &Arc<CudaStream>,
        data: &CudaSlice<u8>,
        sink: &mut CudaSlice<u32>,
    ) -> Result<()> {
        self.gpu.check_stream(stream)?;
        if data.is_empty() || data.len() % 16 != 0 || sink.is_empty() {
            return Err(Error::Shape(format!(
                "read_probe needs a non-empty buffer of 16-byte words and a sink; got {} bytes",
                data.len()
            )));
        }
        let func = self.module.load_function("asps_read_probe")?;
        let sms = self
            .gpu
            .context()
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let (ptr, _guard) = data.device_ptr(stream);
        let n_vec = (data.len() / 16) as i64;
        let cfg = LaunchConfig {
            grid_dim: (sms.max(1) as u32 * 8, 1, 1),
            block_dim: (512, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&func);
        launch.arg(&ptr).arg(&n_vec).arg(sink);
        // SAFETY: matches asps_read_probe (kernels/testing/bandwidth.cu): reads n_vec 16-byte words
        // inside `data` (cudarc allocations are 256-byte aligned) and may write sink[0].
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// Queues one launch of a kernel that does nothing, `blocks` blocks of `threads` threads
    /// (1 to 1024). Two of them captured in a graph and replayed time the latency of a call's
    /// two dependent launches before any work.
    pub fn empty(&self, stream: &Arc<CudaStream>, blocks: u32, threads: u32) -> Result<()> {
        self.gpu.check_stream(stream)?;
        if blocks == 0 || !(1..=1024).contains(&threads) {
            return Err(Error::Shape(format!(
                "an empty launch needs at least one block of 1 to 1024 threads; got {blocks} blocks of {threads}"
            )));
        }
        let func = self.module.load_function("asps_empty")?;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&func);
        // SAFETY: asps_empty (kernels/testing/launch_floor.cu) takes no argument and touches no
        // memory.
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }
}
