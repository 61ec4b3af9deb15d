//! GPU test support: the GPU (a real one, or the emulated device of tests/emu) with its name
//! printed, else a printed reason to skip; a batch's device copy and one call over it.
#![allow(dead_code)]

use std::io::Write;

use std::sync::Arc;

use asps::capi::{AspsSampling, AspsTruncation};
use asps::cuda::{
    BatchLogits, Gpu, SamplingInputs, TruncationInputs, VerifiedRequest, Verifier, VerifyInputs,
    VerifyOutputs,
};
use asps::reference::Truncation;
use asps::{Logit, Method};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, SyncOnDrop};

use super::batch::{Batch, RequestTruncation};

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

/// Device copies of a batch's arrays: the optional ones where the batch has them.
pub struct DeviceBatch<T> {
    pub target: CudaSlice<T>,
    pub draft: CudaSlice<T>,
    pub tokens: CudaSlice<i32>,
    pub lens: CudaSlice<i32>,
    pub seeds: CudaSlice<u64>,
    pub offsets: CudaSlice<u64>,
    pub sampling: DeviceSampling,
}

impl<T: Logit + DeviceRepr> DeviceBatch<T> {
    pub fn new(stream: &Arc<CudaStream>, h: &Batch<T>) -> Self {
        DeviceBatch {
            target: stream.clone_htod(&h.target).unwrap(),
            draft: stream.clone_htod(&h.draft).unwrap(),
            tokens: stream.clone_htod(&h.tokens).unwrap(),
            lens: stream.clone_htod(&h.lens).unwrap(),
            seeds: stream.clone_htod(&h.seeds).unwrap(),
            offsets: stream.clone_htod(&h.offsets).unwrap(),
            sampling: DeviceSampling::new(stream, h),
        }
    }
}

/// A batch's sampling arrays on the device (`AspsSampling`): each request's temperature, and
/// its draft temperature and truncations where the batch has them.
pub struct DeviceSampling {
    temperature: CudaSlice<f32>,
    draft_temperature: Option<CudaSlice<f32>>,
    /// The target's truncation arrays, then the draft's.
    truncation: Option<[TruncationArrays; 2]>,
}

/// One model's truncation on the device: top-k, top-p, min-p.
type TruncationArrays = (CudaSlice<i32>, CudaSlice<f32>, CudaSlice<f32>);

impl DeviceSampling {
    pub fn new<T>(stream: &Arc<CudaStream>, h: &Batch<T>) -> Self {
        let truncation = h.truncs.as_ref().map(|truncs| {
            let model = |pick: fn(&RequestTruncation) -> Truncation| {
                let t: Vec<Truncation> = truncs.iter().map(pick).collect();
                let k: Vec<i32> = t.iter().map(|t| t.top_k).collect();
                let p: Vec<f32> = t.iter().map(|t| t.top_p).collect();
                let m: Vec<f32> = t.iter().map(|t| t.min_p).collect();
                (
                    stream.clone_htod(&k).unwrap(),
                    stream.clone_htod(&p).unwrap(),
                    stream.clone_htod(&m).unwrap(),
                )
            };
            [model(|t| t.0), model(|t| t.1)]
        });
        DeviceSampling {
            temperature: stream.clone_htod(&h.temps).unwrap(),
            draft_temperature: h
                .draft_temps
                .as_ref()
                .map(|d| stream.clone_htod(d).unwrap()),
            truncation,
        }
    }

    /// The arrays as a safe call's sampling inputs.
    pub fn inputs(&self) -> SamplingInputs<'_> {
        let truncation = |m: usize| {
            self.truncation
                .as_ref()
                .map_or_else(TruncationInputs::default, |t| TruncationInputs {
                    top_k: Some(t[m].0.as_view()),
                    top_p: Some(t[m].1.as_view()),
                    min_p: Some(t[m].2.as_view()),
                })
        };
        SamplingInputs {
            temperature: self.temperature.as_view(),
            target: truncation(0),
            draft: truncation(1),
            draft_temperature: self.draft_temperature.as_ref().map(|d| d.as_view()),
        }
    }

    /// The arrays' device addresses as a raw call's sampling, with the guards that record the
    /// call's use of them on `stream` when dropped (drop them after the call).
    pub fn raw<'a>(&'a self, stream: &'a CudaStream) -> (AspsSampling, Vec<SyncOnDrop<'a>>) {
        let mut guards = Vec::new();
        let mut addr = |ptr: (u64, SyncOnDrop<'a>)| {
            guards.push(ptr.1);
            ptr.0
        };
        let temperature = addr(self.temperature.device_ptr(stream)) as *const f32;
        let draft_temperature =
            self.draft_temperature
                .as_ref()
                .map_or(0, |d| addr(d.device_ptr(stream))) as *const f32;
        let mut model = |m: usize| match &self.truncation {
            None => AspsTruncation::default(),
            Some(t) => AspsTruncation {
                top_k: addr(t[m].0.device_ptr(stream)) as *const i32,
                top_p: addr(t[m].1.device_ptr(stream)) as *const f32,
                min_p: addr(t[m].2.device_ptr(stream)) as *const f32,
            },
        };
        let (target, draft) = (model(0), model(1));
        let sampling = AspsSampling {
            temperature,
            target,
            draft,
            draft_temperature,
        };
        (sampling, guards)
    }
}

/// One call through the safe front over `d` (the device copy of `h`); its results.
pub fn run<T: Logit + DeviceRepr>(
    verifier: &mut Verifier,
    method: Method,
    h: &Batch<T>,
    d: &mut DeviceBatch<T>,
    out: &mut VerifyOutputs,
) -> Vec<VerifiedRequest> {
    let inputs = VerifyInputs {
        method,
        batch: h.b,
        max_draft: h.n,
        vocab: h.v,
        target: BatchLogits::packed(d.target.as_view(), h.n + 1, h.v),
        draft: BatchLogits::packed(d.draft.as_view(), h.n, h.v),
        draft_tokens: d.tokens.as_view(),
        draft_lens: d.lens.as_view(),
        seeds: d.seeds.as_view(),
        sampling: d.sampling.inputs(),
    };
    verifier.verify(&inputs, &mut d.offsets, out).unwrap();
    out.read(verifier.stream()).unwrap()
}
