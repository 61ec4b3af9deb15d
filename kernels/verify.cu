// Batched verification of speculative drafts by ASpS, SpS or greedy, in three launches:
//
//   1. rows:     one block per logits row (n+1 target and n draft rows per request): the fused
//                softmax statistics, the argmax, the gather at the draft token, row checks.
//   2. residual: one block per target row r <= n_b: for r < n_b the residual pass of DESIGN.md
//                (A_r, ln t_r and the row's race winner); for r = n_b the bonus race on the
//                target's last row, directly on the logits. SpS decides here, once, which one
//                row it needs (its first rejection, or the bonus) and records it.
//   3. finalize: one thread per request: the outcome race across rows (or SpS's recorded
//                decision, or greedy's scan), the emitted tokens, and the offset advanced by one.
//
// The workspace is never assumed to be clean: every entry a kernel reads was written earlier in
// the same call (ws_sps_row is reset by the row kernel, so a stale decision is never read).
//
// Noise is keyed by each request's seed and offset (src/rng/noise.rs), never by its position in
// the batch. Indices into logits are 64-bit.

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

// Kernel 1. Block k of request b: target row k for k <= n, draft row k - n - 1 after that.
template <typename T>
__device__ void verify_rows(const VerifyParams& p) {
  __shared__ SoftmaxState scratch[32];
  const int rows_per_request = 2 * p.max_draft + 1;
  const int b = blockIdx.x / rows_per_request;
  const int k = blockIdx.x % rows_per_request;
  if (b >= p.batch) return;
  if (k == 0 && threadIdx.x == 0) st(p.ws_sps_row + ws_index(p, b, 0), -1);
  int n_b;
  float t;
  if (request_status(p, b, n_b, t) != ROW_OK) return;
  const bool is_target = k <= p.max_draft;
  const int r = is_target ? k : k - p.max_draft - 1;
  if (r > n_b || (!is_target && r == n_b)) return;
  const T* row = is_target ? target_row<T>(p, b, r) : draft_row<T>(p, b, r);
  const float inv_t = t > 0.f ? 1.f / t : 1.f;  // greedy rows need only max and argmax

  SoftmaxState s = softmax_state_empty();
  for_each_in_row(row, p.vocab, [&](int i, float x) { softmax_state_push(s, x, i, inv_t); });
  s = softmax_state_block_reduce(s, inv_t, scratch);
  if (threadIdx.x != 0) return;

  int status = softmax_state_status(s);
  float gather = NAN;
  if (r < n_b) {
    const int token = ld(p.draft_tokens + static_cast<long long>(b) * p.max_draft + r);
    if (token < 0 || token >= p.vocab) {
      if (status == ROW_OK) status = ROW_TOKEN_OUT_OF_RANGE;
    } else {
      gather = load_float(row, token);
      if (!is_target && gather == -INFINITY && status == ROW_OK) status = ROW_IMPOSSIBLE_TOKEN;
    }
  }
  const long long i = ws_index(p, b, r);
  if (is_target) {
    st(p.ws_t_max + i, s.max);
    st(p.ws_t_log_norm + i, logf(s.sum));
    st(p.ws_t_gather + i, gather);
    st(p.ws_t_arg + i, s.arg);
    st(p.ws_t_status + i, status);
  } else {
    st(p.ws_d_max + i, s.max);
    st(p.ws_d_log_norm + i, logf(s.sum));
    st(p.ws_d_gather + i, gather);
    st(p.ws_d_status + i, status);
  }
}

// Kernel 2. Block r of request b, r in 0..=n.
template <typename T>
__device__ void verify_residual(const VerifyParams& p) {
  __shared__ RaceState race_scratch[32];
  __shared__ float sum_scratch[32];
  __shared__ int run;
  __shared__ float s_prev, log_one_minus_s;
  const int b = blockIdx.x / (p.max_draft + 1);
  const int r = blockIdx.x % (p.max_draft + 1);
  int n_b;
  float t;
  if (b >= p.batch || request_status(p, b, n_b, t) != ROW_OK) return;
  if (request_is_greedy(p, t) || r > n_b) return;
  const float inv_t = 1.f / t;
  const unsigned long long seed = ld(p.seeds + b), offset = ld(p.offsets + b);
  const long long wi = ws_index(p, b, r);

  if (threadIdx.x == 0) {
    // The scalar decisions, in double (verify.cuh): one thread, once per block.
    const double inv_t_exact = 1.0 / static_cast<double>(t);
    run = request_rows_status(p, b, n_b) == ROW_OK;
    if (run && p.method == METHOD_SPS) {
      // SpS needs one race: the residual at its first rejected row, or the bonus after a full
      // accept. Every block of the request computes the same decision with this same code;
      // the block it names records it for finalize.
      run = sps_first_rejected(p, b, n_b, inv_t_exact) == r;
      if (run) st(p.ws_sps_row + ws_index(p, b, 0), r);
      s_prev = 1.f;
      log_one_minus_s = 0.f;  // SpS reads no ln t_r
    } else if (run && r < n_b) {
      const double log_s_prev = log_scale(p, b, r, inv_t_exact);
      const double log_s_row = min0(log_s_prev + log_rho(p, b, r, inv_t_exact));
      s_prev = static_cast<float>(exp(log_s_prev));
      log_one_minus_s = static_cast<float>(log(-expm1(log_s_row)));
      st(p.ws_log_keep + wi, static_cast<float>(log_s_row));
    }
  }
  __syncthreads();
  if (!run) return;

  const T* trow = target_row<T>(p, b, r);
  const float t_max = ld(p.ws_t_max + wi), t_ln = ld(p.ws_t_log_norm + wi);
  RaceState race = race_empty();

  if (r == n_b) {
    // The bonus: a race on the target's last row, keys (x - max) / T + G(Bonus, 0, v).
    TokenNoise noise(seed, offset, PURPOSE_BONUS, 0);
    for_each_in_row(trow, p.vocab, [&](int v, float x) {
      if (x != -INFINITY) race_offer(race, (x - t_max) * inv_t + noise.gumbel(v), v);
    });
    race = block_reduce(race, RaceMerge{}, race_empty(), race_scratch);
    if (threadIdx.x == 0) {
      st(p.ws_race_key + wi, race.key);
      st(p.ws_race_token + wi, race.token);
    }
    return;
  }

  // The residual row: res(v) = max(0, s p(v) - q(v)), A = sum max(0, q(v) - s p(v)), and the
  // race over v != x_r of ln res(v) + G(Residual, r, v). p, q and s are in [0, 1] (never NaN:
  // the rows passed their checks and 1/T is finite and > 0), so fmaxf drops nothing.
  const T* drow = draft_row<T>(p, b, r);
  const float d_max = ld(p.ws_d_max + wi), d_ln = ld(p.ws_d_log_norm + wi);
  const float scale = s_prev;
  const int x_r = ld(p.draft_tokens + static_cast<long long>(b) * p.max_draft + r);
  TokenNoise noise(seed, offset, PURPOSE_RESIDUAL, r);
  float a_sum = 0.f;
  for_each_in_rows(trow, drow, p.vocab, [&](int v, float xt, float xd) {
    const float sp = scale * expf((xt - t_max) * inv_t - t_ln);
    const float qv = expf((xd - d_max) * inv_t - d_ln);
    a_sum += fmaxf(qv - sp, 0.f);
    const float res = sp - qv;
    if (res > 0.f && v != x_r) race_offer(race, logf(res) + noise.gumbel(v), v);
  });
  race = block_reduce(race, RaceMerge{}, race_empty(), race_scratch);
  const float a = block_reduce(a_sum, SumMerge{}, 0.f, sum_scratch);
  if (threadIdx.x == 0) {
    st(p.ws_race_key + wi, race.key);
    st(p.ws_race_token + wi, race.token);
    // t_r = (1 - s_r) / A_r, and 1 when A_r = 0 (then p_r = q_r: 0/0).
    st(p.ws_log_t + wi, a == 0.f ? 0.f : log_one_minus_s - logf(a));
  }
}

// Kernel 3. One thread per request.
__device__ void verify_finalize(const VerifyParams& p) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= p.batch) return;
  const int n = p.max_draft;
  int* out = p.out_tokens + static_cast<long long>(b) * (n + 1);
  for (int i = 0; i <= n; ++i) st(out + i, -1);
  int n_b;
  float t;
  int status = request_status(p, b, n_b, t);
  if (status == ROW_OK) status = request_rows_status(p, b, n_b);

  int accepted = 0, token = -1;
  if (status == ROW_OK) {
    const int* x = p.draft_tokens + static_cast<long long>(b) * n;
    if (request_is_greedy(p, t)) {
      accepted = n_b;
      for (int r = 0; r < n_b; ++r) {
        if (ld(p.ws_t_arg + ws_index(p, b, r)) != ld(x + r)) {
          accepted = r;
          break;
        }
      }
      token = ld(p.ws_t_arg + ws_index(p, b, accepted));
    } else if (p.method == METHOD_SPS) {
      // The residual kernel's decision (reset to -1 by the row kernel of this call).
      const int decided = ld(p.ws_sps_row + ws_index(p, b, 0));
      if (decided >= 0 && decided <= n_b) {
        accepted = decided;
        token = ld(p.ws_race_token + ws_index(p, b, decided));
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
        const long long i = ws_index(p, b, r);
        log_big_t += ld(p.ws_log_t + i);
        const float key = log_big_t + ld(p.ws_race_key + i);
        if (ld(p.ws_race_token + i) >= 0 && key > -INFINITY && key >= best) {
          best = key;
          winner = r;
        }
      }
      if (winner >= 0) {
        accepted = winner;
        token = ld(p.ws_race_token + ws_index(p, b, winner));
      }
    }
    if (token < 0) status = REQUEST_NO_OUTCOME;
  }
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

extern "C" __global__ void asps_verify_finalize(asps::VerifyParams p) { asps::verify_finalize(p); }
