//! Support for the GPU benches: the device's read bandwidth (the memory floor of a call that
//! must read its inputs once), and facts about the device for result files.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg, sys};

use super::module::Gpu;
use crate::error::{Error, Result};

impl Gpu {
    /// Queues one read of every byte of `data` (a read-only reduction with 16-byte streaming
    /// loads; `data.len()` must be a multiple of 16 bytes) and writes nothing useful to `sink`.
    /// Timing it with CUDA events over a buffer larger than L2 gives the read bandwidth.
    pub fn read_probe(
        &self,
        stream: &Arc<CudaStream>,
        data: &CudaSlice<u8>,
        sink: &mut CudaSlice<u32>,
    ) -> Result<()> {
        self.check_stream(stream)?;
        if data.is_empty() || data.len() % 16 != 0 || sink.is_empty() {
            return Err(Error::Shape(format!(
                "read_probe needs a non-empty buffer of 16-byte words and a sink; got {} bytes",
                data.len()
            )));
        }
        let func = self.function("asps_read_probe")?;
        let sms = self
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
        // SAFETY: matches asps_read_probe (kernels/bandwidth.cu): reads n_vec 16-byte words
        // inside `data` (cudarc allocations are 256-byte aligned) and may write sink[0].
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// The device's name and the driver's CUDA version (e.g. 13000 for 13.0).
    pub fn describe(&self) -> Result<(String, i32)> {
        let name = self.context().name()?;
        let mut version = 0;
        // SAFETY: cuDriverGetVersion writes one int; the driver is loaded (a context exists).
        let rc = unsafe { sys::cuDriverGetVersion(&mut version) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(Error::Cuda(format!("cuDriverGetVersion: {rc:?}")));
        }
        Ok((name, version))
    }
}
