// The normalised residual of rows of probabilities: out(v) = max(0, s p(v) - q(v)) / R with
// R = sum_v max(0, s p(v) - q(v)), one block per row. R is written to out_mass; a row with
// R = 0 (q >= s p everywhere: no rejection possible) is written as zeros.

#include "common.cuh"
#include "launch_config.h"
#include "reduce.cuh"

namespace asps {

__device__ void normalized_residual(const float* __restrict__ p, const float* __restrict__ q,
                                    long long row_stride, int rows, int vocab, float scale,
                                    float* __restrict__ out, long long out_row_stride,
                                    float* __restrict__ out_mass) {
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  if (row >= rows) return;
  const float* pr = p + static_cast<long long>(row) * row_stride;
  const float* qr = q + static_cast<long long>(row) * row_stride;
  float* dst = out + static_cast<long long>(row) * out_row_stride;
  float mass = 0.f;
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) mass += fmaxf(scale * ld(pr + v) - ld(qr + v), 0.f);
  mass = block_reduce(mass, SumMerge{}, 0.f, scratch);
  if (threadIdx.x == 0) st(out_mass + row, mass);
  // Divide rather than multiply by 1 / mass, which overflows for a subnormal mass.
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
    st(dst + v, mass > 0.f ? fmaxf(scale * ld(pr + v) - ld(qr + v), 0.f) / mass : 0.f);
  }
}

}  // namespace asps

extern "C" __global__ void __launch_bounds__(asps::RESIDUAL_THREADS)
    asps_normalized_residual(const float* p, const float* q, long long row_stride, int rows,
                             int vocab, float scale, float* out, long long out_row_stride,
                             float* out_mass) {
  asps::normalized_residual(p, q, row_stride, rows, vocab, scale, out, out_row_stride, out_mass);
}
