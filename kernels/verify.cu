// Batched verification of speculative drafts by ASpS, SpS or greedy, in three launches. Each
// logits row is read in `split` parts of `chunk` elements, one block per part, so that a small
// batch still gives every SM work (the host picks split; it is 1 for large batches):
//
//   1. rows:     one block per part of a logits row (n+1 target and n draft rows per request):
//                the part's online-softmax statistics (max, sum, argmax, NaN/+inf flags), and
//                the gather at the draft token by the part that holds it.
//   2. residual: one block per part of a target row r <= n_b. Every block first merges the
//                parts of all the request's rows (one warp per row, in lane order), checks
//                them, and takes the request's scalar decisions; then it walks its part: for
//                r < n_b the residual pass of DESIGN.md (its share of A_r and its race winner),
//                for r = n_b the bonus race on the target's last row. Block (b, 0, 0) records
//                the request's status (and, for a greedy request, the only block that runs,
//                the rows' merged argmaxes), blocks (b, r, 0) ln s_{r+1} of their row; SpS
//                decides here which one row it needs (its first rejection, or the bonus), and
//                block (b, decided, 0) records it.
//   3. finalize: one block per request: its warps merge the parts of the residual launch (one
//                warp per row, in lane order); one thread runs the outcome race across rows (or
//                reads SpS's recorded decision, or greedy's argmaxes), writes the emitted tokens
//                and advances the offset by one.
//
// Every merge is an XOR butterfly of a commutative merge, so results do not depend on which
// block ran first; with split > 1 a row's sum of exponentials and A_r are added in another
// order than with split = 1, so they (and the keys built on them) may differ in the last ulp,
// while maxima, argmaxes, flags and gathers are equal bit for bit.
//
// The workspace is never assumed to be clean: every entry a kernel reads was written earlier in
// the same call (ws_sps_row is reset by the row kernel, so a stale decision is never read).
//
// Noise is keyed by each request's seed and offset (src/rng/noise.rs), never by its position in
// the batch or by the split. Indices into logits are 64-bit.

#include "launch_config.h"
#include "online_softmax.cuh"
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

// The temperature scale the row statistics use: greedy rows need only max and argmax.
__device__ __forceinline__ float stats_inv_t(float t) { return t > 0.f ? 1.f / t : 1.f; }

// Kernel 1. Block (b, k, s): part s of target row k for k <= n, of draft row k - n - 1 after.
template <typename T>
__device__ void verify_rows(const VerifyParams& p) {
  __shared__ SoftmaxState scratch[32];
  const int rows_per_request = 2 * p.max_draft + 1;
  const int s = blockIdx.x % p.split;
  const int row_block = blockIdx.x / p.split;
  const int b = row_block / rows_per_request;
  const int k = row_block % rows_per_request;
  if (b >= p.batch) return;
  if (k == 0 && s == 0 && threadIdx.x == 0) st(p.ws_sps_row + ws_index(p, b, 0), -1);
  int n_b;
  float t;
  if (request_status(p, b, n_b, t) != ROW_OK) return;
  const bool is_target = k <= p.max_draft;
  const int r = is_target ? k : k - p.max_draft - 1;
  if (r > n_b || (!is_target && r == n_b)) return;
  const T* row = is_target ? target_row<T>(p, b, r) : draft_row<T>(p, b, r);
  const float inv_t = stats_inv_t(t);
  int first, len;
  part_range(p, s, first, len);

  SoftmaxState state = softmax_state_empty();
  for_each_in_row(row + first, len,
                  [&](int i, float x) { softmax_state_push(state, x, first + i, inv_t); });
  state = softmax_state_block_reduce(state, inv_t, scratch);
  if (threadIdx.x != 0) return;

  const long long pi = part_index(p, b, r, s);
  if (is_target) {
    st(p.ws_t_pmax + pi, state.max);
    st(p.ws_t_psum + pi, state.sum);
    st(p.ws_t_parg + pi, state.arg);
    st(p.ws_t_pflags + pi, state.flags);
  } else {
    st(p.ws_d_pmax + pi, state.max);
    st(p.ws_d_psum + pi, state.sum);
    st(p.ws_d_pflags + pi, state.flags);
  }
  if (r < n_b) {
    const int token = ld(p.draft_tokens + static_cast<long long>(b) * p.max_draft + r);
    if (token >= first && token < first + len) {
      st((is_target ? p.ws_t_gather : p.ws_d_gather) + ws_index(p, b, r), load_float(row, token));
    }
  }
}

// Merges the parts of every row of request b (one warp per row, lane s holding part s) into
// `m` and checks each row: its values (NaN, +inf, all masked) and, for rows r < n_b, the draft
// token (in range; not masked by the draft). Every thread of the block must call it.
__device__ void merge_rows(const VerifyParams& p, int b, int n_b, float inv_t, MergedRows& m) {
  const int lane = threadIdx.x & 31;
  const int warps = static_cast<int>(blockDim.x >> 5);
  for (int k = static_cast<int>(threadIdx.x >> 5); k < 2 * n_b + 1; k += warps) {
    const bool is_target = k <= n_b;
    const int r = is_target ? k : k - n_b - 1;
    SoftmaxState state = softmax_state_empty();
    if (lane < p.split) {
      const long long pi = part_index(p, b, r, lane);
      if (is_target) {
        state = SoftmaxState{ld(p.ws_t_pmax + pi), ld(p.ws_t_psum + pi), ld(p.ws_t_pflags + pi),
                             ld(p.ws_t_parg + pi)};
      } else {
        state = SoftmaxState{ld(p.ws_d_pmax + pi), ld(p.ws_d_psum + pi), ld(p.ws_d_pflags + pi), -1};
      }
    }
    state = warp_reduce(state, SoftmaxMerge{inv_t});
    if (lane != 0) continue;
    int status = softmax_state_status(state);
    if (r < n_b && status == ROW_OK) {
      // The gather was written by the part holding the token, if the token is in range.
      const int token = ld(p.draft_tokens + static_cast<long long>(b) * p.max_draft + r);
      if (token < 0 || token >= p.vocab) {
        status = ROW_TOKEN_OUT_OF_RANGE;
      } else {
        const float gather = ld((is_target ? p.ws_t_gather : p.ws_d_gather) + ws_index(p, b, r));
        (is_target ? m.t_gather : m.d_gather)[r] = gather;
        if (!is_target && gather == -INFINITY) status = ROW_IMPOSSIBLE_TOKEN;
      }
    }
    if (is_target) {
      m.t_max[r] = state.max;
      m.t_log_norm[r] = logf(state.sum);
      m.t_arg[r] = state.arg;
      m.status[r] = status;
    } else {
      m.d_max[r] = state.max;
      m.d_log_norm[r] = logf(state.sum);
      m.status[n_b + 1 + r] = status;
    }
  }
  __syncthreads();
}

// Kernel 2. Block (b, r, s), r in 0..=n.
template <typename T>
__device__ void verify_residual(const VerifyParams& p) {
  __shared__ MergedRows merged;
  __shared__ RaceState race_scratch[32];
  __shared__ float sum_scratch[32];
  __shared__ int run;
  __shared__ float s_prev;
  const int s = blockIdx.x % p.split;
  const int row_block = blockIdx.x / p.split;
  const int b = row_block / (p.max_draft + 1);
  const int r = row_block % (p.max_draft + 1);
  int n_b;
  float t;
  if (b >= p.batch || request_status(p, b, n_b, t) != ROW_OK || r > n_b) return;
  // A greedy request needs no residual pass: block (b, 0, 0) alone checks its rows and records
  // their argmaxes.
  const bool greedy = request_is_greedy(p, t);
  if (greedy && (r != 0 || s != 0)) return;
  const float stats_inv = stats_inv_t(t);
  merge_rows(p, b, n_b, stats_inv, merged);
  const long long wi = ws_index(p, b, r);

  if (threadIdx.x == 0) {
    int status = ROW_OK;
    for (int k = 0; k < 2 * n_b + 1 && status == ROW_OK; ++k) status = merged.status[k];
    if (r == 0 && s == 0) st(p.ws_status + wi, status);
    if (greedy && status == ROW_OK) {
      for (int k = 0; k <= n_b; ++k) st(p.ws_t_arg + ws_index(p, b, k), merged.t_arg[k]);
    }
    run = status == ROW_OK && !greedy;
    // The scalar decisions, in double (verify.cuh): one thread per block.
    const double inv_t_exact = 1.0 / static_cast<double>(t);
    if (run && p.method == METHOD_SPS) {
      // SpS needs one race: the residual at its first rejected row, or the bonus after a full
      // accept. Every block of the request computes the same decision with this same code;
      // the first block of the row it names records it for finalize.
      run = sps_first_rejected(p, merged, b, n_b, inv_t_exact) == r;
      if (run && s == 0) st(p.ws_sps_row + ws_index(p, b, 0), r);
      s_prev = 1.f;
    } else if (run && r < n_b) {
      const double log_s_prev = log_scale(merged, r, inv_t_exact);
      const double log_s_row = min0(log_s_prev + log_rho(merged, r, inv_t_exact));
      s_prev = static_cast<float>(exp(log_s_prev));
      if (s == 0) st(p.ws_log_keep + wi, static_cast<float>(log_s_row));
    }
  }
  __syncthreads();
  if (!run) return;

  const float inv_t = 1.f / t;
  const unsigned long long seed = ld(p.seeds + b), offset = ld(p.offsets + b);
  const T* trow = target_row<T>(p, b, r);
  const float t_max = merged.t_max[r], t_ln = merged.t_log_norm[r];
  const long long pi = part_index(p, b, r, s);
  int first, len;
  part_range(p, s, first, len);
  RaceState race = race_empty();

  if (r == n_b) {
    // The bonus: a race on the target's last row, keys (x - max) / T + G(Bonus, 0, v).
    TokenNoise noise(seed, offset, PURPOSE_BONUS, 0);
    for_each_in_row(trow + first, len, [&](int i, float x) {
      const int v = first + i;
      if (x != -INFINITY) race_offer(race, (x - t_max) * inv_t + noise.gumbel(v), v);
    });
    race = block_reduce(race, RaceMerge{}, race_empty(), race_scratch);
    if (threadIdx.x == 0) {
      st(p.ws_race_pkey + pi, race.key);
      st(p.ws_race_ptoken + pi, race.token);
    }
    return;
  }

  // The residual row: res(v) = max(0, s p(v) - q(v)), A = sum max(0, q(v) - s p(v)), and the
  // race over v != x_r of ln res(v) + G(Residual, r, v). p, q and s are in [0, 1] (never NaN:
  // the rows passed their checks and 1/T is a normal float), so fmaxf drops nothing.
  const T* drow = draft_row<T>(p, b, r);
  const float d_max = merged.d_max[r], d_ln = merged.d_log_norm[r];
  const float scale = s_prev;
  const int x_r = ld(p.draft_tokens + static_cast<long long>(b) * p.max_draft + r);
  TokenNoise noise(seed, offset, PURPOSE_RESIDUAL, r);
  float a_sum = 0.f;
  for_each_in_rows(trow + first, drow + first, len, [&](int i, float xt, float xd) {
    const int v = first + i;
    const float sp = scale * expf((xt - t_max) * inv_t - t_ln);
    const float qv = expf((xd - d_max) * inv_t - d_ln);
    a_sum += fmaxf(qv - sp, 0.f);
    const float res = sp - qv;
    if (res > 0.f && v != x_r) race_offer(race, logf(res) + noise.gumbel(v), v);
  });
  race = block_reduce(race, RaceMerge{}, race_empty(), race_scratch);
  const float a = block_reduce(a_sum, SumMerge{}, 0.f, sum_scratch);
  if (threadIdx.x == 0) {
    st(p.ws_race_pkey + pi, race.key);
    st(p.ws_race_ptoken + pi, race.token);
    st(p.ws_a_part + pi, a);
  }
}

// What finalize reads of a request, gathered by its block in parallel (each warp merges the
// parts of rows w, w + warps, ...), so that the one thread that decides reads shared memory.
struct RequestRows {
  float race_key[MAX_DRAFT + 1];  // the row's race winner over its parts
  int race_token[MAX_DRAFT + 1];
  float a[MAX_DRAFT];             // ASpS: A_r, summed over the parts in lane order
  int t_arg[MAX_DRAFT + 1];       // greedy: the target rows' argmax
};

// Kernel 3. One block per request: its warps gather the rows' results, thread 0 decides.
__device__ void verify_finalize(const VerifyParams& p) {
  __shared__ RequestRows rows;
  const int b = blockIdx.x;
  if (b >= p.batch) return;
  const int n = p.max_draft;
  int n_b;
  float t;
  int status = request_status(p, b, n_b, t);
  if (status == ROW_OK) status = ld(p.ws_status + ws_index(p, b, 0));
  const bool greedy = request_is_greedy(p, t);
  const bool sps = !greedy && p.method == METHOD_SPS;
  // SpS: the residual kernel's decision (reset to -1 by the row kernel of this call).
  const int decided = status == ROW_OK && sps ? ld(p.ws_sps_row + ws_index(p, b, 0)) : -1;
  if (status == ROW_OK) {
    const int lane = threadIdx.x & 31;
    const int warps = static_cast<int>(blockDim.x >> 5);
    for (int r = static_cast<int>(threadIdx.x >> 5); r <= n_b; r += warps) {
      if (greedy) {
        if (lane == 0) rows.t_arg[r] = ld(p.ws_t_arg + ws_index(p, b, r));
        continue;
      }
      // SpS and ASpS: only rows the residual launch ran hold parts (SpS: its decided row).
      if (sps && r != decided) continue;
      RaceState race = race_empty();
      float a = 0.f;
      if (lane < p.split) {
        const long long pi = part_index(p, b, r, lane);
        race = RaceState{ld(p.ws_race_pkey + pi), ld(p.ws_race_ptoken + pi)};
        if (p.method == METHOD_ASPS && r < n_b) a = ld(p.ws_a_part + pi);
      }
      race = warp_reduce(race, RaceMerge{});
      a = warp_reduce(a, SumMerge{});
      if (lane == 0) {
        rows.race_key[r] = race.key;
        rows.race_token[r] = race.token;
        if (r < n_b) rows.a[r] = a;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x != 0) return;

  int accepted = 0, token = -1;
  if (status == ROW_OK) {
    const int* x = p.draft_tokens + static_cast<long long>(b) * n;
    if (greedy) {
      accepted = n_b;
      for (int r = 0; r < n_b; ++r) {
        if (rows.t_arg[r] != ld(x + r)) {
          accepted = r;
          break;
        }
      }
      token = rows.t_arg[accepted];
    } else if (sps) {
      if (decided >= 0 && decided <= n_b) {
        accepted = decided;
        token = rows.race_token[decided];
      }
    } else {
      // ASpS: key of "keep r tokens, emit v" is ln T_{r+1} + the row's best key; the full
      // accept has ln s_n + G(Accept, 0). Rows are visited from the last down with >=, so the
      // lowest row wins ties and every row beats the full accept on a tie (as in the reference).
      const float log_s_n = ld(p.ws_log_keep + ws_index(p, b, n_b - 1));  // ln s_{n_b}
      float best = -INFINITY;
      int winner = -1;
      if (log_s_n > -INFINITY) {
        best = log_s_n + gumbel_from_unit(
                             scalar_uniform(ld(p.seeds + b), ld(p.offsets + b), PURPOSE_ACCEPT, 0));
        winner = n_b;
      }
      float log_big_t = 0.f;
      for (int r = n_b - 1; r >= 0; --r) {
        // t_r = (1 - s_r) / A_r, and 1 when A_r = 0 (then p_r = q_r: 0/0).
        const float a = rows.a[r];
        const double log_keep = ld(p.ws_log_keep + ws_index(p, b, r));
        log_big_t += a == 0.f ? 0.f : static_cast<float>(log(-expm1(log_keep))) - logf(a);
        const float key = log_big_t + rows.race_key[r];
        if (rows.race_token[r] >= 0 && key > -INFINITY && key >= best) {
          best = key;
          winner = r;
        }
      }
      if (winner >= 0) {
        accepted = winner;
        token = rows.race_token[winner];
      }
    }
    if (token < 0) status = REQUEST_NO_OUTCOME;
  }
  int* out = p.out_tokens + static_cast<long long>(b) * (n + 1);
  for (int i = 0; i <= n; ++i) st(out + i, -1);
  if (status == ROW_OK) {
    const int* x = p.draft_tokens + static_cast<long long>(b) * n;
    for (int i = 0; i < accepted; ++i) st(out + i, ld(x + i));
    st(out + accepted, token);
    st(p.out_num_emitted + b, accepted + 1);
    st(p.out_num_accepted + b, accepted);
  } else {
    st(p.out_num_emitted + b, 0);
    st(p.out_num_accepted + b, 0);
  }
  st(p.out_status + b, status);
  st(p.offsets + b, ld(p.offsets + b) + 1);  // every call draws fresh noise, graph replays included
}

}  // namespace asps

#define ASPS_VERIFY_KERNELS(SUFFIX, T)                                                     \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                       \
      asps_verify_rows_##SUFFIX(asps::VerifyParams p) {                                    \
    asps::verify_rows<T>(p);                                                               \
  }                                                                                        \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                       \
      asps_verify_residual_##SUFFIX(asps::VerifyParams p) {                                \
    asps::verify_residual<T>(p);                                                           \
  }

ASPS_VERIFY_KERNELS(f32, float)
ASPS_VERIFY_KERNELS(f16, __half)
ASPS_VERIFY_KERNELS(bf16, __nv_bfloat16)

extern "C" __global__ void __launch_bounds__(asps::FINALIZE_THREADS)
    asps_verify_finalize(asps::VerifyParams p) {
  asps::verify_finalize(p);
}
