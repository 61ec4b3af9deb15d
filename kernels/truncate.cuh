// Top-k, top-p and min-p over one row without sorting it (docs/design.md, "Truncation";
// src/reference/truncate.rs is the oracle). Every rule keeps an upper set of the row's values,
// so after the three the kept set is {v : x_v >= theta and (x_v - max) / T >= ln min_p}, with
// theta the larger of top-k's and top-p's thresholds, each a value of the row (ties kept):
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
// One block runs a row's whole selection: at most 10 passes over the row (4 + 1 + 4, and one
// for the kept set's normaliser), only for rows of requests that truncate.
#pragma once

#include "common.cuh"
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

// Buckets of one radix pass and the selection's state, in shared memory.
struct SelectScratch {
  unsigned count[256];
  unsigned long long mass[256];
  unsigned prefix;            // the key bits chosen so far
  unsigned long long above;   // what the values above the chosen bucket hold: count or mass
  int done;                   // top-k: the row holds at most k finite values
  float sum[32];              // block_reduce scratch
  unsigned long long sum64[32];
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

// The k-th largest finite value of row[0, len) (ties counted), or -inf when the row holds at
// most k finite values. Every thread of the block calls it; all get the result.
template <typename T>
__device__ float select_top_k(const T* row, int len, int k, SelectScratch& sh) {
  const unsigned long long want = static_cast<unsigned long long>(k);
  unsigned prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.count[i] = 0;
    __syncthreads();
    for_each_in_row(row, len, [&](int, float x) {
      if (x == -INFINITY) return;
      const unsigned key = float_key(x);
      if ((key & mask) == prefix) atomicAdd(&sh.count[(key >> shift) & 255u], 1u);
    });
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long taken = shift == 24 ? 0 : sh.above;
      if (shift == 24) {
        unsigned long long total = 0;
        for (int d = 0; d < 256; ++d) total += sh.count[d];
        sh.done = total <= want;
      }
      // The bucket holding the k-th largest: the first from the top at which the values at or
      // above it number k (the values above the prefix, `taken`, plus those of the buckets).
      int d = 255;
      while (d > 0 && taken + sh.count[d] < want) taken += sh.count[d--];
      sh.prefix = prefix | (static_cast<unsigned>(d) << shift);
      sh.above = taken;
    }
    __syncthreads();
    if (sh.done) return -INFINITY;
    prefix = sh.prefix;
    mask |= 255u << shift;
    __syncthreads();  // sh.prefix and sh.above are rewritten by the next pass
  }
  return key_float(prefix);
}

// The largest value t of the row's top-k set (values >= theta_k) such that the set's values
// >= t hold at least top_p of its mass (ties at t kept). Every thread calls it.
template <typename T>
__device__ float select_top_p(const T* row, int len, float theta_k, float max, float inv_t,
                              float top_p, SelectScratch& sh) {
  const float scale = fixed_scale(len);
  unsigned long long total = 0;
  for_each_in_row(row, len, [&](int, float x) {
    if (x > -INFINITY && x >= theta_k) total += fixed_mass(x, max, inv_t, scale);
  });
  total = block_reduce(total, SumMerge64{}, 0ull, sh.sum64);
  // The mass to reach, from the top: p of the total, rounded up to the fixed-point unit (for an
  // integer a and a real g, a < g exactly when a < ceil(g)), so that the walk below compares
  // integers: no fp64 in a loop of the kernel.
  const double goal_real = ceil(static_cast<double>(top_p) * static_cast<double>(total));
  const unsigned long long goal = goal_real >= 18446744073709551616.0
                                      ? ~0ull
                                      : static_cast<unsigned long long>(goal_real);
  unsigned prefix = 0, mask = 0;
  unsigned long long above = 0;  // mass of the values above the current prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.mass[i] = 0;
    __syncthreads();
    for_each_in_row(row, len, [&](int, float x) {
      if (!(x > -INFINITY && x >= theta_k)) return;
      const unsigned key = float_key(x);
      if ((key & mask) == prefix) {
        atomicAdd(&sh.mass[(key >> shift) & 255u], fixed_mass(x, max, inv_t, scale));
      }
    });
    __syncthreads();
    if (threadIdx.x == 0) {
      int d = 255;
      unsigned long long acc = above;
      // The first bucket from the top at which the mass at or above it reaches the goal
      // (bucket 0 at the latest when rounding leaves the total short of it).
      while (d > 0 && acc + sh.mass[d] < goal) acc += sh.mass[d--];
      sh.prefix = prefix | (static_cast<unsigned>(d) << shift);
      sh.above = acc;
    }
    __syncthreads();
    prefix = sh.prefix;
    above = sh.above;
    mask |= 255u << shift;
    __syncthreads();
  }
  return key_float(prefix);
}

// The kept set of a row of request parameters `tr` whose maximum is `max` (every thread calls;
// all get it), and ln of its normaliser, sum over kept v of exp((x_v - max) / T).
template <typename T>
__device__ KeptSet truncate_row(const T* row, int len, const Truncation& tr, float max, float inv_t,
                                SelectScratch& sh, float& log_norm) {
  float theta = -INFINITY;
  if (tr.top_k > 0) theta = select_top_k(row, len, tr.top_k, sh);
  if (tr.top_p < 1.f) theta = fmaxf(theta, select_top_p(row, len, theta, max, inv_t, tr.top_p, sh));
  const KeptSet kept{true, theta, tr.min_p > 0.f ? logf(tr.min_p) : -INFINITY, max, inv_t};
  float sum = 0.f;
  for_each_in_row(row, len, [&](int, float x) {
    if (is_kept(kept, x)) sum += expf((x - max) * inv_t);
  });
  log_norm = logf(block_reduce(sum, SumMerge{}, 0.f, sh.sum));
  return kept;
}

}  // namespace asps
