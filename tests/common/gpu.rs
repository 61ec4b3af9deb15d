//! GPU test support: the GPU (a real one, or the emulated device of tests/emu) with its name
//! printed, else a printed reason to skip.
#![allow(dead_code)]

use std::io::Write;

use std::sync::Arc;

use asps::cuda::{Gpu, RawTruncationArgs, TruncationInputs};
use asps::reference::Truncation;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, SyncOnDrop};

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

/// Per-request truncations on the device: `[B]` arrays of each parameter, for the target's
/// rows and for the draft's.
pub struct DeviceTruncation {
    top_k: [CudaSlice<i32>; 2],
    top_p: [CudaSlice<f32>; 2],
    min_p: [CudaSlice<f32>; 2],
}

impl DeviceTruncation {
    /// Uploads request i's (target's, draft's) truncation from `truncs[i]`.
    pub fn new(stream: &Arc<CudaStream>, truncs: &[(Truncation, Truncation)]) -> Self {
        let models: [Vec<Truncation>; 2] = [
            truncs.iter().map(|t| t.0).collect(),
            truncs.iter().map(|t| t.1).collect(),
        ];
        let up_i32 = |v: Vec<i32>| stream.clone_htod(&v).unwrap();
        let up_f32 = |v: Vec<f32>| stream.clone_htod(&v).unwrap();
        DeviceTruncation {
            top_k: models
                .each_ref()
                .map(|m| up_i32(m.iter().map(|t| t.top_k).collect())),
            top_p: models
                .each_ref()
                .map(|m| up_f32(m.iter().map(|t| t.top_p).collect())),
            min_p: models
                .each_ref()
                .map(|m| up_f32(m.iter().map(|t| t.min_p).collect())),
        }
    }

    /// The arrays as a call's truncation inputs.
    pub fn inputs(&self) -> TruncationInputs<'_> {
        TruncationInputs {
            target_top_k: Some(self.top_k[0].as_view()),
            target_top_p: Some(self.top_p[0].as_view()),
            target_min_p: Some(self.min_p[0].as_view()),
            draft_top_k: Some(self.top_k[1].as_view()),
            draft_top_p: Some(self.top_p[1].as_view()),
            draft_min_p: Some(self.min_p[1].as_view()),
        }
    }

    /// The arrays' device addresses as a raw call's truncation arguments, with the guards that
    /// record the call's use of them on `stream` when dropped (drop them after the call).
    pub fn raw<'a>(&'a self, stream: &'a CudaStream) -> (RawTruncationArgs, Vec<SyncOnDrop<'a>>) {
        let (target_top_k, g0) = self.top_k[0].device_ptr(stream);
        let (target_top_p, g1) = self.top_p[0].device_ptr(stream);
        let (target_min_p, g2) = self.min_p[0].device_ptr(stream);
        let (draft_top_k, g3) = self.top_k[1].device_ptr(stream);
        let (draft_top_p, g4) = self.top_p[1].device_ptr(stream);
        let (draft_min_p, g5) = self.min_p[1].device_ptr(stream);
        let args = RawTruncationArgs {
            target_top_k,
            target_top_p,
            target_min_p,
            draft_top_k,
            draft_top_p,
            draft_min_p,
        };
        (args, vec![g0, g1, g2, g3, g4, g5])
    }
}
