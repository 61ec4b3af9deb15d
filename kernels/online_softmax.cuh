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

// The flags of the values at `x` (NaN, +inf): the exact check that row_softmax_state runs again
// on the tiles of a thread whose fast pass met something other than finite logits.
__device__ __forceinline__ int special_flags(const float (&x)[TILE]) {
  int flags = 0;
#pragma unroll
  for (int i = 0; i < TILE; ++i) {
    if (isnan(x[i])) flags |= FLAG_NAN;
    if (x[i] == INFINITY) flags |= FLAG_POS_INF;
  }
  return flags;
}

// This thread's share of a row of `len` logits (tiles threadIdx.x, + blockDim.x, ...), whose
// element 0 is token `base`, at 1/T = inv_t: max first, then exponentials, per tile. A tile
// whose max passes the running max rescales the sum once and records itself (later tiles, of
// higher indices, take over only with a strictly larger value); then each element costs one
// max, one subtraction, one multiply, one ex2 and one add, with no branch on its value. The
// state's `arg` is the first index of the first tile holding the max, not yet the max's own
// index: merged over the block, it names the lowest tile holding the row's max, in which
// lowest_index_of_max then finds the lowest index (one tile read by one thread, not a compare
// per element). Special values need no test per element: a NaN or +inf makes the sum NaN (NaN -
// m, or inf - inf; the tile max's fmaxf drops a NaN on purpose, the sum keeps it), except in a
// tile met while the thread had seen no finite logit (its exponentials are skipped: x - (-inf)
// is NaN for every x), which marks the thread unsure; a thread whose sum is NaN, whose max is
// +inf, or which is unsure runs over its tiles again to set the exact flags (rows with bad
// values, or shares that start with masked tokens alone, as padding can).
// `on_tile(t, tm, x)` is called with each tile, its index and largest value (a truncating row's
// TopTiles or counts per bucket, kernels/truncate.cuh).
template <typename T, typename OnTile>
__device__ __forceinline__ SoftmaxState row_softmax_state(const T* row, int len, int base,
                                                          float inv_t, OnTile&& on_tile) {
  const float c = exp2_factor(inv_t);
  float m = -INFINITY, sum = 0.f;
  int arg = -1;
  bool unsure = false;
  for_each_tile(row, len, [&](int t, const float (&x)[TILE]) {
    float tm = x[0];
#pragma unroll
    for (int i = 1; i < TILE; ++i) tm = fmaxf(tm, x[i]);
    on_tile(t, tm, x);
    if (tm > m) {
      sum *= fast_exp2((m - tm) * c);  // m = -inf: sum is 0, and 2^-inf = 0
      m = tm;
      arg = base + t * TILE;
    }
    if (m > -INFINITY) {
#pragma unroll
      for (int i = 0; i < TILE; ++i) sum += fast_exp2((x[i] - m) * c);
    } else {
      unsure = true;  // -inf and NaN only, so far: a NaN here reaches no sum
    }
  });
  int flags = 0;
  if (unsure || !(sum == sum) || m == INFINITY) {
    for_each_tile(row, len, [&](int, const float (&x)[TILE]) { flags |= special_flags(x); });
  }
  if (m == -INFINITY) return SoftmaxState{-INFINITY, 0.f, flags, -1};
  return SoftmaxState{m, sum, flags, arg};
}

template <typename T>
__device__ __forceinline__ SoftmaxState row_softmax_state(const T* row, int len, int base,
                                                          float inv_t) {
  return row_softmax_state(row, len, base, inv_t, [](int, float, const float (&)[TILE]) {});
}

// The lowest index of `max` in the tile of a row (element 0 being token `base`) that starts at
// token `tile_first` (row_softmax_state's merged arg; -1 stays -1). One thread.
template <typename T>
__device__ __forceinline__ int lowest_index_of_max(const T* row, int len, int base,
                                                   int tile_first, float max) {
  if (tile_first < 0) return -1;
  float x[TILE];
  load_tile_scalar(row, len, (tile_first - base) / TILE, x);
  int first = tile_first + TILE - 1;
#pragma unroll
  for (int i = TILE - 1; i >= 0; --i) first = x[i] == max ? tile_first + i : first;
  return first;
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
