// The normalised residual of rows of probabilities: out(v) = max(0, s p(v) - q(v)) / R with
// R = sum_v max(0, s p(v) - q(v)), one block per row. R is written to out_mass; a row with
// R = 0 (q >= s p everywhere: no rejection possible) is written as zeros. The inputs are not
// checked on the device: a NaN in a row makes its R and every output NaN (never dropped).

#include "common.cuh"
#include "launch_config.h"
#include "reduce.cuh"

namespace asps {

// max(0, x), keeping a NaN a NaN (fmaxf would drop it).
__device__ __forceinline__ float positive_part(float x) { return x < 0.f ? 0.f : x; }

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
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
    mass += positive_part(scale * ld(pr + v) - ld(qr + v));
  }
  mass = block_reduce(mass, SumMerge{}, 0.f, scratch);
  if (threadIdx.x == 0) st(out_mass + row, mass);
  // Divide rather than multiply by 1 / mass, which overflows for a subnormal mass. A NaN mass
  // gives NaN outputs.
  for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
    st(dst + v, mass == 0.f ? 0.f : positive_part(scale * ld(pr + v) - ld(qr + v)) / mass);
  }
}

}  // namespace asps

extern "C" __global__ void __launch_bounds__(asps::RESIDUAL_THREADS)
    asps_normalized_residual(const float* p, const float* q, long long row_stride, int rows,
                             int vocab, float scale, float* out, long long out_row_stride,
                             float* out_mass) {
  asps::normalized_residual(p, q, row_stride, rows, vocab, scale, out, out_row_stride, out_mass);
}
