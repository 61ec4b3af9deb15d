// The decide launch's passes over one part of a row (the whole row in the lazy form): the bonus
// race on the target's last row, and a residual row's race and mass. Every thread of the block
// calls them and gets the block's result.
#pragma once

#include "common.cuh"
#include "philox.cuh"
#include "reduce.cuh"
#include "verify.cuh"

namespace asps {

template <typename T>
__device__ __forceinline__ const T* target_row(const VerifyParams& p, int b, int r) {
  return static_cast<const T*>(p.target) + static_cast<long long>(b) * p.target_batch_stride +
         static_cast<long long>(r) * p.target_row_stride;
}

template <typename T>
__device__ __forceinline__ const T* draft_row(const VerifyParams& p, int b, int r) {
  return static_cast<const T*>(p.draft) + static_cast<long long>(b) * p.draft_batch_stride +
         static_cast<long long>(r) * p.draft_row_stride;
}

// What a pass over (part of) a row found: the race winner (token -1 if no candidate) and, for
// a residual row, the residual mass over the candidates (0 for the bonus row).
struct RowResult {
  RaceState race;
  float mass;
};

// Block-reduction scratch of the passes.
struct PassScratch {
  RaceState race[32];
  float sum[32];
};

// Row r of request b over [first, first + len): for r = n_b the bonus race, keys
// (x - max) / T + G(Bonus, 0, v); for r < n_b the residual row res(v) = s p(v) - q(v) over
// v != x_r where positive, keys ln res(v) + G(Residual, r, v), and its mass R = sum res(v),
// with s = plan.scale[r] for ASpS and 1 for SpS. p, q and s are in [0, 1] and never NaN (the
// rows passed their checks and 1/T is a normal float). Tokens outside a row's kept set
// (truncation) have probability 0 there.
template <typename T>
__device__ RowResult row_pass(const VerifyParams& p, int b, int r, int n_b, float t,
                              const MergedRows& m, const Plan& plan, int first, int len,
                              PassScratch& scratch) {
  const float inv_t = 1.f / t;
  const unsigned long long seed = ld(p.seeds + b), offset = ld(p.offsets + b);
  const T* trow = target_row<T>(p, b, r) + first;
  const float t_max = m.t_max[r];
  RaceState race = race_empty();
  float mass = 0.f;
  const KeptSet t_kept = merged_kept(m, true, r, inv_t);
  if (r == n_b) {
    TokenNoise noise(seed, offset, PURPOSE_BONUS, 0);
    for_each_in_row(trow, len, [&](int i, float x) {
      const int v = first + i;
      if (is_kept(t_kept, x)) race_offer(race, (x - t_max) * inv_t + noise.gumbel(v), v);
    });
  } else {
    const T* drow = draft_row<T>(p, b, r) + first;
    const float t_ln = m.t_log_norm[r], d_max = m.d_max[r], d_ln = m.d_log_norm[r];
    const float scale = plan.rule == METHOD_ASPS ? plan.scale[r] : 1.f;
    const int x_r = ld(p.draft_tokens + static_cast<long long>(b) * p.max_draft + r);
    const KeptSet d_kept = merged_kept(m, false, r, inv_t);
    TokenNoise noise(seed, offset, PURPOSE_RESIDUAL, r);
    for_each_in_rows(trow, drow, len, [&](int i, float xt, float xd) {
      const int v = first + i;
      const float sp = is_kept(t_kept, xt) ? scale * expf((xt - t_max) * inv_t - t_ln) : 0.f;
      const float res = sp - (is_kept(d_kept, xd) ? expf((xd - d_max) * inv_t - d_ln) : 0.f);
      if (res > 0.f && v != x_r) {
        mass += res;
        race_offer(race, logf(res) + noise.gumbel(v), v);
      }
    });
  }
  race = block_reduce(race, RaceMerge{}, race_empty(), scratch.race);
  mass = block_reduce(mass, SumMerge{}, 0.f, scratch.sum);
  return RowResult{race, mass};
}

}  // namespace asps
