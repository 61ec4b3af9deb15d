// Online softmax statistics (max and rescaled sum, Milakov & Gimelshein 2018) with the lowest
// index of the max (greedy's argmax) and flags for NaN and +inf.
#pragma once

#include "common.cuh"
#include "reduce.cuh"

namespace asps {

constexpr int FLAG_NAN = 1;
constexpr int FLAG_POS_INF = 2;

// max: the largest finite logit seen; sum: sum of exp((x - max) * inv_t) over the logits seen;
// arg: the lowest index holding max (-1 while nothing finite was seen).
struct SoftmaxState {
  float max;
  float sum;
  int flags;
  int arg;
};

__device__ __forceinline__ SoftmaxState softmax_state_empty() {
  return SoftmaxState{-INFINITY, 0.f, 0, -1};
}

// Threads push their indices in increasing order, so a strict > keeps the lowest index.
__device__ __forceinline__ void softmax_state_push(SoftmaxState& s, float x, int index,
                                                   float inv_t) {
  if (isnan(x)) {
    s.flags |= FLAG_NAN;
  } else if (x == INFINITY) {
    s.flags |= FLAG_POS_INF;
  } else if (x == -INFINITY) {
    // A masked token: probability 0, contributes nothing.
  } else if (x > s.max) {
    s.sum = s.sum * expf((s.max - x) * inv_t) + 1.f;  // s.max = -inf gives 0 * 0 + 1
    s.max = x;
    s.arg = index;
  } else {
    s.sum += expf((x - s.max) * inv_t);
  }
}

__device__ __forceinline__ SoftmaxState shfl_xor(SoftmaxState s, int offset) {
  return SoftmaxState{__shfl_xor_sync(0xffffffffu, s.max, offset),
                      __shfl_xor_sync(0xffffffffu, s.sum, offset),
                      __shfl_xor_sync(0xffffffffu, s.flags, offset),
                      __shfl_xor_sync(0xffffffffu, s.arg, offset)};
}

struct SoftmaxMerge {
  float inv_t;
  __device__ __forceinline__ SoftmaxState operator()(SoftmaxState a, SoftmaxState b) const {
    SoftmaxState out;
    out.flags = a.flags | b.flags;
    out.max = fmaxf(a.max, b.max);
    if (out.max == -INFINITY) {
      out.sum = 0.f;  // both empty; (-inf) - (-inf) would be NaN
      out.arg = -1;
      return out;
    }
    // Rounded products and sum, not a fused multiply-add (nvcc contracts by default): the merge
    // must be commutative bit for bit, so that every lane of a butterfly holds the same state.
    out.sum = __fadd_rn(__fmul_rn(a.sum, expf((a.max - out.max) * inv_t)),
                        __fmul_rn(b.sum, expf((b.max - out.max) * inv_t)));
    if (a.max == b.max) {
      out.arg = min(a.arg, b.arg);
    } else {
      out.arg = a.max > b.max ? a.arg : b.arg;
    }
    return out;
  }
};

__device__ __forceinline__ SoftmaxState softmax_state_block_reduce(SoftmaxState s, float inv_t,
                                                                  SoftmaxState* scratch) {
  return block_reduce(s, SoftmaxMerge{inv_t}, softmax_state_empty(), scratch);
}

__device__ __forceinline__ int softmax_state_status(const SoftmaxState& s) {
  if (s.flags & FLAG_NAN) return ROW_NAN;
  if (s.flags & FLAG_POS_INF) return ROW_POS_INF;
  if (s.max == -INFINITY) return ROW_ALL_MASKED;
  return ROW_OK;
}

}  // namespace asps
