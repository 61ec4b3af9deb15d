// Threads per block of the kernels, and the limits the verification launches are sized by: the
// one place these numbers are written. The kernels use them (__launch_bounds__, shared arrays);
// build.rs reads every `constexpr int NAME = VALUE;` line below into
// $OUT_DIR/launch_config.rs, which the Rust launchers include (src/cuda/launch_config.rs), so
// the launches and the kernels cannot disagree. Keep to that one-line form: build.rs fails the
// build on a definition it cannot read, a missing constant, a *_THREADS value that is not a
// multiple of 32 in 32..=1024 (the block reductions assume whole warps), or a value of 0.

#ifndef ASPS_LAUNCH_CONFIG_H
#define ASPS_LAUNCH_CONFIG_H

namespace asps {

constexpr int VERIFY_THREADS = 512;         // asps_verify_rows_*, asps_verify_decide_*
constexpr int SOFTMAX_STATS_THREADS = 512;  // asps_softmax_stats_*
constexpr int SOFTMAX_THREADS = 512;        // asps_softmax_*
constexpr int RESIDUAL_THREADS = 512;       // asps_normalized_residual
// A logits row is read in at most MAX_SPLIT parts, one block each (small batches: enough blocks
// for every SM); one warp merges a row's parts, so at most 32.
constexpr int MAX_SPLIT = 32;
// The longest draft the GPU verifier takes: the decide kernel merges a request's 2n + 1 rows
// into shared memory.
constexpr int MAX_DRAFT = 64;

}  // namespace asps

#endif  // ASPS_LAUNCH_CONFIG_H
