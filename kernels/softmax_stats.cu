// Fused softmax statistics of a batch of rows: for each row its largest logit and
// log_norm = ln sum_v exp((x_v - max) / T), with a status (NaN, +inf, all masked).
// One block per row; 16-byte loads; the row offset is 64-bit.

#include "common.cuh"
#include "launch_config.h"
#include "online_softmax.cuh"

namespace asps {

template <typename T>
__device__ void softmax_stats(const T* __restrict__ logits, long long row_stride, int rows,
                              int vocab, float inv_temperature, float* __restrict__ out_max,
                              float* __restrict__ out_log_norm, int* __restrict__ out_status) {
  __shared__ SoftmaxState scratch[32];
  const int row = blockIdx.x;
  if (row >= rows) return;
  const T* row_ptr = logits + static_cast<long long>(row) * row_stride;
  SoftmaxState s = row_softmax_state(row_ptr, vocab, 0, inv_temperature);
  s = softmax_state_block_reduce(s, inv_temperature, scratch);
  if (threadIdx.x == 0) {
    const int status = softmax_state_status(s);
    st(out_status + row, status);
    st(out_max + row, status == ROW_OK ? s.max : NAN);
    st(out_log_norm + row, status == ROW_OK ? logf(s.sum) : NAN);
  }
}

}  // namespace asps

#define ASPS_SOFTMAX_STATS(SUFFIX, T)                                                         \
  extern "C" __global__ void __launch_bounds__(asps::SOFTMAX_STATS_THREADS)                   \
      asps_softmax_stats_##SUFFIX(const T* logits, long long row_stride, int rows, int vocab, \
                                  float inv_temperature, float* out_max, float* out_log_norm, \
                                  int* out_status) {                                          \
    asps::softmax_stats<T>(logits, row_stride, rows, vocab, inv_temperature, out_max,         \
                           out_log_norm, out_status);                                         \
  }

ASPS_SOFTMAX_STATS(f32, float)
ASPS_SOFTMAX_STATS(f16, __half)
ASPS_SOFTMAX_STATS(bf16, __nv_bfloat16)
