// Online softmax statistics (max and rescaled sum, Milakov & Gimelshein 2018) with the flags
// that mark NaN and +inf, merged across a warp and a block.
#pragma once

#include "common.cuh"

namespace asps {

constexpr int FLAG_NAN = 1;
constexpr int FLAG_POS_INF = 2;

// max: the largest finite logit seen; sum: sum of exp((x - max) * inv_t) over the logits seen.
struct SoftmaxState {
  float max;
  float sum;
  int flags;
};

__device__ __forceinline__ SoftmaxState softmax_state_empty() {
  return SoftmaxState{-INFINITY, 0.f, 0};
}

__device__ __forceinline__ void softmax_state_push(SoftmaxState& s, float x, float inv_t) {
  if (isnan(x)) {
    s.flags |= FLAG_NAN;
  } else if (x == INFINITY) {
    s.flags |= FLAG_POS_INF;
  } else if (x == -INFINITY) {
    // A masked token: probability 0, contributes nothing.
  } else if (x > s.max) {
    s.sum = s.sum * expf((s.max - x) * inv_t) + 1.f;  // s.max = -inf gives 0 * 0 + 1
    s.max = x;
  } else {
    s.sum += expf((x - s.max) * inv_t);
  }
}

__device__ __forceinline__ SoftmaxState softmax_state_merge(SoftmaxState a, SoftmaxState b,
                                                           float inv_t) {
  SoftmaxState out;
  out.flags = a.flags | b.flags;
  out.max = fmaxf(a.max, b.max);
  if (out.max == -INFINITY) {
    out.sum = 0.f;  // both empty; (-inf) - (-inf) would be NaN
  } else {
    out.sum = a.sum * expf((a.max - out.max) * inv_t) + b.sum * expf((b.max - out.max) * inv_t);
  }
  return out;
}

__device__ __forceinline__ SoftmaxState softmax_state_warp_reduce(SoftmaxState s, float inv_t) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    SoftmaxState o;
    o.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
    o.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
    o.flags = __shfl_xor_sync(0xffffffffu, s.flags, offset);
    s = softmax_state_merge(s, o, inv_t);
  }
  return s;
}

// Reduces over the block; every thread gets the result. blockDim.x must be a multiple of 32,
// at most 1024. `scratch` holds 32 states.
__device__ __forceinline__ SoftmaxState softmax_state_block_reduce(SoftmaxState s, float inv_t,
                                                                  SoftmaxState* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  s = softmax_state_warp_reduce(s, inv_t);
  if (lane == 0) scratch[warp] = s;
  __syncthreads();
  s = lane < warps ? scratch[lane] : softmax_state_empty();
  s = softmax_state_warp_reduce(s, inv_t);
  __syncthreads();  // scratch may be reused by the caller
  return s;
}

__device__ __forceinline__ int softmax_state_status(const SoftmaxState& s) {
  if (s.flags & FLAG_NAN) return ROW_NAN;
  if (s.flags & FLAG_POS_INF) return ROW_POS_INF;
  if (s.max == -INFINITY) return ROW_ALL_MASKED;
  return ROW_OK;
}

}  // namespace asps
