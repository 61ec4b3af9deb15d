// Block-wide reductions of small structs: every state type provides shfl_xor() and a merge
// functor; block_reduce() does a warp-shuffle tree, then one warp over the per-warp results.
// The order of merges is fixed, so results are deterministic for a given block size.
#pragma once

#include "common.cuh"

namespace asps {

__device__ __forceinline__ float shfl_xor(float x, int offset) {
  return __shfl_xor_sync(0xffffffffu, x, offset);
}

// Declared before the templates below: a call with a built-in argument type finds only the
// overloads visible where the template is defined, so one declared later would leave u64 sums
// converted to float and shuffled as such.
__device__ __forceinline__ unsigned long long shfl_xor(unsigned long long x, int offset) {
  return __shfl_xor_sync(0xffffffffu, x, offset);
}

// The best candidate of an exponential race: the largest key, the lowest token on equal keys.
// token = -1 and key = -inf mean "no candidate".
struct RaceState {
  float key;
  int token;
};

__device__ __forceinline__ RaceState race_empty() { return RaceState{-INFINITY, -1}; }

__device__ __forceinline__ RaceState shfl_xor(RaceState s, int offset) {
  return RaceState{__shfl_xor_sync(0xffffffffu, s.key, offset),
                   __shfl_xor_sync(0xffffffffu, s.token, offset)};
}

struct RaceMerge {
  __device__ __forceinline__ RaceState operator()(RaceState a, RaceState b) const {
    if (b.token < 0) return a;
    if (a.token < 0) return b;
    if (b.key > a.key || (b.key == a.key && b.token < a.token)) return b;
    return a;
  }
};

struct SumMerge {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};

// Reduces `s` over the warp by an XOR butterfly; every lane gets the same result when `merge` is
// commutative bit for bit (every merge here is: SoftmaxMerge rounds its products and sum
// explicitly, so that nvcc cannot contract them into an FMA, which would not commute), so the
// order of the parts is fixed by their lanes and the result does not depend on timing. Every
// lane of the warp must call it.
template <typename S, typename Merge>
__device__ __forceinline__ S warp_reduce(S s, Merge merge) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) s = merge(s, shfl_xor(s, offset));
  return s;
}

// Reduces `s` over the block; every thread gets the result. blockDim.x must be a multiple of 32
// (at most 1024); `scratch` holds 32 states and may be reused once this returns.
template <typename S, typename Merge>
__device__ __forceinline__ S block_reduce(S s, Merge merge, S identity, S* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) s = merge(s, shfl_xor(s, offset));
  if (lane == 0) scratch[warp] = s;
  __syncthreads();
  s = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : identity;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) s = merge(s, shfl_xor(s, offset));
  __syncthreads();
  return s;
}

}  // namespace asps
