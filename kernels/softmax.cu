// Logits to probabilities or log-probabilities under a temperature, one block per row: the
// fused statistics pass (online softmax), then one write pass. Bad rows are written as NaN and
// flagged in out_status.

#include "common.cuh"
#include "launch_config.h"
#include "online_softmax.cuh"

namespace asps {

template <typename T>
__device__ void softmax_rows(const T* __restrict__ logits, long long row_stride, int rows,
                             int vocab, float inv_temperature, int log_space,
                             float* __restrict__ out, long long out_row_stride,
                             int* __restrict__ out_status) {
  __shared__ SoftmaxState scratch[32];
  const int row = blockIdx.x;
  if (row >= rows) return;
  const T* in = logits + static_cast<long long>(row) * row_stride;
  float* dst = out + static_cast<long long>(row) * out_row_stride;
  SoftmaxState s = row_softmax_state(in, vocab, 0, inv_temperature);
  s = softmax_state_block_reduce(s, inv_temperature, scratch);
  const int status = softmax_state_status(s);
  if (threadIdx.x == 0) st(out_status + row, status);
  const float log_norm = logf(s.sum);
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
    float y = NAN;
    if (status == ROW_OK) {
      const float lp = (load_float(in, v) - s.max) * inv_temperature - log_norm;
      y = log_space ? lp : expf(lp);
    }
    st(dst + v, y);
  }
}

}  // namespace asps

#define ASPS_SOFTMAX(SUFFIX, T)                                                                \
  extern "C" __global__ void __launch_bounds__(asps::SOFTMAX_THREADS) asps_softmax_##SUFFIX(     \
      const T* logits, long long row_stride, int rows, int vocab, float inv_temperature,        \
      int log_space, float* out, long long out_row_stride, int* out_status) {                   \
    asps::softmax_rows<T>(logits, row_stride, rows, vocab, inv_temperature, log_space, out,     \
                          out_row_stride, out_status);                                          \
  }

ASPS_SOFTMAX(f32, float)
ASPS_SOFTMAX(f16, __half)
ASPS_SOFTMAX(bf16, __nv_bfloat16)
