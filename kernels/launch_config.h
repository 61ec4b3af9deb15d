// Threads per block of the kernels: the one place these numbers are written. The kernels use
// them in __launch_bounds__; build.rs reads every `constexpr int NAME = VALUE;` line below into
// $OUT_DIR/launch_config.rs, which the Rust launchers include (src/cuda/launch_config.rs), so
// the launches and the bounds cannot disagree. Keep to that one-line form: build.rs fails the
// build on a definition it cannot read, a missing constant, or a value that is not a multiple
// of 32 in 32..=1024 (the block reductions assume whole warps).

#ifndef ASPS_LAUNCH_CONFIG_H
#define ASPS_LAUNCH_CONFIG_H

namespace asps {

constexpr int VERIFY_THREADS = 512;         // asps_verify_rows_*, asps_verify_residual_*
constexpr int SOFTMAX_STATS_THREADS = 512;  // asps_softmax_stats_*
constexpr int SOFTMAX_THREADS = 512;        // asps_softmax_*
constexpr int RESIDUAL_THREADS = 512;       // asps_normalized_residual

}  // namespace asps

#endif  // ASPS_LAUNCH_CONFIG_H
