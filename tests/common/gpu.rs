//! GPU test support: the GPU (a real one, or the emulated device of tests/emu) with its name
//! printed, else a printed reason to skip.
#![allow(dead_code)]

use std::io::Write;

use asps::cuda::Gpu;

/// How the emulated device's name begins (tests/emu/device/device.h).
const EMULATED_DEVICE: &str = "asps emulated device";

/// The device a GPU test runs on.
pub struct TestGpu {
    pub gpu: Gpu,
    /// Whether it is the emulated device: a CPU running the kernels' source, so tests choose
    /// sizes it can afford in minutes (the real-GPU sizes stay for real GPUs).
    pub emulated: bool,
}

impl std::ops::Deref for TestGpu {
    type Target = Gpu;
    fn deref(&self) -> &Gpu {
        &self.gpu
    }
}

/// The GPU, or `None` after printing why the calling test skips. Either way the line goes
/// straight to the terminal (not through the test harness's capture), so that a run shows the
/// device every GPU test ran on.
pub fn gpu_or_skip(test: &str) -> Option<TestGpu> {
    let mut stderr = std::io::stderr();
    match Gpu::new(0) {
        Ok(gpu) => {
            let name = gpu
                .context()
                .name()
                .unwrap_or_else(|e| format!("<unnamed: {e}>"));
            let _ = writeln!(stderr, "{test}: on {name}");
            Some(TestGpu {
                emulated: name.starts_with(EMULATED_DEVICE),
                gpu,
            })
        }
        // A build for the emulated device that finds none was not run through tests/emu/gpu:
        // skipping would pass without testing anything.
        Err(e) if option_env!("ASPS_EMULATED_DEVICE") == Some("1") => {
            panic!("{test}: built for the emulated device, but it is not loaded ({e})")
        }
        Err(e) => {
            let _ = writeln!(stderr, "SKIPPED {test}: no GPU to run on ({e})");
            None
        }
    }
}
