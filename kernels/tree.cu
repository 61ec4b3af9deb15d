// Draft trees (docs/design.md, "Draft trees"): batched, ragged verification of one tree per
// request, in two launches. The noise is that of src/reference/tree_sample.rs, keyed by the
// request's seed and offset and by node indices, never by the request's place in the batch.
//
//   1. rows:   one block per (request, node): the node's target row statistics (max, sum,
//              argmax, NaN/+inf flags) at the request's temperature, its kept set when the
//              request truncates the target's rows (kernels/truncate.cuh), and the gather, for
//              each child of the node, of the row's logit at the child's token.
//   2. decide: one block per request: one thread checks the request and its tree and walks it
//              with scalars only; the block then runs at most one pass, the race that draws the
//              token after the accepted node.
//              - temperature 0: greedy, down the first child holding the row's argmax; that
//                argmax follows the last node (no pass).
//              - deterministic children (the draft's most probable tokens, as EAGLE drafts):
//                recursive rejection sampling in its scalar form, which is also TV's law here.
//                At node u, child c of token x is accepted when U(TreeNode, c) <
//                min(1, p_u(x) / R) (0 for a token already rejected at u), R the mass not yet
//                rejected, and the walk descends into it. R is summed, not formed as 1 less
//                the rejected masses: the mass outside the children's tokens (none below what
//                the f32 statistics resolve, TREE_MASS_RESOLUTION) plus that of the children
//                not yet tried, so children that cover u's kept set leave the last one an
//                acceptance of exactly 1, as in the reference. A node whose children are all
//                rejected, or a leaf, emits the race over p_u without the rejected tokens, in
//                the stream (TreeEmit, u).
//              Children drawn from draft rows (TV, sampled RRS) are not verified yet: such a
//              request gets ASPS_TREE_BAD_TREE.


#include "launch_config.h"
#include "online_softmax.cuh"
#include "philox.cuh"
#include "sampling.cuh"
#include "tree_params.h"
#include "truncate.cuh"
#include "verify_passes.cuh"

namespace asps {

using TreeParams = AspsTreeParams;
constexpr int TREE_MAX_NODES = ASPS_TREE_MAX_NODES;
constexpr int TREE_BAD_TREE = ASPS_TREE_BAD_TREE;
// A node's mass (1) that its statistics resolve: a token's probability from an f32
// log-normaliser is good to about 1e-6 of it (docs/design.md, "Draft trees").
constexpr double TREE_MASS_RESOLUTION = 1e-5;

__device__ __forceinline__ long long tree_cell(const TreeParams& p, int b, int u) {
  return static_cast<long long>(b) * p.call.max_nodes + u;
}

template <typename T>
__device__ __forceinline__ const T* tree_target_row(const TreeParams& p, int b, int u) {
  return static_cast<const T*>(p.call.target_logits) +
         static_cast<long long>(b) * p.call.target_batch_stride +
         static_cast<long long>(u) * p.call.target_node_stride;
}

// Request b's node count and temperature: ROW_OK, or its status. On ROW_OK n_b and inv_t
// describe it (inv_t = 1 for greedy).
__device__ __forceinline__ int tree_request_status(const TreeParams& p, int b, int& n_b,
                                                   float& inv_t, bool& greedy) {
  const AspsSampling& sampling = p.call.sampling;
  n_b = ld(p.call.num_nodes + b);
  const float t = ld(sampling.temperature + b);
  // The draft's temperature is checked as a chain's is, though deterministic children read no
  // draft row.
  const float td = sampling.draft_temperature ? ld(sampling.draft_temperature + b) : t;
  if (n_b < 1 || n_b > p.call.max_nodes || n_b > TREE_MAX_NODES) return TREE_BAD_TREE;
  if (!temperature_is_valid(t) || !temperature_is_valid(td)) return REQUEST_BAD_TEMPERATURE;
  inv_t = inv_temperature(t);
  greedy = t == 0.f;
  return ROW_OK;
}

// Launch 1, block (b, u): node u's target row statistics, kept set and its children's gathers.
// Every thread of the block calls it.
template <typename T>
__device__ void tree_row(const TreeParams& p, int b, int u) {
  __shared__ SoftmaxState scratch[32];
  __shared__ SelectScratch select;
  __shared__ Truncation row_truncation;
  __shared__ bool row_truncates;
  __shared__ int request_nodes;  // n_b, or 0 for a request its checks refuse
  __shared__ float request_inv_t;
  __shared__ bool request_greedy;
  // One thread loads the request's parameters for the block.
  if (threadIdx.x == 0) {
    int n_b;
    float inv_t;
    bool greedy;
    const bool ok = tree_request_status(p, b, n_b, inv_t, greedy) == ROW_OK;
    request_nodes = ok ? n_b : 0;
    request_inv_t = inv_t;
    request_greedy = greedy;
  }
  __syncthreads();
  const int n_b = request_nodes;
  if (u >= n_b) return;
  const float inv_t = request_inv_t;
  const bool greedy = request_greedy;
  const int vocab = p.call.vocab;
  const T* row = tree_target_row<T>(p, b, u);
  if (threadIdx.x == 0) {
    const Truncation tr = load_truncation(p.call.sampling.target, b);
    row_truncation = tr;
    row_truncates = !greedy && truncation_is_valid(tr) && !truncation_is_off(tr);
  }
  __syncthreads();
  const Truncation tr = row_truncation;
  const bool truncating = row_truncates;
  TopTiles top = top_tiles_empty();
  SoftmaxState state = truncating ? truncating_row_pass(row, vocab, 0, inv_t, tr, top, select)
                                  : row_softmax_state(row, vocab, 0, inv_t);
  state = softmax_state_block_reduce(state, inv_t, scratch);
  const long long cell = tree_cell(p, b, u);
  if (truncating && softmax_state_status(state) == ROW_OK) {
    float trunc_ln;
    const KeptSet kept =
        truncate_row_after_pass(row, vocab, tr, state.max, state.sum, inv_t, top, select, trunc_ln);
    if (threadIdx.x == 0) {
      st(p.ws.t_theta + cell, kept.theta);
      st(p.ws.t_trunc_ln + cell, trunc_ln);
    }
  }
  // The children's gathers (each child of u, its token in range).
  for (int c = 1 + static_cast<int>(threadIdx.x); c < n_b; c += static_cast<int>(blockDim.x)) {
    if (ld(p.call.parents + tree_cell(p, b, c)) != u) continue;
    const int x = ld(p.call.tokens + tree_cell(p, b, c));
    if (x >= 0 && x < vocab) st(p.ws.t_gather + tree_cell(p, b, c), load_float(row, x));
  }
  if (threadIdx.x != 0) return;
  if (softmax_state_status(state) == ROW_OK) {
    state.arg = lowest_index_of_max(row, vocab, 0, state.arg, state.max);
  }
  st(p.ws.t_max + cell, state.max);
  st(p.ws.t_log_norm + cell, logf(state.sum));
  st(p.ws.t_arg + cell, state.arg);
  st(p.ws.t_flags + cell, state.flags);
}

// What the decide launch's one thread found: the request's status, the accepted node, and
// either the token (greedy) or -1 for the race at that node, without the `excluded` tokens
// (increasing).
struct TreeDecision {
  int status;
  int node;
  int token;
  int n_excluded;
  int excluded[TREE_MAX_NODES];
  // The walk's children of the current node: index, token, mass of the token (0 if repeated).
  int child[TREE_MAX_NODES];
  int child_token[TREE_MAX_NODES];
  double child_p[TREE_MAX_NODES];
  float max, log_norm, theta, log_min_p, inv_t;
  int truncated;
};

// The status of request b's tree (nodes 1..n_b-1): parents before their nodes and tokens in
// range, then every node's row status. One thread.
__device__ __forceinline__ int tree_status(const TreeParams& p, int b, int n_b) {
  for (int c = 1; c < n_b; ++c) {
    const int parent = ld(p.call.parents + tree_cell(p, b, c));
    if (parent < 0 || parent >= c) return TREE_BAD_TREE;
  }
  for (int c = 1; c < n_b; ++c) {
    const int x = ld(p.call.tokens + tree_cell(p, b, c));
    if (x < 0 || x >= p.call.vocab) return ROW_TOKEN_OUT_OF_RANGE;
  }
  for (int u = 0; u < n_b; ++u) {
    const long long cell = tree_cell(p, b, u);
    const SoftmaxState s{ld(p.ws.t_max + cell), 0.f, ld(p.ws.t_flags + cell), 0};
    const int status = softmax_state_status(s);
    if (status != ROW_OK) return status;
  }
  return ROW_OK;
}

// The walk of request b (one thread; the request checked). Greedy: down the argmaxes.
// Deterministic children: RRS's scalar form (the file's header), in double: one thread's
// scalars, no vocabulary loop.
__device__ __forceinline__ void tree_walk(const TreeParams& p, int b, int n_b, bool greedy,
                                          float inv_t, const Truncation& tr, TreeDecision& d) {
  const uint64_t seed = ld(p.call.seeds + b), offset = ld(p.call.offsets + b);
  const float log_min_p = tr.min_p > 0.f ? logf(tr.min_p) : -INFINITY;
  const bool truncated = !greedy && !truncation_is_off(tr);
  int u = 0;
  for (;;) {
    const long long cell = tree_cell(p, b, u);
    const float max = ld(p.ws.t_max + cell);
    const float log_norm = truncated ? ld(p.ws.t_trunc_ln + cell) : ld(p.ws.t_log_norm + cell);
    const float theta = truncated ? ld(p.ws.t_theta + cell) : -INFINITY;
    const KeptSet kept = truncated ? KeptSet{true, theta, log_min_p, max, inv_t} : kept_all();
    const int arg = ld(p.ws.t_arg + cell);
    int next = -1;
    d.n_excluded = 0;
    if (greedy) {
      for (int c = u + 1; c < n_b && next < 0; ++c) {
        if (ld(p.call.parents + tree_cell(p, b, c)) != u) continue;
        if (ld(p.call.tokens + tree_cell(p, b, c)) == arg) next = c;
      }
    } else {
      // u's children in draw order, and the mass of each one's token, counted at its first
      // occurrence only (a repeated token is rejected already when it comes again: p = 0).
      int k = 0;
      double total = 0.0;
      for (int c = u + 1; c < n_b; ++c) {
        if (ld(p.call.parents + tree_cell(p, b, c)) != u) continue;
        const int x = ld(p.call.tokens + tree_cell(p, b, c));
        bool repeated = false;
        for (int i = 0; i < k; ++i) repeated |= d.child_token[i] == x;
        const float g = ld(p.ws.t_gather + tree_cell(p, b, c));
        double p_x = 0.0;
        if (!repeated && is_kept(kept, g)) {
          p_x = exp((static_cast<double>(g) - max) * inv_t - log_norm);
        }
        d.child[k] = c;
        d.child_token[k] = x;
        d.child_p[k] = p_x;
        total += p_x;
        ++k;
      }
      // The mass outside the children's tokens; below what the f32 statistics resolve, none:
      // children that cover the kept set leave the last one an acceptance of exactly 1.
      double leftover = 1.0 - total;
      if (leftover < TREE_MASS_RESOLUTION) leftover = 0.0;
      for (int i = 0; i < k && next < 0; ++i) {
        // R: the mass not yet rejected, summed (not 1 less the rejected masses).
        double remaining = leftover;
        for (int j = i; j < k; ++j) remaining += d.child_p[j];
        const double p_x = d.child_p[i];
        const double accept = remaining > 0.0 ? fmin(1.0, p_x / remaining) : 0.0;
        const int c = d.child[i], x = d.child_token[i];
        const float uniform = scalar_uniform(seed, offset, PURPOSE_TREE_NODE, c);
        if (static_cast<double>(uniform) < accept) {
          next = c;
          continue;
        }
        bool rejected_before = false;
        for (int j = 0; j < d.n_excluded; ++j) rejected_before |= d.excluded[j] == x;
        if (rejected_before) continue;
        // Insert x, keeping the list increasing.
        int j = d.n_excluded++;
        while (j > 0 && d.excluded[j - 1] > x) {
          d.excluded[j] = d.excluded[j - 1];
          --j;
        }
        d.excluded[j] = x;
      }
    }
    if (next >= 0) {
      u = next;
      continue;
    }
    d.node = u;
    d.token = greedy ? arg : -1;
    d.max = max;
    d.log_norm = log_norm;
    d.theta = theta;
    d.log_min_p = log_min_p;
    d.inv_t = inv_t;
    d.truncated = truncated;
    return;
  }
}

// Launch 2, block b: request b's check, walk and race; writes its outputs and advances its
// offset. Every thread of the block calls it.
template <typename T>
__device__ void tree_decide(const TreeParams& p, int b) {
  __shared__ TreeDecision d;
  __shared__ PassScratch scratch;
  if (threadIdx.x == 0) {
    int n_b;
    float inv_t;
    bool greedy;
    d.status = tree_request_status(p, b, n_b, inv_t, greedy);
    d.node = -1;
    d.token = -1;
    const Truncation tt = load_truncation(p.call.sampling.target, b);
    const Truncation dt = load_truncation(p.call.sampling.draft, b);
    if (d.status == ROW_OK) d.status = truncation_status(tt, dt);
    if (d.status == ROW_OK) {
      const int law = ld(p.call.sibling_laws + b);
      const bool known = law >= ASPS_SIBLINGS_WITHOUT_REPLACEMENT && law <= ASPS_SIBLINGS_DETERMINISTIC;
      // Sampled children need draft rows: not verified by these kernels yet.
      if (!known || (!greedy && law != ASPS_SIBLINGS_DETERMINISTIC)) d.status = TREE_BAD_TREE;
    }
    if (d.status == ROW_OK) d.status = tree_status(p, b, n_b);
    if (d.status == ROW_OK) tree_walk(p, b, n_b, greedy, inv_t, tt, d);
  }
  __syncthreads();
  if (d.status == ROW_OK && d.token < 0) {
    const T* row = tree_target_row<T>(p, b, d.node);
    RaceRows rr;
    rr.pt = RowExp{d.max, exp2_factor(d.inv_t), 0.f};
    rr.pd = RowExp{0.f, 0.f, 0.f};
    rr.t_kept = d.truncated ? KeptSet{true, d.theta, d.log_min_p, d.max, d.inv_t} : kept_all();
    rr.d_kept = kept_all();
    rr.x_r = -1;
    rr.excluded = d.excluded;
    rr.n_excluded = d.n_excluded;
    const RaceNoise noise{ld(p.call.seeds + b), ld(p.call.offsets + b), PURPOSE_TREE_EMIT,
                          static_cast<uint32_t>(d.node)};
    const RowResult result =
        d.truncated ? race_pass<RACE_EXCLUDING, true>(row, row, p.call.vocab, 0, rr, noise, scratch)
                    : race_pass<RACE_EXCLUDING, false>(row, row, p.call.vocab, 0, rr, noise, scratch);
    if (threadIdx.x == 0) {
      if (result.race.token < 0) {
        d.status = REQUEST_NO_OUTCOME;
      } else {
        d.token = result.race.token;
      }
    }
  }
  if (threadIdx.x != 0) return;
  int depth = 0;
  if (d.status == ROW_OK) {
    for (int v = d.node; v != 0; v = ld(p.call.parents + tree_cell(p, b, v))) ++depth;
  }
  const bool ok = d.status == ROW_OK;
  st(p.call.out_node + b, ok ? d.node : -1);
  st(p.call.out_token + b, ok ? d.token : -1);
  st(p.call.out_num_emitted + b, ok ? depth + 1 : 0);
  st(p.call.out_status + b, d.status);
  st(p.call.offsets + b, ld(p.call.offsets + b) + 1);
}

}  // namespace asps

#define ASPS_TREE_KERNELS(SUFFIX, T)                                                      \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                      \
      asps_tree_rows_##SUFFIX(asps::TreeParams p) {                                       \
    asps::tree_row<T>(p, static_cast<int>(blockIdx.x) / p.call.max_nodes,                 \
                      static_cast<int>(blockIdx.x) % p.call.max_nodes);                   \
  }                                                                                       \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                      \
      asps_tree_decide_##SUFFIX(asps::TreeParams p) {                                     \
    asps::tree_decide<T>(p, static_cast<int>(blockIdx.x));                                \
  }

ASPS_TREE_KERNELS(f32, float)
ASPS_TREE_KERNELS(f16, __half)
ASPS_TREE_KERNELS(bf16, __nv_bfloat16)
