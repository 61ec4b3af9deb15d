// Top-k, top-p and min-p over one row without sorting it (docs/design.md, "Truncation";
// src/reference/truncate.rs is the oracle), by the row launch's block of that row, after its
// row pass. Every rule keeps an upper set of the row's values, so after the three the kept set
// is {v : x_v >= theta and (x_v - max) / T >= ln min_p}, with theta the larger of top-k's and
// top-p's thresholds, each a value of the row (ties kept):
//
// * top-k: the k-th largest finite value, by a radix select over the order-preserving integer
//   image of the float values (8 bits per pass from the top, counts per bucket: 4 passes);
// * top-p: the largest value t such that the mass of the top-k set at or above t reaches
//   top_p of the top-k set's mass: one pass for that mass, then a radix select by bucket
//   masses (4 passes). Masses are summed in fixed point (u64, 2^(62 - bits(V)) per unit of
//   exp((x - max) / T) <= 1), so that shared-memory atomics add them in any order to the same
//   sum: the result does not depend on timing;
// * min-p: a comparison with the row's maximum, per token.
//
// The selections run over a set of values given as `each(f)`, which calls f(x) for every value
// of the set (each thread its share). With top-k on, the set is a few candidates instead of the
// row (truncate_row_from_tiles): the row pass keeps each thread's four largest tile maxima;
// the k-th largest of those maxima bounds the row's k-th largest from below (they are the
// maxima of distinct tiles), so the values at or above that bound, read again from the few
// tiles that can hold them, include the whole top-k set, and top-p and min-p keep subsets of
// it. Without top-k, or when the candidates overflow their buffer, the selections run over the
// whole row (truncate_row: up to 10 passes over it).
#pragma once

#include "common.cuh"
#include "launch_config.h"
#include "reduce.cuh"
#include "sampling.cuh"

namespace asps {

// What a pass needs to tell a kept token: the threshold, ln min_p (-inf when off), and the
// row's maximum and 1/T. `on` false keeps every unmasked token.
struct KeptSet {
  bool on;
  float theta;
  float log_min_p;
  float max;
  float inv_t;
};

__device__ __forceinline__ KeptSet kept_all() { return KeptSet{false, -INFINITY, -INFINITY, 0.f, 1.f}; }

__device__ __forceinline__ bool is_kept(const KeptSet& k, float x) {
  return x > -INFINITY && (!k.on || (x >= k.theta && (x - k.max) * k.inv_t >= k.log_min_p));
}

// The order-preserving image of a float that is not NaN: larger floats, larger keys.
__device__ __forceinline__ unsigned float_key(float x) {
  const unsigned bits = __float_as_uint(x);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

__device__ __forceinline__ float key_float(unsigned key) {
  return __uint_as_float((key & 0x80000000u) ? key & 0x7FFFFFFFu : ~key);
}

// A thread's four largest tile maxima and their tiles (largest first; -inf and -1 while it has
// seen fewer), kept by the row pass of a truncating row.
struct TopTiles {
  float max[4];
  int tile[4];
};

// Candidates a row's block may hold for the top-k set (16 KB of shared memory).
constexpr int TRUNCATE_CANDIDATES = 4096;

// The truncation's shared memory: the buckets of one radix pass, the selection's state and
// the candidates.
struct SelectScratch {
  unsigned long long bucket[256];  // counts or fixed-point masses
  unsigned prefix;                 // the key bits chosen so far
  unsigned long long above;        // what the values above the chosen bucket hold
  int done;                        // top-k: the set holds fewer than k finite values
  unsigned count;                  // candidates offered (more than the buffer holds: overflow)
  float sum[32];                   // block_reduce scratch
  unsigned long long sum64[32];
  float candidate[TRUNCATE_CANDIDATES];
  TopTiles tops[VERIFY_THREADS];   // each thread's TopTiles, out of registers after the row pass
};

__device__ __forceinline__ unsigned long long shfl_xor(unsigned long long x, int offset) {
  return __shfl_xor_sync(0xffffffffu, x, offset);
}

struct SumMerge64 {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long a,
                                                           unsigned long long b) const {
    return a + b;
  }
};

// exp((x - max) / T) in fixed point with `scale` units per 1 (rounded to nearest).
__device__ __forceinline__ unsigned long long fixed_mass(float x, float max, float inv_t,
                                                         float scale) {
  return static_cast<unsigned long long>(expf((x - max) * inv_t) * scale + 0.5f);
}

// Units per 1 of fixed_mass for rows of `vocab` values: V of them sum below 2^62.
__device__ __forceinline__ float fixed_scale(int vocab) {
  const int bits = 32 - __clz(static_cast<unsigned>(vocab));
  return ldexpf(1.f, 62 - bits);
}

// The radix pass's choice, by warp 0 (all its lanes call): the bucket d, from 255 down, at
// which `above` plus the buckets from the top through d first reaches `want` (bucket 0 at the
// latest), and in `above` what the buckets strictly above d hold, added to it. Lane l sums
// buckets 255 - 8l down to 248 - 8l; a scan over the lanes finds the lane where the sum
// reaches `want`, which then walks its 8 buckets: no thread walks more than a warp's share.
__device__ __forceinline__ int choose_bucket(const unsigned long long* bucket,
                                             unsigned long long want,
                                             unsigned long long& above) {
  const int lane = threadIdx.x & 31;
  const int top = 255 - 8 * lane;
  unsigned long long mine = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) mine += bucket[top - i];
  // Inclusive prefix over lanes 0..lane (from the top of the buckets down).
  unsigned long long through = mine;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const unsigned long long other = __shfl_up_sync(0xffffffffu, through, offset);
    if (lane >= offset) through += other;
  }
  // The first lane whose sum reaches it (31 when none does).
  int chosen = above + through >= want ? lane : 31;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    chosen = min(chosen, __shfl_xor_sync(0xffffffffu, chosen, offset));
  }
  int d = top;
  unsigned long long acc = above + through - mine;  // the lanes above this one
  if (lane == chosen) {
    while (d > top - 7 && acc + bucket[d] < want) acc += bucket[d--];
  }
  above = __shfl_sync(0xffffffffu, acc, chosen);
  return __shfl_sync(0xffffffffu, d, chosen);
}

// The k-th largest finite value of the set `each` gives (ties counted), or -inf when the set
// holds fewer than k finite values. Every thread of the block calls it; all get the result.
template <typename Each>
__device__ __forceinline__ float select_top_k(Each&& each, int k, SelectScratch& sh) {
  const unsigned long long want = static_cast<unsigned long long>(k);
  unsigned prefix = 0, mask = 0;
  unsigned long long above = 0;  // values above the current prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.bucket[i] = 0;
    __syncthreads();
    each([&](float x) {
      if (x == -INFINITY) return;
      const unsigned key = float_key(x);
      if ((key & mask) == prefix) atomicAdd(&sh.bucket[(key >> shift) & 255u], 1ull);
    });
    __syncthreads();
    if (threadIdx.x < 32) {
      unsigned long long taken = above;
      if (shift == 24) {
        // The buckets hold every finite value: fewer than k of them keeps them all.
        unsigned long long total = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) total += sh.bucket[8 * threadIdx.x + i];
        total = warp_reduce(total, SumMerge64{});
        if (threadIdx.x == 0) sh.done = total < want;
      }
      const int d = choose_bucket(sh.bucket, want, taken);
      if (threadIdx.x == 0) {
        sh.prefix = prefix | (static_cast<unsigned>(d) << shift);
        sh.above = taken;
      }
    }
    __syncthreads();
    if (sh.done) return -INFINITY;
    prefix = sh.prefix;
    above = sh.above;
    mask |= 255u << shift;
    __syncthreads();  // sh.prefix and sh.above are rewritten by the next pass
  }
  return key_float(prefix);
}

// The largest value t of the set's values >= theta_k such that those >= t hold at least top_p
// of their mass (ties at t kept). `scale`: fixed_scale of the row. Every thread calls it.
template <typename Each>
__device__ __forceinline__ float select_top_p(Each&& each, float theta_k, float max,
                                              float inv_t, float top_p, float scale,
                                              SelectScratch& sh) {
  unsigned long long total = 0;
  each([&](float x) {
    if (x > -INFINITY && x >= theta_k) total += fixed_mass(x, max, inv_t, scale);
  });
  total = block_reduce(total, SumMerge64{}, 0ull, sh.sum64);
  // The mass to reach, from the top: p of the total, rounded up to the fixed-point unit (for an
  // integer a and a real g, a < g exactly when a < ceil(g)), so that the choice below compares
  // integers: no fp64 in a loop of the kernel.
  const double goal_real = ceil(static_cast<double>(top_p) * static_cast<double>(total));
  const unsigned long long goal = goal_real >= 18446744073709551616.0
                                      ? ~0ull
                                      : static_cast<unsigned long long>(goal_real);
  unsigned prefix = 0, mask = 0;
  unsigned long long above = 0;  // mass of the values above the current prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.bucket[i] = 0;
    __syncthreads();
    each([&](float x) {
      if (!(x > -INFINITY && x >= theta_k)) return;
      const unsigned key = float_key(x);
      if ((key & mask) == prefix) {
        atomicAdd(&sh.bucket[(key >> shift) & 255u], fixed_mass(x, max, inv_t, scale));
      }
    });
    __syncthreads();
    if (threadIdx.x < 32) {
      // The first bucket from the top at which the mass at or above it reaches the goal
      // (bucket 0 at the latest when rounding leaves the total short of it).
      unsigned long long acc = above;
      const int d = choose_bucket(sh.bucket, goal, acc);
      if (threadIdx.x == 0) {
        sh.prefix = prefix | (static_cast<unsigned>(d) << shift);
        sh.above = acc;
      }
    }
    __syncthreads();
    prefix = sh.prefix;
    above = sh.above;
    mask |= 255u << shift;
    __syncthreads();
  }
  return key_float(prefix);
}

// The kept set of a set of values holding the row's whole top-k set (`each`, or the row itself)
// and ln of its normaliser, sum over kept v of exp((x_v - max) / T), for a row of `len` values
// whose maximum is `max`. Every thread calls it; all get the result.
template <typename Each>
__device__ __forceinline__ KeptSet kept_set_of(Each&& each, int len, const Truncation& tr,
                                               float max, float inv_t, SelectScratch& sh,
                                               float& log_norm) {
  const float scale = fixed_scale(len);
  float theta = -INFINITY;
  if (tr.top_k > 0) theta = select_top_k(each, tr.top_k, sh);
  if (tr.top_p < 1.f) {
    theta = fmaxf(theta, select_top_p(each, theta, max, inv_t, tr.top_p, scale, sh));
  }
  const KeptSet kept{true, theta, tr.min_p > 0.f ? logf(tr.min_p) : -INFINITY, max, inv_t};
  // In fixed point, so that the sum does not depend on the order of the set.
  unsigned long long sum = 0;
  each([&](float x) {
    if (is_kept(kept, x)) sum += fixed_mass(x, max, inv_t, scale);
  });
  sum = block_reduce(sum, SumMerge64{}, 0ull, sh.sum64);
  // scale is a power of 2 and sum >= scale (the row's largest value is kept): one rounding.
  log_norm = logf(static_cast<float>(sum) / scale);
  return kept;
}

// The kept set of a row of `len` values (request parameters `tr`, maximum `max`) by passes over
// the whole row. Every thread calls it.
template <typename T>
__device__ __forceinline__ KeptSet truncate_row(const T* row, int len, const Truncation& tr,
                                                float max, float inv_t, SelectScratch& sh,
                                                float& log_norm) {
  auto each = [&](auto&& f) { for_each_in_row(row, len, [&](int, float x) { f(x); }); };
  return kept_set_of(each, len, tr, max, inv_t, sh, log_norm);
}

__device__ __forceinline__ TopTiles top_tiles_empty() {
  return TopTiles{{-INFINITY, -INFINITY, -INFINITY, -INFINITY}, {-1, -1, -1, -1}};
}

// Offers tile t, whose largest value is tm, to `top` (a tile equal to the fourth is not kept:
// truncate_row_from_tiles then reads all of the thread's tiles again).
__device__ __forceinline__ void top_tiles_offer(TopTiles& top, float tm, int t) {
  if (!(tm > top.max[3])) return;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (tm > top.max[j]) {
      const float m = top.max[j];
      const int i = top.tile[j];
      top.max[j] = tm;
      top.tile[j] = t;
      tm = m;
      t = i;
    }
  }
}

// The kept set of a row of `len` values with top-k on, from its row pass's TopTiles (this
// thread's tiles t = threadIdx.x, + blockDim.x, ..., as for_each_tile deals them): the
// candidates are the values at or above the k-th largest of the block's tile maxima, read
// again from the tiles that can hold them; falls back to truncate_row when they overflow the
// buffer. Every thread calls it.
template <typename T>
__device__ __forceinline__ KeptSet truncate_row_from_tiles(const T* row, int len,
                                                           const Truncation& tr, float max,
                                                           float inv_t, const TopTiles& top,
                                                           SelectScratch& sh, float& log_norm) {
  // Kept in shared memory from here, so that the selections do not hold them in registers.
  sh.tops[threadIdx.x] = top;
  const TopTiles& mine = sh.tops[threadIdx.x];
  auto maxima = [&](auto&& f) {
#pragma unroll
    for (int j = 0; j < 4; ++j) f(mine.max[j]);
  };
  const float bound = select_top_k(maxima, tr.top_k, sh);
  if (threadIdx.x == 0) sh.count = 0u;
  __syncthreads();
  auto offer = [&](float x) {
    if (x > -INFINITY && x >= bound) {
      const unsigned i = atomicAdd(&sh.count, 1u);
      if (i < TRUNCATE_CANDIDATES) sh.candidate[i] = x;
    }
  };
  if (mine.max[3] >= bound) {
    // This thread may have tiles at or above the bound that it did not keep: all of them again.
    for_each_tile(row, len, [&](int, const float (&x)[TILE]) {
#pragma unroll
      for (int i = 0; i < TILE; ++i) offer(x[i]);
    });
  } else {
#pragma unroll
    for (int j = 0; j < 3; ++j) {
      if (mine.max[j] >= bound) {
        float x[TILE];
        load_tile_scalar(row, len, mine.tile[j], x);
#pragma unroll
        for (int i = 0; i < TILE; ++i) offer(x[i]);
      }
    }
  }
  __syncthreads();
  const int count = static_cast<int>(min(sh.count, TRUNCATE_CANDIDATES + 1u));
  if (count > TRUNCATE_CANDIDATES) return truncate_row(row, len, tr, max, inv_t, sh, log_norm);
  auto each = [&](auto&& f) {
    for (int i = threadIdx.x; i < count; i += blockDim.x) f(sh.candidate[i]);
  };
  return kept_set_of(each, len, tr, max, inv_t, sh, log_norm);
}

// The kept set of a row its block has just passed over (max: the row's largest finite value;
// top: this thread's TopTiles from that pass, needed with top-k on). Every thread calls it.
template <typename T>
__device__ __forceinline__ KeptSet truncate_row_after_pass(const T* row, int len,
                                                           const Truncation& tr, float max,
                                                           float inv_t, const TopTiles& top,
                                                           SelectScratch& sh, float& log_norm) {
  return tr.top_k > 0 ? truncate_row_from_tiles(row, len, tr, max, inv_t, top, sh, log_norm)
                      : truncate_row(row, len, tr, max, inv_t, sh, log_norm);
}

}  // namespace asps
