// Batched verification of speculative drafts by ASpS, SpS or greedy, in two launches, or one
// for the smallest calls (the fused form); src/cuda/verify/plan.rs plans them. Each logits row
// is read in `split` parts of `chunk` elements, one block per part, so that a small batch still
// gives every SM work (the host picks split; it is 1 for large batches and for sampling calls
// with truncation arrays):
//
//   1. rows:   one block per part of a logits row (n+1 target and n draft rows per request):
//              the part's online-softmax statistics (max, sum, argmax, NaN/+inf flags), and the
//              gather at the draft token by the part that holds it. Resets the request's
//              arrival counter for launch 2. When an ASpS or SpS call passes truncation arrays
//              (asps_verify_rows_truncating_*), rows are read whole (split 1), and the block of
//              a row its request truncates also finds the row's kept set (kernels/truncate.cuh).
//   2. decide: a block merges the parts of all its request's rows (one warp per row, in lane
//              order), checks them and plans the request (verify.cuh, Plan: the decisions that
//              need no second pass: SpS's accept scan, ASpS's full-accept test and which
//              residual rows are candidates); then, in one of three forms (host's choice,
//              src/cuda/verify/form.rs):
//              - parallel: one block per part of a target row r <= n; blocks whose row the
//                plan reads run their part of it (verify_passes.cuh), and the request's last
//                block to finish merges the parts, draws the outcome and writes it;
//              - lazy: one block per request, which reads the rows the outcome needs from the
//                top: the bonus row after a full accept, SpS's one row, or ASpS's candidate
//                rows from the last down to the one that stops the descent;
//              - fused (all but sampling calls with truncation arrays): no launch 2: the row
//                launch's last block of each request to finish (verify_fused) walks it as the
//                lazy form does.
//              Greedy reads no row again: its outcome is the merged argmaxes.
//
// Every merge is an XOR butterfly of a commutative merge, so results do not depend on which
// block ran first; with split > 1 a row's sum of exponentials and residual mass are added in
// another order than with split = 1, so they may differ in the last ulp, while maxima,
// argmaxes, flags, gathers and race winners are equal bit for bit.
//
// The workspace is never assumed to be clean: every entry a kernel reads was written earlier in
// the same call (the arrival counters by launch 1, the part cells of launch 2 by the blocks
// whose rows the plan reads, which are the rows the last block reads), but for the arrival
// counters in the fused form, which count from the zero every form leaves them at (the
// verifier zeroes them when it allocates them).
//
// Noise is keyed by each request's seed and offset (src/rng/noise.rs), never by its position in
// the batch, by the split or by the form. Indices into logits are 64-bit.

#include "launch_config.h"
#include "online_softmax.cuh"
#include "reduce.cuh"
#include "verify.cuh"
#include "verify_passes.cuh"

namespace asps {

// The request, row (numbered k: target row k for k <= n, draft row k - n - 1 after) and part of
// block `block` of the row launch (and of the fused launch): part s of row k of request b.
struct RowBlock {
  int b, k, s;
};

__device__ __forceinline__ RowBlock row_block_of(const VerifyParams& p, int block) {
  const int rows_per_request = 2 * p.call.max_draft + 1;
  const int row = block / p.layout.split;
  return RowBlock{row / rows_per_request, row % rows_per_request, block % p.layout.split};
}

// Part s of row k of request b: its online-softmax statistics (draft rows at the draft's
// temperature) and the gather at the draft token by the part that holds it, into the part and
// row cells. With TRUNCATING (a sampling call with truncation arrays: its rows are read whole,
// split 1, which src/cuda/verify/plan.rs guarantees: with parts, each part would write its own
// kept set into the row's cells), a row its request truncates also gets its kept set, the
// threshold and log-normaliser that the decide launch reads (kernels/truncate.cuh): with top-k
// from the row pass's largest tile maxima and a few tiles read again, with top-p alone from the
// row pass's counts per bucket and one more pass in most rows, else by passes over the row.
// Every thread of the block calls it.
template <typename T, bool TRUNCATING>
__device__ void row_part(const VerifyParams& p, int b, int k, int s) {
  __shared__ SoftmaxState scratch[32];
  int n_b;
  RequestSampling rs;
  if (request_status(p, b, n_b, rs) != ROW_OK) return;
  const bool is_target = k <= p.call.max_draft;
  const int r = is_target ? k : k - p.call.max_draft - 1;
  if (r > n_b || (!is_target && r == n_b)) return;
  const T* row = is_target ? target_row<T>(p, b, r) : draft_row<T>(p, b, r);
  const float inv_t = is_target ? rs.inv_t : rs.inv_td;
  int first, len;
  part_range(p, s, first, len);

  SoftmaxState state;
  if constexpr (TRUNCATING) {
    // The row's truncation, loaded by one thread for the block. The decide launch reports bad
    // truncation parameters; the kept set is then not needed.
    __shared__ Truncation row_truncation;
    __shared__ bool row_truncates;
    if (threadIdx.x == 0) {
      const Truncation tt = request_truncation(p, true, b), dt = request_truncation(p, false, b);
      row_truncation = is_target ? tt : dt;
      row_truncates =
          truncation_status(tt, dt) == ROW_OK && truncates(rs, is_target, row_truncation);
    }
    __syncthreads();
    const Truncation tr = row_truncation;
    const bool truncating = row_truncates;
    __shared__ SelectScratch select;
    TopTiles top = top_tiles_empty();
    state = truncating ? truncating_row_pass(row + first, len, first, inv_t, tr, top, select)
                       : row_softmax_state(row + first, len, first, inv_t);
    state = softmax_state_block_reduce(state, inv_t, scratch);
    if (truncating && softmax_state_status(state) == ROW_OK) {
      float log_norm;
      const KeptSet kept = truncate_row_after_pass(row + first, len, tr, state.max, state.sum,
                                                   inv_t, top, select, log_norm);
      if (threadIdx.x == 0) {
        const long long wi = ws_index(p, b, r);
        st((is_target ? p.ws.t_theta : p.ws.d_theta) + wi, kept.theta);
        st((is_target ? p.ws.t_trunc_ln : p.ws.d_trunc_ln) + wi, log_norm);
      }
    }
  } else {
    state = row_softmax_state(row + first, len, first, inv_t);
    state = softmax_state_block_reduce(state, inv_t, scratch);
  }
  if (threadIdx.x != 0) return;
  if (is_target && softmax_state_status(state) == ROW_OK) {
    state.arg = lowest_index_of_max(row + first, len, first, state.arg, state.max);
  }

  const long long pi = part_index(p, b, r, s);
  if (is_target) {
    st(p.ws.t_pmax + pi, state.max);
    st(p.ws.t_psum + pi, state.sum);
    st(p.ws.t_parg + pi, state.arg);
    st(p.ws.t_pflags + pi, state.flags);
  } else {
    st(p.ws.d_pmax + pi, state.max);
    st(p.ws.d_psum + pi, state.sum);
    st(p.ws.d_pflags + pi, state.flags);
  }
  if (r < n_b) {
    const int token = draft_token(p, b, r);
    if (token >= first && token < first + len) {
      st((is_target ? p.ws.t_gather : p.ws.d_gather) + ws_index(p, b, r), load_float(row, token));
    }
  }
}

// Kernel 1 of the two-launch forms: one block per part of a row (TRUNCATING: a call with
// truncation arrays, one block per row). Resets the request's arrival counter for the parallel
// decide launch.
template <typename T, bool TRUNCATING>
__device__ void verify_rows(const VerifyParams& p) {
  const RowBlock rb = row_block_of(p, static_cast<int>(blockIdx.x));
  if (rb.b >= p.call.batch) return;
  if (rb.k == 0 && rb.s == 0 && threadIdx.x == 0) st(p.ws.arrivals + rb.b, 0u);
  row_part<T, TRUNCATING>(p, rb.b, rb.k, rb.s);
}

// Row r of request b (target or draft) merged over its parts: lane s of the calling warp holds
// part s, merged in lane order, so every block that merges the row gets the same state. The
// argmax is read only with `with_arg` (target rows; -1 otherwise). Every lane of the warp must
// call it.
__device__ SoftmaxState merged_row_state(const VerifyParams& p, int b, int r, bool is_target,
                                         bool with_arg, float inv_t) {
  SoftmaxState state = softmax_state_empty();
  const int lane = threadIdx.x & 31;
  if (lane < p.layout.split) {
    const long long pi = part_index(p, b, r, lane);
    const AspsVerifyWorkspace& ws = p.ws;
    // Through L2: in the fused launch other blocks of the same launch wrote these cells.
    state = is_target ? SoftmaxState{ld_l2(ws.t_pmax + pi), ld_l2(ws.t_psum + pi),
                                     ld_l2(ws.t_pflags + pi), with_arg ? ld_l2(ws.t_parg + pi) : -1}
                      : SoftmaxState{ld_l2(ws.d_pmax + pi), ld_l2(ws.d_psum + pi),
                                     ld_l2(ws.d_pflags + pi), -1};
  }
  return warp_reduce(state, SoftmaxMerge{inv_t});
}

// Merges the parts of every row of request b (one warp per row, lane s holding part s) into
// `m` and checks each row: its values (NaN, +inf, all masked) and, for rows r < n_b, the draft
// token: in range, and one the draft could have drawn (not masked, not outside the draft's kept
// set; for a greedy drafter, a largest logit of its row). A sampling request that truncates a
// model's rows takes their kept sets from the row launch. Every thread of the block must
// call it.
__device__ void merge_rows(const VerifyParams& p, int b, int n_b, const RequestSampling& rs,
                           MergedRows& m) {
  const int lane = threadIdx.x & 31;
  const int warps = static_cast<int>(blockDim.x >> 5);
  if (threadIdx.x == 0) {
    // Invalid parameters are the request's status, and then the row launch wrote no kept set
    // to read.
    const Truncation tt = request_truncation(p, true, b), dt = request_truncation(p, false, b);
    m.truncation_status = truncation_status(tt, dt);
    const bool valid = m.truncation_status == ROW_OK;
    m.t_truncated = valid && truncates(rs, true, tt);
    m.d_truncated = valid && truncates(rs, false, dt);
    m.t_log_min_p = tt.min_p > 0.f ? logf(tt.min_p) : -INFINITY;
    m.d_log_min_p = dt.min_p > 0.f ? logf(dt.min_p) : -INFINITY;
  }
  __syncthreads();
  const bool t_truncated = m.t_truncated, d_truncated = m.d_truncated;
  for (int k = static_cast<int>(threadIdx.x >> 5); k < 2 * n_b + 1; k += warps) {
    const bool is_target = k <= n_b;
    const int r = is_target ? k : k - n_b - 1;
    const float inv_t = is_target ? rs.inv_t : rs.inv_td;
    const SoftmaxState state = merged_row_state(p, b, r, is_target, true, inv_t);
    if (lane != 0) continue;
    int status = softmax_state_status(state);
    const bool truncated = is_target ? t_truncated : d_truncated;
    float log_norm = logf(state.sum);
    // The kept set (all unmasked tokens without truncation); written by the row launch for
    // the rows of requests that truncate, once their values passed the checks.
    KeptSet kept = kept_all();
    if (truncated && status == ROW_OK) {
      const long long wi = ws_index(p, b, r);
      kept = KeptSet{true, ld_l2((is_target ? p.ws.t_theta : p.ws.d_theta) + wi),
                     is_target ? m.t_log_min_p : m.d_log_min_p, state.max, inv_t};
      log_norm = ld_l2((is_target ? p.ws.t_trunc_ln : p.ws.d_trunc_ln) + wi);
      (is_target ? m.t_theta : m.d_theta)[r] = kept.theta;
    }
    if (r < n_b && status == ROW_OK) {
      // The gather was written by the part holding the token, if the token is in range.
      const int token = draft_token(p, b, r);
      if (token < 0 || token >= p.call.vocab) {
        status = ROW_TOKEN_OUT_OF_RANGE;
      } else {
        float gather = ld_l2((is_target ? p.ws.t_gather : p.ws.d_gather) + ws_index(p, b, r));
        // Greedy verification asks only that the drafter did not mask it.
        const bool drawable = rs.greedy         ? gather > -INFINITY
                              : rs.draft_greedy ? gather == state.max
                                                : is_kept(kept, gather);
        if (!is_target && !drawable) status = ROW_IMPOSSIBLE_TOKEN;
        if (is_target && !is_kept(kept, gather)) gather = -INFINITY;  // p(x_r) = 0
        (is_target ? m.t_gather : m.d_gather)[r] = gather;
      }
    }
    if (is_target) {
      m.t_max[r] = state.max;
      m.t_log_norm[r] = log_norm;
      m.t_arg[r] = state.arg;
      m.status[r] = status;
    } else {
      m.d_max[r] = state.max;
      m.d_log_norm[r] = log_norm;
      m.status[n_b + 1 + r] = status;
    }
  }
  __syncthreads();
}

// The first bad status among request b's merged rows, or ROW_OK.
__device__ __forceinline__ int merged_status(const MergedRows& m, int n_b) {
  for (int k = 0; k < 2 * n_b + 1; ++k) {
    if (m.status[k] != ROW_OK) return m.status[k];
  }
  return ROW_OK;
}

// What the decide launch keeps in shared memory: the request's merged rows and plan, the
// passes' scratch, and (parallel form, last block) the rows' results merged over their parts.
struct DecideShared {
  MergedRows merged;
  Plan plan;
  PassScratch scratch;
  RaceState row_race[MAX_DRAFT + 1];
  float row_mass[MAX_DRAFT];
  int last;  // parallel form: this block is the request's last to finish
};

// Merges request b's rows and plans it (every thread calls; all see the plan on return).
__device__ void merge_and_plan(const VerifyParams& p, int b, int n_b, const RequestSampling& rs,
                               DecideShared& sh) {
  merge_rows(p, b, n_b, rs, sh.merged);
  if (threadIdx.x == 0) {
    const int truncation = sh.merged.truncation_status;
    sh.plan.status = truncation != ROW_OK ? truncation : merged_status(sh.merged, n_b);
    const int rule = rs.greedy ? METHOD_GREEDY : p.call.method;
    plan_request(rule, p.call.seeds + b, p.call.offsets + b, n_b, rs.inv_t, rs.inv_td,
                 rs.draft_greedy, sh.merged, sh.plan);
  }
  __syncthreads();
}

// Greedy: the longest draft prefix equal to the target rows' argmaxes, then the next argmax.
__device__ void greedy_outcome(const VerifyParams& p, int b, int n_b, const MergedRows& m,
                               int& accepted, int& token) {
  accepted = n_b;
  for (int r = 0; r < n_b; ++r) {
    if (m.t_arg[r] != draft_token(p, b, r)) {
      accepted = r;
      break;
    }
  }
  token = m.t_arg[accepted];
}

// Writes request b's outputs (one thread): the kept draft prefix and `token`, or nothing when
// the status is bad or no outcome was drawn (token < 0: the descent passed every row, the last
// one's residual lost to rounding; src/cuda/status.rs, NoOutcome); then advances its offset, so
// every call draws fresh noise, graph replays included.
__device__ void emit(const VerifyParams& p, int b, int status, int accepted, int token) {
  if (status == ROW_OK && token < 0) status = REQUEST_NO_OUTCOME;
  const int n = p.call.max_draft;
  int* out = p.call.out_tokens + static_cast<long long>(b) * (n + 1);
  for (int i = 0; i <= n; ++i) st(out + i, -1);
  if (status == ROW_OK) {
    for (int i = 0; i < accepted; ++i) st(out + i, draft_token(p, b, i));
    st(out + accepted, token);
  }
  st(p.call.out_num_emitted + b, status == ROW_OK ? accepted + 1 : 0);
  st(p.call.out_num_accepted + b, status == ROW_OK ? accepted : 0);
  st(p.call.out_status + b, status);
  st(p.call.offsets + b, ld(p.call.offsets + b) + 1);
}

// The lazy walk of request b by the calling block (every thread calls): SpS and a full accept
// read one row; otherwise ASpS reads candidate rows from the last down until one stops the
// descent, so rows below the outcome, and rows whose stop test fails before their read, are
// never read. Writes the outcome.
template <typename T>
__device__ void decide_request_lazy(const VerifyParams& p, int b, DecideShared& sh) {
  int n_b;
  RequestSampling rs;
  const int status = request_status(p, b, n_b, rs);
  if (status != ROW_OK) {
    if (threadIdx.x == 0) emit(p, b, status, 0, -1);
    return;
  }
  merge_and_plan(p, b, n_b, rs, sh);
  const Plan& plan = sh.plan;
  const int vocab = p.call.vocab;
  int accepted = 0, token = -1;
  if (plan.status == ROW_OK && plan.rule == METHOD_GREEDY) {
    greedy_outcome(p, b, n_b, sh.merged, accepted, token);
  } else if (plan.status == ROW_OK && (plan.rule == METHOD_SPS || plan.bonus)) {
    accepted = plan.rule == METHOD_SPS ? plan.sps_row : n_b;
    token = row_pass<T>(p, b, accepted, n_b, rs, sh.merged, plan, 0, vocab, sh.scratch).race.token;
  } else if (plan.status == ROW_OK) {
    // Every thread holds the same pass results, so the walk is uniform across the block.
    for (int r = n_b - 1; r >= 0; --r) {
      if (!plan.candidate[r]) continue;
      const RowResult res = row_pass<T>(p, b, r, n_b, rs, sh.merged, plan, 0, vocab, sh.scratch);
      if (plan_row_stops(plan, r, res.mass)) {
        accepted = r;
        token = res.race.token;
        break;
      }
    }
  }
  if (threadIdx.x == 0) emit(p, b, plan.status, accepted, token);
}

// Kernel 2, lazy form: block b walks request b.
template <typename T>
__device__ void decide_lazy(const VerifyParams& p, DecideShared& sh) {
  const int b = static_cast<int>(blockIdx.x);
  if (b >= p.call.batch) return;
  decide_request_lazy<T>(p, b, sh);
}

// Kernel 2, parallel form: block (b, r, s), r in 0..=n. Each block plans its request and, if
// the plan reads row r, runs part s of it and records the part's result; then it arrives at
// the request's counter, and the last block of the request to arrive merges the parts, takes
// the outcome and writes it. No block waits for another, so this is safe whatever blocks are
// co-resident.
//
// Memory ordering (the emulator cannot check it): thread 0 stores the part's result, then
// __threadfence() (fence.sc.gpu) orders those stores before its atomicAdd on the counter. The
// last block's thread 0 sees the count of all the others' atomics, each after its fence;
// its own __threadfence() after the atomic, and the __syncthreads() that follows, order the
// block's loads of the part cells after it; those loads use ld_l2 (ld.global.cg), which reads
// L2, the device's point of coherence, never a stale line of this SM's L1 (which may hold a
// line shared with another request's cells).
template <typename T>
__device__ void decide_parallel(const VerifyParams& p, DecideShared& sh) {
  const int split = p.layout.split;
  const int s = blockIdx.x % split;
  const int row_block = blockIdx.x / split;
  const int b = row_block / (p.call.max_draft + 1);
  const int r = row_block % (p.call.max_draft + 1);
  if (b >= p.call.batch) return;
  int n_b;
  RequestSampling rs;
  const int status = request_status(p, b, n_b, rs);
  // Every block of a sampling request plans, here, those of rows past its draft included (they
  // read no logits row), so that the last block, whichever it is, holds the plan the others used
  // (the same instructions on the same merged statistics: verify.cuh, Plan). A greedy request's
  // blocks only arrive: its last block merges below, and no other block used its decisions.
  const bool planned = status == ROW_OK && !rs.greedy;
  if (planned) {
    merge_and_plan(p, b, n_b, rs, sh);
    if (plan_reads_row(sh.plan, r, n_b)) {
      int first, len;
      part_range(p, s, first, len);
      const RowResult res =
          row_pass<T>(p, b, r, n_b, rs, sh.merged, sh.plan, first, len, sh.scratch);
      if (threadIdx.x == 0) {
        const long long pi = part_index(p, b, r, s);
        st(p.ws.race_pkey + pi, res.race.key);
        st(p.ws.race_ptoken + pi, res.race.token);
        st(p.ws.res_part + pi, res.mass);
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const unsigned blocks = static_cast<unsigned>((p.call.max_draft + 1) * split);
    sh.last = atomic_add(p.ws.arrivals + b, 1u) == blocks - 1;
    __threadfence();
  }
  __syncthreads();
  if (!sh.last) return;
  // Every other block of the request has arrived: the counter is left at 0, as the fused
  // launch expects it.
  if (threadIdx.x == 0) st(p.ws.arrivals + b, 0u);

  if (status != ROW_OK) {
    if (threadIdx.x == 0) emit(p, b, status, 0, -1);
    return;
  }
  if (!planned) merge_and_plan(p, b, n_b, rs, sh);
  const Plan& plan = sh.plan;
  // One warp per row the plan read, lane k holding part k, merged in lane order.
  const int lane = threadIdx.x & 31;
  const int warps = static_cast<int>(blockDim.x >> 5);
  for (int k = static_cast<int>(threadIdx.x >> 5); k <= n_b; k += warps) {
    if (!plan_reads_row(plan, k, n_b)) continue;
    RaceState race = race_empty();
    float mass = 0.f;
    if (lane < split) {
      const long long pi = part_index(p, b, k, lane);
      race = RaceState{ld_l2(p.ws.race_pkey + pi), ld_l2(p.ws.race_ptoken + pi)};
      mass = ld_l2(p.ws.res_part + pi);
    }
    race = warp_reduce(race, RaceMerge{});
    mass = warp_reduce(mass, SumMerge{});
    if (lane == 0) {
      sh.row_race[k] = race;
      if (k < n_b) sh.row_mass[k] = mass;
    }
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  int accepted = 0, token = -1;
  if (plan.status == ROW_OK && plan.rule == METHOD_GREEDY) {
    greedy_outcome(p, b, n_b, sh.merged, accepted, token);
  } else if (plan.status == ROW_OK && (plan.rule == METHOD_SPS || plan.bonus)) {
    accepted = plan.rule == METHOD_SPS ? plan.sps_row : n_b;
    token = sh.row_race[accepted].token;
  } else if (plan.status == ROW_OK) {
    for (int k = n_b - 1; k >= 0; --k) {
      if (plan.candidate[k] && plan_row_stops(plan, k, sh.row_mass[k])) {
        accepted = k;
        token = sh.row_race[k].token;
        break;
      }
    }
  }
  emit(p, b, plan.status, accepted, token);
}

// The one launch of the fused form: block (b, k, s) runs part s of row k of request b as the row
// launch does, then arrives at the request's counter; the request's last block to arrive walks
// the request as the lazy decide launch does, and leaves the counter at 0 for the next call
// (every form leaves it so; the verifier zeroes it once when it allocates it). No block waits
// for another. Sampling calls with truncation arrays never take this form
// (src/cuda/verify/plan.rs refuses them: their kept sets need the truncating row kernel);
// greedy ones ignore truncation, and the walk still checks its parameters (merge_rows).
// Memory ordering as in decide_parallel: thread 0 stores, fences, then counts; the last
// block's loads of the cells others wrote go through L2 (merged_row_state, merge_rows).
template <typename T>
__device__ void verify_fused(const VerifyParams& p) {
  __shared__ DecideShared sh;
  const RowBlock rb = row_block_of(p, static_cast<int>(blockIdx.x));
  if (rb.b >= p.call.batch) return;
  row_part<T, false>(p, rb.b, rb.k, rb.s);
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const unsigned blocks = static_cast<unsigned>((2 * p.call.max_draft + 1) * p.layout.split);
    sh.last = atomic_add(p.ws.arrivals + rb.b, 1u) == blocks - 1;
    __threadfence();
  }
  __syncthreads();
  if (!sh.last) return;
  if (threadIdx.x == 0) st(p.ws.arrivals + rb.b, 0u);
  decide_request_lazy<T>(p, rb.b, sh);
}

template <typename T>
__device__ void verify_decide(const VerifyParams& p) {
  __shared__ DecideShared sh;
  if (p.layout.form == FORM_LAZY) {
    decide_lazy<T>(p, sh);
  } else {
    decide_parallel<T>(p, sh);
  }
}

}  // namespace asps

#define ASPS_VERIFY_KERNELS(SUFFIX, T)                                                     \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                       \
      asps_verify_rows_##SUFFIX(asps::VerifyParams p) {                                    \
    asps::verify_rows<T, false>(p);                                                        \
  }                                                                                        \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                       \
      asps_verify_rows_truncating_##SUFFIX(asps::VerifyParams p) {                         \
    asps::verify_rows<T, true>(p);                                                         \
  }                                                                                        \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                       \
      asps_verify_decide_##SUFFIX(asps::VerifyParams p) {                                  \
    asps::verify_decide<T>(p);                                                             \
  }                                                                                        \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                       \
      asps_verify_fused_##SUFFIX(asps::VerifyParams p) {                                   \
    asps::verify_fused<T>(p);                                                              \
  }

ASPS_VERIFY_KERNELS(f32, float)
ASPS_VERIFY_KERNELS(f16, __half)
ASPS_VERIFY_KERNELS(bf16, __nv_bfloat16)
