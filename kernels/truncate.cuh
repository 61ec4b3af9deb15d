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
// it. Top-p without top-k (truncate_row_from_counts) starts from the row pass's counts per
// bucket of the top 12 key bits: they bound each bucket's mass, which gives the range of buckets
// that can hold the threshold, and one pass sums those buckets' masses exactly and gathers the
// values around the likely one. Min-p alone, or top-k candidates that overflow their buffer, run
// over the whole row (truncate_row: up to 10 passes over it).
#pragma once

#include "common.cuh"
#include "launch_config.h"
#include "online_softmax.cuh"
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

// Candidates a row's block may hold for the top-k set or top-p's boundary (16 KB of shared
// memory).
constexpr int TRUNCATE_CANDIDATES = 4096;

// Top-p without top-k: the row pass counts the row's finite values per bucket of the top 12 bits
// of their keys (HIST_BUCKETS, sign, exponent and 3 mantissa bits: an eighth of a binade), and
// the pass after it sums masses exactly in RANGE_BUCKETS consecutive buckets around the one the
// counts point to.
constexpr int HIST_SHIFT = 20;
constexpr int HIST_BUCKETS = 1 << (32 - HIST_SHIFT);
constexpr int RANGE_BUCKETS = 256;

// Sums over buckets of the count histogram, from the top: their counts, and bounds on and an
// estimate of their masses (in units of exp((x - max) / T), from each bucket's lowest value,
// its middle and its highest).
struct BucketSums {
  float low, mid, high;
  unsigned count;
};

// Exact fixed-point masses of a pass over a row: all its values, those above the range, and
// those of them that min-p keeps.
struct MassSums {
  unsigned long long total, above, kept_above;
};

// Top-p alone: the buckets the counts say may hold the threshold, [lo, hi] (at most
// RANGE_BUCKETS), the estimate est in it, the buckets gathered as candidates [gather_lo,
// gather_hi] (empty when gather_lo > gather_hi), and, once masses are exact, the threshold's
// bucket d, the masses above it (all, and those min-p keeps), the goal, and whether d was in the
// range.
struct TopPRange {
  int lo, hi, est, gather_lo, gather_hi;
  int bottom;                        // the lowest bucket holding a value
  unsigned est_above, gather_above;  // counts of the values above est and above gather_hi
  int d, found;
  unsigned long long above, kept_above, goal;
};

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
  union {
    TopTiles tops[VERIFY_THREADS];  // top-k: each thread's TopTiles, out of registers
    unsigned hist[HIST_BUCKETS];    // top-p alone: the row pass's counts per bucket
  };
  unsigned long long range_mass[RANGE_BUCKETS];  // top-p alone: masses of the range's buckets
  unsigned long long range_kept[RANGE_BUCKETS];  // and of their values min-p keeps
  BucketSums scan[32];                           // block_exclusive_scan scratch
  MassSums mass_sums[32];                        // block_reduce scratch
  TopPRange range;
};

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

// The fixed-point mass that top-p must reach from the top: p of the total, rounded up to the
// unit (for an integer a and a real g, a < g exactly when a < ceil(g)), so that the choices
// compare integers: no fp64 in a loop of the kernel.
__device__ __forceinline__ unsigned long long top_p_goal(unsigned long long total, float top_p) {
  const double goal = ceil(static_cast<double>(top_p) * static_cast<double>(total));
  return goal >= 18446744073709551616.0 ? ~0ull : static_cast<unsigned long long>(goal);
}

// The radix select of top-p over the set's values >= theta_k: the largest value t at which
// `above` plus the mass of those values >= t reaches `goal` (ties at t kept). `above`: the mass
// of values outside the set that are larger than all of it (0 for a whole row). Every thread
// calls it.
template <typename Each>
__device__ __forceinline__ float radix_top_p(Each&& each, float theta_k, float max, float inv_t,
                                             float scale, unsigned long long goal,
                                             unsigned long long above, SelectScratch& sh) {
  unsigned prefix = 0, mask = 0;
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
  return radix_top_p(each, theta_k, max, inv_t, scale, top_p_goal(total, top_p), 0ull, sh);
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

// Whether a truncation is top-p without top-k (min-p may be on too): its row pass counts the
// row's values per bucket, and truncate_row_from_counts finds its kept set.
__host__ __device__ __forceinline__ bool counts_buckets(const Truncation& tr) {
  return tr.top_k == 0 && tr.top_p < 1.f;
}

// A value's bucket of the count histogram. -0 goes with +0: they compare equal, so a threshold
// of +0 keeps -0 values, which must then be in the threshold's bucket, not below it.
__device__ __forceinline__ int hist_bucket(float x) {
  return static_cast<int>(float_key(x == 0.f ? 0.f : x) >> HIST_SHIFT);
}

// The row pass's hook for top-p alone: a tile's finite values counted into their buckets.
__device__ __forceinline__ void count_tile(unsigned* hist, const float (&x)[TILE]) {
#pragma unroll
  for (int i = 0; i < TILE; ++i) {
    if (x[i] > -INFINITY) atomicAdd(&hist[hist_bucket(x[i])], 1u);
  }
}

__device__ __forceinline__ BucketSums operator+(const BucketSums& a, const BucketSums& b) {
  return BucketSums{a.low + b.low, a.mid + b.mid, a.high + b.high, a.count + b.count};
}

__device__ __forceinline__ BucketSums shfl_up(const BucketSums& s, int offset) {
  return BucketSums{__shfl_up_sync(0xffffffffu, s.low, offset),
                    __shfl_up_sync(0xffffffffu, s.mid, offset),
                    __shfl_up_sync(0xffffffffu, s.high, offset),
                    __shfl_up_sync(0xffffffffu, s.count, offset)};
}

// The sums of the threads before this one (thread 0: zero), in a fixed order of additions, and
// in `total` those of the whole block. Every thread calls it; `scratch` holds 32 and may be
// reused once this returns.
__device__ __forceinline__ BucketSums block_exclusive_scan(const BucketSums& s,
                                                           BucketSums* scratch,
                                                           BucketSums& total) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const BucketSums zero{0.f, 0.f, 0.f, 0u};
  BucketSums incl = s;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const BucketSums other = shfl_up(incl, offset);
    if (lane >= offset) incl = other + incl;
  }
  BucketSums excl = shfl_up(incl, 1);
  if (lane == 0) excl = zero;
  if (lane == 31) scratch[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    BucketSums w = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : zero;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      const BucketSums other = shfl_up(w, offset);
      if (lane >= offset) w = other + w;
    }
    scratch[lane] = w;  // each lane rewrites only the cell it read
  }
  __syncthreads();
  const BucketSums before = warp > 0 ? scratch[warp - 1] + excl : excl;
  total = scratch[(blockDim.x >> 5) - 1];
  __syncthreads();
  return before;
}

__device__ __forceinline__ MassSums shfl_xor(const MassSums& s, int offset) {
  return MassSums{shfl_xor(s.total, offset), shfl_xor(s.above, offset),
                  shfl_xor(s.kept_above, offset)};
}

struct MassMerge {
  __device__ __forceinline__ MassSums operator()(const MassSums& a, const MassSums& b) const {
    return MassSums{a.total + b.total, a.above + b.above, a.kept_above + b.kept_above};
  }
};

// Bucket b's count, and bounds on and an estimate of its mass. Its values lie between the
// floats of its lowest and highest keys, and at or below the row's maximum.
__device__ __forceinline__ BucketSums bucket_sums(const unsigned* hist, int b, float max,
                                                  float inv_t) {
  const unsigned c = hist[b];
  if (c == 0u) return BucketSums{0.f, 0.f, 0.f, 0u};
  const unsigned key = static_cast<unsigned>(b) << HIST_SHIFT;
  const float lo = key_float(key);
  const float hi = fminf(key_float(key | ((1u << HIST_SHIFT) - 1u)), max);
  const float mid = 0.5f * lo + 0.5f * hi;
  const float n = static_cast<float>(c);
  return BucketSums{n * expf((lo - max) * inv_t), n * expf((mid - max) * inv_t),
                    n * expf((hi - max) * inv_t), c};
}

// Calls f(b, above) for this thread's share of the buckets, from its highest down (thread 0
// takes the highest buckets), with above the count of the row's values in higher buckets
// (`before`: that count at this thread's first bucket).
template <typename F>
__device__ __forceinline__ void for_each_own_bucket(const unsigned* hist, unsigned before, F&& f) {
  const int per = (HIST_BUCKETS + static_cast<int>(blockDim.x) - 1) / static_cast<int>(blockDim.x);
  const int top = HIST_BUCKETS - 1 - static_cast<int>(threadIdx.x) * per;
  unsigned above = before;
  for (int i = 0; i < per && top - i >= 0; ++i) {
    const int b = top - i;
    f(b, above);
    above += hist[b];
  }
}

// Picks the buckets whose masses the pass after the row pass sums exactly (sh.range lo..hi)
// and those it gathers as candidates (gather_lo..gather_hi), from the row pass's counts and
// sum (`sum`: of exp((x - max) / T) over the row). The threshold's bucket is the highest b whose
// mass and that of the buckets above it reach top_p of the row's: bounds on the masses give a
// range that holds it (with a margin for the f32 sums), an estimate a likely bucket, around
// which the candidates are gathered up to the buffer (half of it above). Every thread calls it.
__device__ __forceinline__ void choose_top_p_range(const Truncation& tr, float row_max, float sum,
                                                   float inv_t, SelectScratch& sh) {
  const int per = (HIST_BUCKETS + static_cast<int>(blockDim.x) - 1) / static_cast<int>(blockDim.x);
  const int top = HIST_BUCKETS - 1 - static_cast<int>(threadIdx.x) * per;
  BucketSums mine{0.f, 0.f, 0.f, 0u};
  for (int i = 0; i < per && top - i >= 0; ++i) mine = mine + bucket_sums(sh.hist, top - i, row_max, inv_t);
  if (threadIdx.x == 0) {
    sh.range.lo = sh.range.hi = sh.range.est = -1;
    sh.range.bottom = HIST_BUCKETS - 1;
  }
  BucketSums total;
  const BucketSums before = block_exclusive_scan(mine, sh.scan, total);  // orders the above
  // The bounds' goals from the row pass's sum, with a margin; the estimate's from its own total
  // (a bucket's middle misjudges its mass by up to e^(width / 2T), but alike for its
  // neighbours).
  const float goal_low = tr.top_p * sum * (1.f - 1e-3f), goal_high = tr.top_p * sum * (1.f + 1e-3f);
  const float goal = tr.top_p * total.mid;
  // The first bucket from the top at which each cumulative sum reaches its goal: the highest
  // over the block (the lowest bucket holding a value when none does: the threshold is a value).
  {
    BucketSums cum = before;
    int lo = -1, hi = -1, est = -1, bottom = HIST_BUCKETS - 1;
    for (int i = 0; i < per && top - i >= 0; ++i) {
      const int b = top - i;
      cum = cum + bucket_sums(sh.hist, b, row_max, inv_t);
      if (hi < 0 && cum.high >= goal_low) hi = b;
      if (est < 0 && cum.mid >= goal) est = b;
      if (lo < 0 && cum.low >= goal_high) lo = b;
      if (sh.hist[b] != 0u) bottom = b;
    }
    atomicMin(&sh.range.bottom, bottom);
    atomicMax(&sh.range.hi, hi);
    atomicMax(&sh.range.est, est);
    atomicMax(&sh.range.lo, lo);
  }
  __syncthreads();
  // The range, at most RANGE_BUCKETS wide around the estimate.
  const int bottom = sh.range.bottom;
  const int hi_bound = max(sh.range.hi, bottom);
  const int lo_bound = min(max(sh.range.lo, bottom), hi_bound);
  const int est = min(max(sh.range.est, lo_bound), hi_bound);
  const int lo = max(lo_bound, min(est + RANGE_BUCKETS / 2, hi_bound) - (RANGE_BUCKETS - 1));
  const int hi = min(hi_bound, lo + RANGE_BUCKETS - 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    sh.range.lo = lo;
    sh.range.hi = hi;
    sh.range.est = est;
    sh.range.gather_hi = est;
    sh.range.gather_lo = est + 1;
  }
  for_each_own_bucket(sh.hist, before.count, [&](int b, unsigned above) {
    if (b == est) sh.range.est_above = above;
  });
  __syncthreads();
  // Gathered: the buckets from est up while they hold at most half of the buffer...
  const unsigned through_est = sh.range.est_above + sh.hist[est];
  constexpr unsigned HALF = TRUNCATE_CANDIDATES / 2;
  for_each_own_bucket(sh.hist, before.count, [&](int b, unsigned above) {
    if (b > est && b <= hi && above + HALF >= through_est) atomicMax(&sh.range.gather_hi, b);
  });
  __syncthreads();
  const int gather_hi = sh.range.gather_hi;
  for_each_own_bucket(sh.hist, before.count, [&](int b, unsigned above) {
    if (b == gather_hi) sh.range.gather_above = above;
  });
  __syncthreads();
  // ... then down from est while the whole holds at most the buffer.
  const unsigned gather_above = sh.range.gather_above;
  for_each_own_bucket(sh.hist, before.count, [&](int b, unsigned above) {
    if (b >= lo && b <= est && above + sh.hist[b] - gather_above <= TRUNCATE_CANDIDATES) {
      atomicMin(&sh.range.gather_lo, b);
    }
  });
  __syncthreads();
}

// The top-p threshold and kept set from the values of the threshold's bucket (`each`), given
// the exact masses above that bucket (sh.range) and the goal: the radix select over the bucket,
// and the normaliser, the mass above the bucket that min-p keeps plus the bucket's kept values.
// Every thread calls it.
template <typename Each>
__device__ __forceinline__ KeptSet top_p_in_bucket(Each&& each, const Truncation& tr, float max,
                                                   float inv_t, float scale, SelectScratch& sh,
                                                   float& log_norm) {
  const unsigned long long goal = sh.range.goal, above = sh.range.above;
  const unsigned long long kept_above = sh.range.kept_above;
  const float theta = radix_top_p(each, -INFINITY, max, inv_t, scale, goal, above, sh);
  const KeptSet kept{true, theta, tr.min_p > 0.f ? logf(tr.min_p) : -INFINITY, max, inv_t};
  unsigned long long sum = 0;
  each([&](float x) {
    if (is_kept(kept, x)) sum += fixed_mass(x, max, inv_t, scale);
  });
  sum = block_reduce(sum, SumMerge64{}, 0ull, sh.sum64) + kept_above;
  log_norm = logf(static_cast<float>(sum) / scale);
  return kept;
}

// The kept set of a row of `len` values with top-p on and top-k off, from its row pass's counts
// (sh.hist) and sum (of exp((x - max) / T)), by one more pass over the row in most rows: it sums
// every value's fixed-point mass (the total, whose top_p is the goal), the masses of the values
// above the range that choose_top_p_range picks (all, and those min-p keeps), and each bucket's
// in the range, and gathers the candidates. Those exact sums give the threshold's bucket, whose
// values the candidates hold unless the estimate missed it: they are then gathered by a second
// pass (or, a bucket that overflows the buffer, selected over the row); a threshold outside
// the range (the f32 bounds were wrong) falls back to truncate_row. The same threshold and
// normaliser as truncate_row: the same exact sums, over the same values. Every thread calls it.
template <typename T>
__device__ __forceinline__ KeptSet truncate_row_from_counts(const T* row, int len,
                                                            const Truncation& tr, float max,
                                                            float sum, float inv_t,
                                                            SelectScratch& sh, float& log_norm) {
  static_assert(RANGE_BUCKETS == 256, "choose_bucket picks among 256 buckets");
  const float scale = fixed_scale(len);
  choose_top_p_range(tr, max, sum, inv_t, sh);
  const int lo = sh.range.lo, hi = sh.range.hi;
  const int gather_lo = sh.range.gather_lo, gather_hi = sh.range.gather_hi;
  for (int i = threadIdx.x; i < RANGE_BUCKETS; i += blockDim.x) sh.range_mass[i] = sh.range_kept[i] = 0ull;
  if (threadIdx.x == 0) sh.count = 0u;
  __syncthreads();
  const KeptSet by_min_p{true, -INFINITY, tr.min_p > 0.f ? logf(tr.min_p) : -INFINITY, max, inv_t};
  MassSums sums{0ull, 0ull, 0ull};
  for_each_in_row(row, len, [&](int, float x) {
    if (!(x > -INFINITY)) return;
    const unsigned long long m = fixed_mass(x, max, inv_t, scale);
    const int b = hist_bucket(x);
    const bool kept = is_kept(by_min_p, x);
    sums.total += m;
    if (b > hi) {
      sums.above += m;
      if (kept) sums.kept_above += m;
    } else if (b >= lo) {
      atomicAdd(&sh.range_mass[b - lo], m);
      if (kept) atomicAdd(&sh.range_kept[b - lo], m);
      if (b >= gather_lo && b <= gather_hi) {
        const unsigned i = atomicAdd(&sh.count, 1u);
        if (i < TRUNCATE_CANDIDATES) sh.candidate[i] = x;
      }
    }
  });
  sums = block_reduce(sums, MassMerge{}, MassSums{0ull, 0ull, 0ull}, sh.mass_sums);
  if (threadIdx.x < 32) {
    const unsigned long long goal = top_p_goal(sums.total, tr.top_p);
    unsigned long long above = sums.above;
    const int j = choose_bucket(sh.range_mass, goal, above);
    unsigned long long kept = 0;
    for (int i = static_cast<int>(threadIdx.x); i < RANGE_BUCKETS; i += 32) {
      if (i > j) kept += sh.range_kept[i];
    }
    kept = warp_reduce(kept, SumMerge64{});
    if (threadIdx.x == 0) {
      sh.range.d = lo + j;
      sh.range.found = sums.above < goal && above + sh.range_mass[j] >= goal;
      sh.range.goal = goal;
      sh.range.above = above;
      sh.range.kept_above = sums.kept_above + kept;
    }
  }
  __syncthreads();
  if (!sh.range.found) return truncate_row(row, len, tr, max, inv_t, sh, log_norm);
  const int d = sh.range.d;
  auto in_d = [d](float x) {
    return x > -INFINITY && hist_bucket(x) == d;
  };
  if (d < gather_lo || d > gather_hi) {
    if (sh.hist[d] > TRUNCATE_CANDIDATES) {
      auto each = [&](auto&& f) {
        for_each_in_row(row, len, [&](int, float x) {
          if (in_d(x)) f(x);
        });
      };
      return top_p_in_bucket(each, tr, max, inv_t, scale, sh, log_norm);
    }
    if (threadIdx.x == 0) sh.count = 0u;
    __syncthreads();
    for_each_in_row(row, len, [&](int, float x) {
      if (in_d(x)) {
        const unsigned i = atomicAdd(&sh.count, 1u);
        if (i < TRUNCATE_CANDIDATES) sh.candidate[i] = x;
      }
    });
    __syncthreads();
  }
  const int count = static_cast<int>(min(sh.count, static_cast<unsigned>(TRUNCATE_CANDIDATES)));
  auto each = [&](auto&& f) {
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
      if (in_d(sh.candidate[i])) f(sh.candidate[i]);
    }
  };
  return top_p_in_bucket(each, tr, max, inv_t, scale, sh, log_norm);
}

// The row pass of a row its block truncates by `tr`: this thread's softmax statistics (to be
// merged over the block, which also completes sh.hist), keeping what the truncation needs
// from the pass: with top-k, this thread's TopTiles; with top-p alone, the block's counts per
// bucket in sh.hist. Every thread calls it.
template <typename T>
__device__ __forceinline__ SoftmaxState truncating_row_pass(const T* row, int len, int base,
                                                            float inv_t, const Truncation& tr,
                                                            TopTiles& top, SelectScratch& sh) {
  if (tr.top_k > 0) {
    return row_softmax_state(row, len, base, inv_t, [&](int t, float tm, const float (&)[TILE]) {
      top_tiles_offer(top, tm, t);
    });
  }
  if (counts_buckets(tr)) {
    for (int i = threadIdx.x; i < HIST_BUCKETS; i += blockDim.x) sh.hist[i] = 0u;
    __syncthreads();
    return row_softmax_state(row, len, base, inv_t,
                             [&](int, float, const float (&x)[TILE]) { count_tile(sh.hist, x); });
  }
  return row_softmax_state(row, len, base, inv_t);
}

// The kept set of a row its block has just passed over with truncating_row_pass (max and sum:
// the row's largest finite value and sum of exp((x - max) / T), merged over the block; top:
// this thread's TopTiles from that pass). Every thread calls it.
template <typename T>
__device__ __forceinline__ KeptSet truncate_row_after_pass(const T* row, int len,
                                                           const Truncation& tr, float max,
                                                           float sum, float inv_t,
                                                           const TopTiles& top,
                                                           SelectScratch& sh, float& log_norm) {
  if (tr.top_k > 0) return truncate_row_from_tiles(row, len, tr, max, inv_t, top, sh, log_norm);
  if (counts_buckets(tr)) return truncate_row_from_counts(row, len, tr, max, sum, inv_t, sh, log_norm);
  return truncate_row(row, len, tr, max, inv_t, sh, log_norm);
}

}  // namespace asps
