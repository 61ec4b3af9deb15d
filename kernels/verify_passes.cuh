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
  return static_cast<const T*>(p.call.target_logits) +
         static_cast<long long>(b) * p.call.target_batch_stride +
         static_cast<long long>(r) * p.call.target_row_stride;
}

template <typename T>
__device__ __forceinline__ const T* draft_row(const VerifyParams& p, int b, int r) {
  return static_cast<const T*>(p.call.draft_logits) +
         static_cast<long long>(b) * p.call.draft_batch_stride +
         static_cast<long long>(r) * p.call.draft_row_stride;
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
// rows passed their checks and each 1/T is a normal float). Tokens outside a row's kept set
// (truncation) have probability 0 there; a greedy drafter's q is 0 at every v != x_r, so its
// draft row is not read.
template <typename T>
__device__ RowResult row_pass(const VerifyParams& p, int b, int r, int n_b,
                              const RequestSampling& rs, const MergedRows& m, const Plan& plan,
                              int first, int len, PassScratch& scratch) {
  const float inv_t = rs.inv_t;
  const uint64_t seed = ld(p.call.seeds + b), offset = ld(p.call.offsets + b);
  const T* trow = target_row<T>(p, b, r) + first;
  const float t_max = m.t_max[r];
  RaceState race = race_empty();
  float mass = 0.f;
  const KeptSet t_kept = merged_kept(m, true, r, rs);
  if (r == n_b) {
    TokenNoise noise(seed, offset, PURPOSE_BONUS, 0);
    for_each_in_row(trow, len, [&](int i, float x) {
      const int v = first + i;
      if (is_kept(t_kept, x)) race_offer(race, (x - t_max) * inv_t + noise.gumbel(v), v);
    });
  } else {
    const float t_ln = m.t_log_norm[r];
    const float scale = plan.rule == METHOD_ASPS ? plan.scale[r] : 1.f;
    const int x_r = draft_token(p, b, r);
    TokenNoise noise(seed, offset, PURPOSE_RESIDUAL, r);
    const auto offer = [&](int v, float res) {
      if (res > 0.f && v != x_r) {
        mass += res;
        race_offer(race, logf(res) + noise.gumbel(v), v);
      }
    };
    const auto scaled_p = [&](float xt) {
      return is_kept(t_kept, xt) ? scale * expf((xt - t_max) * inv_t - t_ln) : 0.f;
    };
    if (rs.draft_greedy) {
      for_each_in_row(trow, len, [&](int i, float xt) { offer(first + i, scaled_p(xt)); });
    } else {
      const T* drow = draft_row<T>(p, b, r) + first;
      const float d_max = m.d_max[r], d_ln = m.d_log_norm[r], inv_td = rs.inv_td;
      const KeptSet d_kept = merged_kept(m, false, r, rs);
      for_each_in_rows(trow, drow, len, [&](int i, float xt, float xd) {
        const float q = is_kept(d_kept, xd) ? expf((xd - d_max) * inv_td - d_ln) : 0.f;
        offer(first + i, scaled_p(xt) - q);
      });
    }
  }
  race = block_reduce(race, RaceMerge{}, race_empty(), scratch.race);
  mass = block_reduce(mass, SumMerge{}, 0.f, scratch.sum);
  return RowResult{race, mass};
}

}  // namespace asps
