//! GPU test support: a Gpu when the machine has one, else a printed reason to skip.

use std::io::Write;

use asps::cuda::Gpu;

/// The GPU, or `None` after printing why the calling test skips. The message goes straight to
/// the terminal (not through the test harness's capture) so that a CPU-only run shows it.
pub fn gpu_or_skip(test: &str) -> Option<Gpu> {
    match Gpu::new(0) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no GPU to run on ({e})");
            None
        }
    }
}
