//! Counts every launch of one verify call per method at the time model's shapes, over the GPU
//! bench's workload, on the emulated device, and prints them as JSON (tests/common/model_counts.rs):
//!
//!     tests/emu/gpu cargo bench --bench model_counts > counts.json
//!
//! The structure bench counts the current kernels itself; this writes the counts of whatever
//! kernels the checkout holds, which is how the model's calibration counts of earlier kernels
//! (bench/results/model-calibration-counts.json) were taken. Elsewhere than on the emulated device it
//! prints SKIPPED.

#[path = "../tests/common/batch.rs"]
mod batch;
#[path = "../tests/common/gpu.rs"]
mod gpu;
#[path = "../tests/common/model_counts.rs"]
mod model_counts;
#[path = "../tests/common/structure.rs"]
mod structure;

fn main() {
    let Some(gpu) = gpu::gpu_or_skip("model counts") else {
        return;
    };
    if !gpu.emulated {
        eprintln!("SKIPPED model counts: they are taken on the emulated device (tests/emu/gpu)");
        return;
    }
    let trace = structure::start_trace("model-counts");
    let calls = model_counts::count_model_shapes(&gpu, &trace);
    print!("{}", model_counts::calls_json(&calls));
}
