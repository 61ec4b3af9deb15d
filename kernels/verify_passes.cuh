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
  return logits_row<T>(p.call.target_logits, p.call.target_batch_stride,
                       p.call.target_row_stride, b, r);
}

template <typename T>
__device__ __forceinline__ const T* draft_row(const VerifyParams& p, int b, int r) {
  return logits_row<T>(p.call.draft_logits, p.call.draft_batch_stride, p.call.draft_row_stride,
                       b, r);
}

// What a pass over (part of) a row found: the race winner (token -1 if no candidate) and, for
// a residual row, the residual mass over the candidates (0 for the bonus row).
struct RowResult {
  RaceState race;
  float mass;
};

// Block-reduction scratch of the passes, and the token a race picked in its winning tile.
struct PassScratch {
  RaceState race[32];
  float sum[32];
  int picked;
};

// The noise stream of one race: (seed, offset, purpose, row).
struct RaceNoise {
  uint64_t seed, offset;
  uint32_t purpose, row;
};

// A race over a row's tiles as one thread sees them (src/rng/noise.rs, "Races"): the best tile
// so far (its key, and its global tile index in the `token` field until the block has merged
// and picked), and the sum of the weights seen.
struct TileRace {
  RaceState best;
  float mass;
};

// Offers tile j, whose weights are `w` (>= 0, not NaN), to `race`: its weight W adds to the
// mass; a tile of positive weight draws its race uniform (one Philox block) and competes with
// the key ln W - ln E. Tiles come in increasing order, so the strict > keeps the lowest tile on
// equal keys.
__device__ __forceinline__ void offer_tile(TileRace& race, const RaceNoise& noise, int j,
                                           const float (&w)[TILE]) {
  float big_w = 0.f;
#pragma unroll
  for (int i = 0; i < TILE; ++i) big_w += w[i];
  race.mass += big_w;
  if (!(big_w > 0.f)) return;
  const TileUniforms u = tile_uniforms(noise.seed, noise.offset, noise.purpose, noise.row,
                                       static_cast<uint32_t>(j));
  const float key = logf(big_w) + gumbel_from_unit(u.race);
  if (key > race.best.key) race.best = RaceState{key, j};
}

// The token of a tile whose weights are `w` (>= 0, in token order) picked by `goal` = u' W: the
// first whose cumulative weight exceeds it, summed in the order that gave W (so the last
// cumulative weight is W itself), or the last of positive weight when rounding leaves none.
__device__ __forceinline__ int pick_in_tile(const float (&w)[TILE], float goal) {
  float acc = 0.f;
  int pick = -1, last = 0;
#pragma unroll
  for (int i = 0; i < TILE; ++i) {
    acc += w[i];
    if (w[i] > 0.f) last = i;
    if (pick < 0 && acc > goal) pick = i;
  }
  return pick < 0 ? last : pick;
}

// How one model's probabilities are computed from its logits in a race:
// p(x) = 2^((x - max) c - off), c = log2(e) / T, off = the log-normaliser in bits (for the
// target of a residual row, less log2 of ASpS's scale s: s p in one exponential; 0 for the
// bonus, whose weights need no normaliser: a common factor moves every tile's key alike). The
// fused multiply-add is written out, so that every copy of a race loop (and the pick's second
// read of a tile) rounds it alike, whatever the compiler would contract.
struct RowExp {
  float max, c, off;
  __device__ __forceinline__ float operator()(float x) const {
    return fast_exp2(fmaf(x - max, c, -off));
  }
};

// What a race weighs: the bonus row's p, a residual row's max(0, s p - q), or, with a greedy
// drafter, max(0, s p) (q is 0 wherever v != x_r, so the draft row is not read); or a tree
// node's p without the tokens of its rejected deterministic children, or the law recursive
// rejection sampling holds at a node after rejecting children drawn from its draft row
// (kernels/tree.cu).
enum RaceKind : int {
  RACE_BONUS,
  RACE_RESIDUAL,
  RACE_RESIDUAL_GREEDY_DRAFT,
  RACE_EXCLUDING,
  RACE_RRS
};

// A race's row parameters: each model's probabilities, kept sets and the draft token x_r; for
// RACE_EXCLUDING, the excluded tokens, increasing (n_excluded of them).
struct RaceRows {
  RowExp pt, pd;
  KeptSet t_kept, d_kept;
  int x_r;
  const int* excluded;
  int n_excluded;
  // RACE_RRS: the rejections so far (k), and for each, m_k / m before it (m: the draft's mass
  // off the tokens drawn before, 1 with replacement; pd gives q / m_k, so that a confident
  // draft's remaining q stays in range) and 1/Z after it (Z: the residual's mass).
  int rrs_k;
  const float* rrs_m_ratio;
  const float* rrs_inv_z;
};

// RRS's law at a node after k rejections of children drawn from its draft row, at a token not
// drawn, from p and q_k = q / m_k: p_j = max(0, p_{j-1} - q / m_{j-1}) / Z_j, from p_0 = p.
__device__ __forceinline__ float rrs_law(const RaceRows& rr, float p, float q_k) {
  for (int j = 0; j < rr.rrs_k; ++j) {
    p = fmaxf(p - q_k * rr.rrs_m_ratio[j], 0.f) * rr.rrs_inv_z[j];
  }
  return p;
}

// Bit i set when token 16 j + i is excluded: a binary search for the tile's first token, then
// the few excluded tokens inside it (per tile, not per token).
__device__ __forceinline__ unsigned excluded_in_tile(const RaceRows& rr, int j) {
  const int first = j * TILE;
  int lo = 0, hi = rr.n_excluded;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (rr.excluded[mid] < first) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  unsigned mask = 0;
  for (int k = lo; k < rr.n_excluded && rr.excluded[k] < first + TILE; ++k) {
    mask |= 1u << (rr.excluded[k] - first);
  }
  return mask;
}

// A weight kept only where the model's kept set holds x (TRUNC: truncated rows; otherwise the
// kept set is every unmasked token, and a masked x already weighs 2^-inf = 0).
template <bool TRUNC>
__device__ __forceinline__ float kept_weight(const KeptSet& kept, float x, float w) {
  return (!TRUNC || is_kept(kept, x)) ? w : 0.f;
}

// The weights of global tile j from its target logits x and draft logits y (residual rows; y
// unused otherwise); a residual row's draft token weighs 0. fmaxf cannot drop a NaN here: p and
// q are exponentials of finite or -inf arguments.
template <RaceKind KIND, bool TRUNC>
__device__ __forceinline__ void tile_weights(const RaceRows& rr, int j, const float (&x)[TILE],
                                             const float (&y)[TILE], float (&w)[TILE]) {
  const int k = rr.x_r - j * TILE;
  unsigned mask = 0;
  if constexpr (KIND == RACE_EXCLUDING || KIND == RACE_RRS) mask = excluded_in_tile(rr, j);
#pragma unroll
  for (int i = 0; i < TILE; ++i) {
    const float p = kept_weight<TRUNC>(rr.t_kept, x[i], rr.pt(x[i]));
    if constexpr (KIND == RACE_BONUS) {
      w[i] = p;
    } else if constexpr (KIND == RACE_EXCLUDING) {
      w[i] = (mask >> i) & 1u ? 0.f : p;
    } else if constexpr (KIND == RACE_RRS) {
      const float q = kept_weight<TRUNC>(rr.d_kept, y[i], rr.pd(y[i]));
      w[i] = (mask >> i) & 1u ? 0.f : rrs_law(rr, p, q);
    } else if constexpr (KIND == RACE_RESIDUAL_GREEDY_DRAFT) {
      w[i] = i == k ? 0.f : p;
    } else {
      const float q = kept_weight<TRUNC>(rr.d_kept, y[i], rr.pd(y[i]));
      w[i] = i == k ? 0.f : fmaxf(p - q, 0.f);
    }
  }
}

// One race over a part of a row (tiles tile0 + t of `len` elements from trow, and drow for
// RACE_RESIDUAL): per token only its weight and an add; per tile of positive weight one Philox
// block and three logarithms. The block merges the threads' best tiles and the mass, then one
// thread reads the winning tile again and picks its token with the tile's second uniform (one
// tile read, where picking in the loop would put that work in every thread's loop). Every
// thread of the block calls it and gets the result.
template <RaceKind KIND, bool TRUNC, typename T>
__device__ RowResult race_pass(const T* trow, const T* drow, int len, int tile0,
                               const RaceRows& rr, const RaceNoise& noise, PassScratch& scratch) {
  TileRace race{race_empty(), 0.f};
  const auto offer = [&](int t, const float (&x)[TILE], const float (&y)[TILE]) {
    float w[TILE];
    tile_weights<KIND, TRUNC>(rr, tile0 + t, x, y, w);
    offer_tile(race, noise, tile0 + t, w);
  };
  if constexpr (KIND == RACE_RESIDUAL || KIND == RACE_RRS) {
    for_each_tile_pair(trow, drow, len, offer);
  } else {
    for_each_tile(trow, len, [&](int t, const float (&x)[TILE]) { offer(t, x, x); });
  }
  RowResult out;
  out.race = block_reduce(race.best, RaceMerge{}, race_empty(), scratch.race);
  out.mass = KIND == RACE_BONUS ? 0.f : block_reduce(race.mass, SumMerge{}, 0.f, scratch.sum);
  if (out.race.token < 0) return out;  // no tile of positive weight (block-uniform)
  if (threadIdx.x == 0) {
    const int j = out.race.token;
    float x[TILE], y[TILE], w[TILE];
    load_tile_scalar(trow, len, j - tile0, x);
    if constexpr (KIND == RACE_RESIDUAL || KIND == RACE_RRS) {
      load_tile_scalar(drow, len, j - tile0, y);
    } else {
#pragma unroll
      for (int i = 0; i < TILE; ++i) y[i] = x[i];
    }
    tile_weights<KIND, TRUNC>(rr, j, x, y, w);
    float big_w = 0.f;
#pragma unroll
    for (int i = 0; i < TILE; ++i) big_w += w[i];
    const TileUniforms u = tile_uniforms(noise.seed, noise.offset, noise.purpose, noise.row,
                                         static_cast<uint32_t>(j));
    scratch.picked = j * TILE + pick_in_tile(w, u.pick * big_w);
  }
  __syncthreads();
  out.race.token = scratch.picked;
  return out;
}

// Row r of request b over [first, first + len) (first a multiple of TILE): for r = n_b the bonus
// race over p_{n_b}; for r < n_b the residual race over res(v) = max(0, s p(v) - q(v)),
// v != x_r, and its mass R = sum res(v), with s = plan.scale[r] for ASpS and 1 for SpS (races
// over tiles: src/rng/noise.rs, "Races"). p, q and s are in [0, 1] and never NaN (the rows
// passed their checks and each 1/T is a normal float). Tokens outside a row's kept set
// (truncation) have probability 0 there; a greedy drafter's q is 0 at every v != x_r, so its
// draft row is not read. Untruncated rows run loops that test no kept set.
template <typename T>
__device__ RowResult row_pass(const VerifyParams& p, int b, int r, int n_b,
                              const RequestSampling& rs, const MergedRows& m, const Plan& plan,
                              int first, int len, PassScratch& scratch) {
  const uint64_t seed = ld(p.call.seeds + b), offset = ld(p.call.offsets + b);
  const T* trow = target_row<T>(p, b, r) + first;
  const int tile0 = first / TILE;
  RaceRows rr;
  rr.t_kept = merged_kept(m, true, r, rs);
  rr.d_kept = kept_all();
  rr.pd = RowExp{0.f, 0.f, 0.f};
  rr.x_r = -1;
  rr.excluded = nullptr;
  rr.n_excluded = 0;
  rr.rrs_k = 0;
  if (r == n_b) {
    const RaceNoise noise{seed, offset, PURPOSE_BONUS, 0};
    rr.pt = RowExp{m.t_max[r], exp2_factor(rs.inv_t), 0.f};
    return rr.t_kept.on
               ? race_pass<RACE_BONUS, true>(trow, trow, len, tile0, rr, noise, scratch)
               : race_pass<RACE_BONUS, false>(trow, trow, len, tile0, rr, noise, scratch);
  }
  const float scale = plan.rule == METHOD_ASPS ? plan.scale[r] : 1.f;  // > 0 when read
  rr.pt = RowExp{m.t_max[r], exp2_factor(rs.inv_t), m.t_log_norm[r] * LOG2E - log2f(scale)};
  rr.x_r = draft_token(p, b, r);
  const RaceNoise noise{seed, offset, PURPOSE_RESIDUAL, static_cast<uint32_t>(r)};
  if (rs.draft_greedy) {
    return rr.t_kept.on
               ? race_pass<RACE_RESIDUAL_GREEDY_DRAFT, true>(trow, trow, len, tile0, rr, noise,
                                                             scratch)
               : race_pass<RACE_RESIDUAL_GREEDY_DRAFT, false>(trow, trow, len, tile0, rr, noise,
                                                              scratch);
  }
  const T* drow = draft_row<T>(p, b, r) + first;
  rr.d_kept = merged_kept(m, false, r, rs);
  rr.pd = RowExp{m.d_max[r], exp2_factor(rs.inv_td), m.d_log_norm[r] * LOG2E};
  return rr.t_kept.on || rr.d_kept.on
             ? race_pass<RACE_RESIDUAL, true>(trow, drow, len, tile0, rr, noise, scratch)
             : race_pass<RACE_RESIDUAL, false>(trow, drow, len, tile0, rr, noise, scratch);
}

}  // namespace asps
