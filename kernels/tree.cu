// Draft trees (docs/design.md, "Draft trees"): batched, ragged verification of one tree per
// request, in two launches. The noise is that of src/reference/tree_sample.rs, keyed by the
// request's seed and offset and by node indices, never by the request's place in the batch.
//
//   1. rows:   one block per (request, node, model; the draft's blocks only in calls with
//              draft logits): the node's target row statistics (max, sum, argmax, NaN/+inf
//              flags) at the request's temperature, its kept set when the request truncates
//              the target's rows (kernels/truncate.cuh), and the gather, for
//              each child of the node, of the row's logit at the child's token; for requests
//              whose children were drawn from draft rows, the same for each internal node's
//              draft row (at the draft's temperature and truncation).
//   2. decide: one block per request: one thread checks the request and its tree and walks it;
//              the block runs the passes the walk needs, then the race that draws the token
//              after the accepted node.
//              - temperature 0: greedy, down the first child holding the row's argmax; that
//                argmax follows the last node (no pass).
//              - deterministic children (the draft's most probable tokens, as EAGLE drafts):
//                recursive rejection sampling in its scalar form, which is also TV's law here,
//                with scalars only. At node u, child c of token x is accepted when
//                U(TreeNode, c) < min(1, p_u(x) / R) (0 for a token already rejected at u),
//                R the mass not yet rejected, and the walk descends into it. R is summed, not
//                formed as 1 less the rejected masses: the mass outside the children's tokens
//                (none below what the f32 statistics resolve, TREE_MASS_RESOLUTION) plus that
//                of the children not yet tried, so children that cover u's kept set leave the
//                last one an acceptance of exactly 1, as in the reference. A node whose
//                children are all rejected, or a leaf, emits the race over p_u without the
//                rejected tokens, in the stream (TreeEmit, u).
//              - children drawn from draft rows, without or with replacement: Traversal
//                Verification, lazily. The walk goes through the post-order keeping each
//                entered node's state (lambda, R, w, m) on a stack: a child is entered with
//                w = min(1, w rho) from the gathers (a subtree entered with w = 0 is skipped:
//                none of its stages can accept), a node's stage accepts when U(TreeNode, u) < w
//                (the root's always), and each rejection of a child of a live node is one pass
//                over that node's two rows for R' and A. The accepted node emits the race over
//                max(0, p - lambda q). So a call reads the rows once, plus two rows per
//                rejection met before the first stage that accepts.
//              - the same children under recursive rejection sampling (rule 1): from the root
//                down, each rejection a pass over the node's two rows for the residual's mass
//                (rrs_walk), and the race over the law the node holds after its rejections.

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
constexpr int TREE_BAD_TREE = ASPS_REQUEST_BAD_TREE;
// A node's mass (1) that its statistics resolve: a token's probability from an f32
// log-normaliser is good to about 1e-6 of it (docs/design.md, "Draft trees").
constexpr double TREE_MASS_RESOLUTION = 1e-5;
// The largest finite float, as a double.
constexpr double TREE_FLOAT_MAX = 3.4028234663852886e38;

__device__ __forceinline__ long long tree_cell(const TreeParams& p, int b, int u) {
  return static_cast<long long>(b) * p.call.max_nodes + u;
}

template <typename T>
__device__ __forceinline__ const T* tree_target_row(const TreeParams& p, int b, int u) {
  return logits_row<T>(p.call.target_logits, p.call.target_batch_stride,
                       p.call.target_node_stride, b, u);
}

// Request b's node count, temperatures and sibling law: ROW_OK, or its status. On ROW_OK they
// describe it (1/T = 1 for a temperature of 0). Children drawn from draft rows (`sampled`)
// need the draft's rows: at a positive target temperature, with a known law other than
// deterministic.
struct TreeRequest {
  int n_b;
  float inv_t, inv_td;
  bool greedy, draft_greedy, sampled;
  int law;
};

__device__ __forceinline__ int tree_request_status(const TreeParams& p, int b, TreeRequest& rq) {
  const AspsSampling& sampling = p.call.sampling;
  // Every field defined, whatever the status (the caller's copy may be shared memory).
  rq = TreeRequest{};
  rq.n_b = ld(p.call.num_nodes + b);
  const float t = ld(sampling.temperature + b);
  const float td = sampling.draft_temperature ? ld(sampling.draft_temperature + b) : t;
  if (rq.n_b < 1 || rq.n_b > p.call.max_nodes || rq.n_b > TREE_MAX_NODES) return TREE_BAD_TREE;
  if (!temperature_is_valid(t) || !temperature_is_valid(td)) return REQUEST_BAD_TEMPERATURE;
  rq.inv_t = inv_temperature(t);
  rq.inv_td = inv_temperature(td);
  rq.greedy = t == 0.f;
  rq.draft_greedy = td == 0.f;
  rq.law = ld(p.call.sibling_laws + b);
  rq.sampled = !rq.greedy && (rq.law == ASPS_SIBLINGS_WITHOUT_REPLACEMENT ||
                              rq.law == ASPS_SIBLINGS_WITH_REPLACEMENT);
  // Children drawn from draft rows need them: a call without draft logits cannot verify them
  // (a lone root has none to read).
  if (rq.sampled && rq.n_b > 1 && p.call.draft_logits == nullptr) return TREE_BAD_TREE;
  return ROW_OK;
}

template <typename T>
__device__ __forceinline__ const T* tree_draft_row(const TreeParams& p, int b, int u) {
  return logits_row<T>(p.call.draft_logits, p.call.draft_batch_stride, p.call.draft_node_stride,
                       b, u);
}

// Inserts x into the `n` increasing tokens of `list`, keeping them increasing. One thread.
__device__ __forceinline__ void insert_sorted(int* list, int& n, int x) {
  int j = n++;
  while (j > 0 && list[j - 1] > x) {
    list[j] = list[j - 1];
    --j;
  }
  list[j] = x;
}

// Whether node u of request b has a child (n_b nodes). One thread.
__device__ __forceinline__ bool has_child(const TreeParams& p, int b, int u, int n_b) {
  for (int c = u + 1; c < n_b; ++c) {
    if (ld(p.call.parents + tree_cell(p, b, c)) == u) return true;
  }
  return false;
}

// Launch 1, block (b, u, model): node u's target row (or, for a request whose children were
// drawn from draft rows, an internal node's draft row): its statistics, kept set and its
// children's gathers. Every thread of the block calls it.
template <typename T>
__device__ void tree_row(const TreeParams& p, int b, int u, bool draft) {
  __shared__ SoftmaxState scratch[32];
  __shared__ SelectScratch select;
  __shared__ Truncation row_truncation;
  __shared__ bool row_truncates;
  __shared__ int request_nodes;  // n_b, or 0 when the block has no row to read
  __shared__ float request_inv_t;
  // One thread loads the request's parameters for the block.
  if (threadIdx.x == 0) {
    TreeRequest rq{};
    bool read = tree_request_status(p, b, rq) == ROW_OK && u < rq.n_b;
    // A draft row is read for an internal node whose children were drawn from it.
    if (read && draft) read = rq.sampled && !rq.draft_greedy && has_child(p, b, u, rq.n_b);
    const float t = ld((draft && p.call.sampling.draft_temperature
                            ? p.call.sampling.draft_temperature
                            : p.call.sampling.temperature) + b);
    const Truncation tr = load_truncation(draft ? p.call.sampling.draft : p.call.sampling.target, b);
    request_nodes = read ? rq.n_b : 0;
    request_inv_t = draft ? rq.inv_td : rq.inv_t;
    row_truncation = tr;
    row_truncates = read && t > 0.f && truncation_is_valid(tr) && !truncation_is_off(tr);
  }
  __syncthreads();
  const int n_b = request_nodes;
  if (n_b == 0) return;
  const float inv_t = request_inv_t;
  const int vocab = p.call.vocab;
  const T* row = draft ? tree_draft_row<T>(p, b, u) : tree_target_row<T>(p, b, u);
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
      st((draft ? p.ws.d_theta : p.ws.t_theta) + cell, kept.theta);
      st((draft ? p.ws.d_trunc_ln : p.ws.t_trunc_ln) + cell, trunc_ln);
    }
  }
  // The children's gathers (each child of u, its token in range).
  for (int c = 1 + static_cast<int>(threadIdx.x); c < n_b; c += static_cast<int>(blockDim.x)) {
    if (ld(p.call.parents + tree_cell(p, b, c)) != u) continue;
    const int x = ld(p.call.tokens + tree_cell(p, b, c));
    if (x >= 0 && x < vocab) {
      st((draft ? p.ws.d_gather : p.ws.t_gather) + tree_cell(p, b, c), load_float(row, x));
    }
  }
  if (threadIdx.x != 0) return;
  if (draft) {
    st(p.ws.d_max + cell, state.max);
    st(p.ws.d_log_norm + cell, logf(state.sum));
    st(p.ws.d_flags + cell, state.flags);
    return;
  }
  if (softmax_state_status(state) == ROW_OK) {
    state.arg = lowest_index_of_max(row, vocab, 0, state.arg, state.max);
  }
  st(p.ws.t_max + cell, state.max);
  st(p.ws.t_log_norm + cell, logf(state.sum));
  st(p.ws.t_arg + cell, state.arg);
  st(p.ws.t_flags + cell, state.flags);
}

// What the decide launch's one thread found: the request's status and parameters, the accepted
// node, and either the token (greedy) or -1 for the race at that node: for deterministic
// children without the `excluded` tokens (increasing), for TV over max(0, p - lambda q).
struct TreeDecision {
  int status;
  int node;
  int token;
  TreeRequest rq;
  int n_excluded;
  int excluded[TREE_MAX_NODES];
  // The walk's children of the current node: index, token, mass of the token (0 if repeated).
  int child[TREE_MAX_NODES];
  int child_token[TREE_MAX_NODES];
  double child_p[TREE_MAX_NODES];
  // Whether the request truncates each model's rows, and ln min_p of each.
  int truncated, d_truncated;
  float log_min_p, d_log_min_p;
  // TV: the accepted node's lambda (0: its emission is the target row alone).
  double lambda;
  // RRS over children drawn from draft rows: the accepted node's rejections (its law's steps).
  int rrs_k;
  double rrs_log2_m[TREE_MAX_NODES + 1];  // log2 of m before each rejection (m_0 = 1)
  float rrs_m_ratio[TREE_MAX_NODES];       // m_k / m_j, j < k
  float rrs_inv_z[TREE_MAX_NODES];
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

// A node's rows as the walks and races read them: each model's max, log-normaliser (of its kept
// set when the request truncates that model) and kept set; the draft's only with `draft`, for
// a node with children drawn from its draft row (its cells are not written otherwise: a leaf's,
// or any node's of a request whose children are deterministic).
struct NodeRows {
  float t_max, t_log_norm, d_max, d_log_norm;
  KeptSet t_kept, d_kept;
};

__device__ __forceinline__ NodeRows node_rows(const TreeParams& p, int b, int u,
                                              const TreeDecision& d, bool draft) {
  const long long cell = tree_cell(p, b, u);
  NodeRows r{};
  r.t_max = ld(p.ws.t_max + cell);
  r.t_log_norm = d.truncated ? ld(p.ws.t_trunc_ln + cell) : ld(p.ws.t_log_norm + cell);
  r.t_kept = d.truncated ? KeptSet{true, ld(p.ws.t_theta + cell), d.log_min_p, r.t_max, d.rq.inv_t}
                         : kept_all();
  r.d_kept = kept_all();
  if (!draft) return r;
  r.d_max = ld(p.ws.d_max + cell);
  r.d_log_norm = d.d_truncated ? ld(p.ws.d_trunc_ln + cell) : ld(p.ws.d_log_norm + cell);
  if (d.d_truncated) {
    r.d_kept = KeptSet{true, ld(p.ws.d_theta + cell), d.d_log_min_p, r.d_max, d.rq.inv_td};
  }
  return r;
}

// A probability from a gathered logit g, in double: 0 outside the kept set.
__device__ __forceinline__ double gathered_p(float g, float max, float log_norm, float inv_t,
                                             const KeptSet& kept) {
  if (!is_kept(kept, g)) return 0.0;
  return exp((static_cast<double>(g) - max) * inv_t - log_norm);
}

// The statuses of a request whose children were drawn from draft rows: a drafter that samples,
// no token twice among children drawn without replacement, every internal node's draft row, and
// every child a token its parent's draft row can draw (q > 0). One thread.
__device__ __forceinline__ int sampled_tree_status(const TreeParams& p, int b,
                                                   const TreeDecision& d) {
  const TreeRequest& rq = d.rq;
  if (rq.draft_greedy) return TREE_BAD_TREE;
  for (int c = 2; c < rq.n_b && rq.law == ASPS_SIBLINGS_WITHOUT_REPLACEMENT; ++c) {
    const int parent = ld(p.call.parents + tree_cell(p, b, c));
    const int x = ld(p.call.tokens + tree_cell(p, b, c));
    for (int e = 1; e < c; ++e) {
      if (ld(p.call.parents + tree_cell(p, b, e)) == parent &&
          ld(p.call.tokens + tree_cell(p, b, e)) == x) {
        return TREE_BAD_TREE;
      }
    }
  }
  for (int u = 0; u < rq.n_b; ++u) {
    if (!has_child(p, b, u, rq.n_b)) continue;
    const long long cell = tree_cell(p, b, u);
    const SoftmaxState s{ld(p.ws.d_max + cell), 0.f, ld(p.ws.d_flags + cell), 0};
    const int status = softmax_state_status(s);
    if (status != ROW_OK) return status;
  }
  for (int c = 1; c < rq.n_b; ++c) {
    const int u = ld(p.call.parents + tree_cell(p, b, c));
    const NodeRows rows = node_rows(p, b, u, d, d.rq.sampled);
    const float g = ld(p.ws.d_gather + tree_cell(p, b, c));
    if (!(gathered_p(g, rows.d_max, rows.d_log_norm, rq.inv_td, rows.d_kept) > 0.0)) {
      return ROW_IMPOSSIBLE_TOKEN;
    }
  }
  return ROW_OK;
}

// The walk of request b (one thread; the request checked). Greedy: down the argmaxes.
// Deterministic children: RRS's scalar form (the file's header), in double: one thread's
// scalars, no vocabulary loop.
__device__ __forceinline__ void tree_walk(const TreeParams& p, int b, TreeDecision& d) {
  const uint64_t seed = ld(p.call.seeds + b), offset = ld(p.call.offsets + b);
  const int n_b = d.rq.n_b;
  const bool greedy = d.rq.greedy;
  int u = 0;
  for (;;) {
    const NodeRows rows = node_rows(p, b, u, d, d.rq.sampled);
    const int arg = ld(p.ws.t_arg + tree_cell(p, b, u));
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
        const double p_x =
            repeated ? 0.0 : gathered_p(g, rows.t_max, rows.t_log_norm, d.rq.inv_t, rows.t_kept);
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
        if (!rejected_before) insert_sorted(d.excluded, d.n_excluded, x);
      }
    }
    if (next >= 0) {
      u = next;
      continue;
    }
    d.node = u;
    d.token = greedy ? arg : -1;
    return;
  }
}

// A TV node's state (docs/design.md, "Draft trees"), on the walk's stack: its node, the last
// child tried, and lambda, R, w, m.
struct TvFrame {
  int u, last;
  double lambda, r, w, m;
};

// The TV walk's shared state: the stack of nodes entered, what the block does next, and the
// parameters and results of a rejection pass (node u's rows, after its child of token x).
struct TvWalk {
  TvFrame stack[TREE_MAX_NODES];
  int depth;
  int action;  // TV_PASS or TV_DONE
  bool pending;
  int node, token;
  double lambda_next;  // lambda' in double, for the frame; the pass reads it as a float
  float lambda, lambda_new, w_over_r, inv_m;
  int n_drawn;
  int drawn[TREE_MAX_NODES];
  float r_new, a, m_rest;
};

enum : int { TV_PASS = 1, TV_DONE = 2 };

// A dead node gives its children w = 0 and rejects them without a pass: w = 0 or R = 0, or
// m = 0 (no draft mass left: a later child could not have been drawn, and lambda' would be
// infinite).
__device__ __forceinline__ bool tv_dead(const TvFrame& f) {
  return f.w <= 0.0 || f.r <= 0.0 || f.m <= 0.0;
}

// Sets up the pass that rejects child c (token x) of the top frame: lambda' = lambda + R / (w m);
// the sibling law before this rejection: q on the tokens not drawn before x (without
// replacement: u's earlier children's tokens, increasing), divided by m. One thread.
__device__ __forceinline__ void tv_reject(const TreeParams& p, int b, const TreeDecision& d,
                                          TvWalk& w, int c) {
  const TvFrame& f = w.stack[w.depth - 1];
  w.node = f.u;
  w.token = ld(p.call.tokens + tree_cell(p, b, c));
  // The pass's factors in f32, clamped to its largest finite value (lambda * 0 must stay 0).
  w.lambda = static_cast<float>(fmin(f.lambda, TREE_FLOAT_MAX));
  w.lambda_next = f.lambda + f.r / (f.w * f.m);
  w.lambda_new = static_cast<float>(fmin(w.lambda_next, TREE_FLOAT_MAX));
  w.w_over_r = static_cast<float>(fmin(f.w / f.r, TREE_FLOAT_MAX));
  w.inv_m = static_cast<float>(fmin(1.0 / f.m, TREE_FLOAT_MAX));
  w.n_drawn = 0;
  if (d.rq.law == ASPS_SIBLINGS_WITHOUT_REPLACEMENT) {
    for (int e = f.u + 1; e < c; ++e) {
      if (ld(p.call.parents + tree_cell(p, b, e)) != f.u) continue;
      insert_sorted(w.drawn, w.n_drawn, ld(p.call.tokens + tree_cell(p, b, e)));
    }
  }
  w.action = TV_PASS;
  w.pending = true;
}

// The TV walk's scalar steps (one thread), from where the last pass left it: applies that pass's
// rejection to the top frame, then moves through the post-order (entering children with
// w = min(1, w rho), skipping subtrees entered with w = 0, testing stages) until the next
// rejection needs a pass over a node's rows, or a stage accepts (TV_DONE, d.node and d.lambda
// set). A dead node (w = 0 or R = 0) rejects without a pass.
__device__ __forceinline__ void tv_step(const TreeParams& p, int b, TreeDecision& d, TvWalk& w) {
  const uint64_t seed = ld(p.call.seeds + b), offset = ld(p.call.offsets + b);
  if (w.pending) {
    TvFrame& f = w.stack[w.depth - 1];
    const double a = w.a;
    const double r_new = w.r_new;
    f.w = a > 0.0 ? (f.w * r_new / f.r) / a : 0.0;
    f.lambda = w.lambda_next;
    f.r = r_new;
    // m: the draft's mass off the tokens drawn so far, summed by the pass (1 less their masses
    // would leave a confident draft's m to rounding, or at 0).
    if (d.rq.law == ASPS_SIBLINGS_WITHOUT_REPLACEMENT) f.m = w.m_rest;
    w.pending = false;
  }
  for (;;) {
    TvFrame& f = w.stack[w.depth - 1];
    int c = f.last + 1;
    while (c < d.rq.n_b && ld(p.call.parents + tree_cell(p, b, c)) != f.u) ++c;
    if (c < d.rq.n_b) {
      f.last = c;
      double w_child = 0.0;
      if (!tv_dead(f)) {
        const NodeRows rows = node_rows(p, b, f.u, d, d.rq.sampled);
        const float gt = ld(p.ws.t_gather + tree_cell(p, b, c));
        const float gd = ld(p.ws.d_gather + tree_cell(p, b, c));
        const double p_x = gathered_p(gt, rows.t_max, rows.t_log_norm, d.rq.inv_t, rows.t_kept);
        const double q_x = gathered_p(gd, rows.d_max, rows.d_log_norm, d.rq.inv_td, rows.d_kept);
        const double rho = f.m * fmax(0.0, p_x - f.lambda * q_x) / (f.r * q_x);
        w_child = fmin(1.0, f.w * rho);
      }
      if (w_child > 0.0) {
        w.stack[w.depth++] = TvFrame{c, c, 0.0, 1.0, w_child, 1.0};
        continue;
      }
      // The child's subtree holds no stage that can accept: rejected at once.
      if (tv_dead(f)) {
        f.w = 0.0;
        continue;
      }
      tv_reject(p, b, d, w, c);
      return;
    }
    // u's own stage (every child rejected).
    const double accept = f.r > 0.0 ? fmin(fmax(f.w, 0.0), 1.0) : 0.0;
    if (f.u == 0 || static_cast<double>(scalar_uniform(seed, offset, PURPOSE_TREE_NODE, f.u)) < accept) {
      d.node = f.u;
      d.lambda = f.lambda;
      w.action = TV_DONE;
      return;
    }
    const int rejected = f.u;
    --w.depth;
    TvFrame& parent = w.stack[w.depth - 1];
    if (tv_dead(parent)) {
      parent.w = 0.0;
      continue;
    }
    tv_reject(p, b, d, w, rejected);
    return;
  }
}

// The rejection pass over node w.node's rows (every thread): R' = sum max(0, p - lambda' q),
// A = sum max(0, M - (w / R) max(0, p - lambda q)), M the sibling law (q / m off the drawn
// tokens), and the draft's mass off the drawn tokens and x, the next m without replacement;
// each summed in f32 by the block in a fixed order.
template <typename T, bool TRUNC>
__device__ __forceinline__ void tv_pass(const T* trow, const T* drow, int vocab,
                                        const NodeRows& rows, const TreeDecision& d, TvWalk& w,
                                        PassScratch& scratch) {
  const RowExp pt{rows.t_max, exp2_factor(d.rq.inv_t), rows.t_log_norm * LOG2E};
  const RowExp pd{rows.d_max, exp2_factor(d.rq.inv_td), rows.d_log_norm * LOG2E};
  RaceRows drawn;
  drawn.excluded = w.drawn;
  drawn.n_excluded = w.n_drawn;
  const float lambda = w.lambda, lambda_new = w.lambda_new, w_over_r = w.w_over_r;
  const float inv_m = w.inv_m;
  const int x_rejected = w.token;
  float r_sum = 0.f, a_sum = 0.f, m_sum = 0.f;
  for_each_tile_pair(trow, drow, vocab, [&](int t, const float (&x)[TILE], const float (&y)[TILE]) {
    const unsigned mask = excluded_in_tile(drawn, t);
    const int k = x_rejected - t * TILE;
#pragma unroll
    for (int i = 0; i < TILE; ++i) {
      const float pv = kept_weight<TRUNC>(rows.t_kept, x[i], pt(x[i]));
      const float qv = kept_weight<TRUNC>(rows.d_kept, y[i], pd(y[i]));
      r_sum += fmaxf(pv - lambda_new * qv, 0.f);
      const bool drawn_before = (mask >> i) & 1u;
      const float m = drawn_before ? 0.f : qv * inv_m;
      a_sum += fmaxf(m - w_over_r * fmaxf(pv - lambda * qv, 0.f), 0.f);
      m_sum += drawn_before || i == k ? 0.f : qv;
    }
  });
  r_sum = block_reduce(r_sum, SumMerge{}, 0.f, scratch.sum);
  a_sum = block_reduce(a_sum, SumMerge{}, 0.f, scratch.sum);
  m_sum = block_reduce(m_sum, SumMerge{}, 0.f, scratch.sum);
  if (threadIdx.x == 0) {
    w.r_new = r_sum;
    w.a = a_sum;
    w.m_rest = m_sum;
  }
}

// TV over children drawn from draft rows (every thread): the scalar steps by one thread, the
// rejection passes by the block, until a stage accepts.
template <typename T>
__device__ void tv_walk(const TreeParams& p, int b, TreeDecision& d, TvWalk& w,
                        PassScratch& scratch) {
  if (threadIdx.x == 0) {
    w.depth = 1;
    w.stack[0] = TvFrame{0, 0, 0.0, 1.0, 1.0, 1.0};
    w.pending = false;
  }
  for (;;) {
    if (threadIdx.x == 0) tv_step(p, b, d, w);
    __syncthreads();
    if (w.action == TV_DONE) return;
    const NodeRows rows = node_rows(p, b, w.node, d, d.rq.sampled);
    const T* trow = tree_target_row<T>(p, b, w.node);
    const T* drow = tree_draft_row<T>(p, b, w.node);
    if (d.truncated || d.d_truncated) {
      tv_pass<T, true>(trow, drow, p.call.vocab, rows, d, w, scratch);
    } else {
      tv_pass<T, false>(trow, drow, p.call.vocab, rows, d, w, scratch);
    }
    __syncthreads();
  }
}

// RRS over children drawn from draft rows (every thread): from the root down, child c of token x
// is accepted when U(TreeNode, c) < min(1, p_k(x) / M(x)), p_k the node's law after its k
// rejections so far (rrs_law: the per-token recursion, exact at a token, which the scalar
// thread evaluates in double at x) and M the sibling law (q / m off the tokens drawn before,
// without replacement; q with); each rejection is one pass over the node's two rows for Z (the
// residual's mass) and, without replacement, the next m. A drawn token weighs 0 once rejected
// (p_k(x) < M(x) then, so max(0, p - M) is 0 there). The node where the walk stops races over
// p_k (RACE_RRS).
struct RrsWalk {
  int u, last, action;
  int token;
  float z, m_rest;
};

// The rows of RRS's law at a node after its rejections so far: p, q / m_k (the log of m_k in
// the exponent, so that a confident draft's remaining q stays in range), the kept sets, and the
// recursion's factors.
__device__ __forceinline__ RaceRows rrs_rows(const NodeRows& rows, const TreeDecision& d) {
  RaceRows rr;
  rr.pt = RowExp{rows.t_max, exp2_factor(d.rq.inv_t), rows.t_log_norm * LOG2E};
  rr.pd = RowExp{rows.d_max, exp2_factor(d.rq.inv_td),
                 rows.d_log_norm * LOG2E + static_cast<float>(d.rrs_log2_m[d.rrs_k])};
  rr.t_kept = rows.t_kept;
  rr.d_kept = rows.d_kept;
  rr.x_r = -1;
  rr.excluded = d.excluded;
  rr.n_excluded = d.n_excluded;
  rr.rrs_k = d.rrs_k;
  rr.rrs_m_ratio = d.rrs_m_ratio;
  rr.rrs_inv_z = d.rrs_inv_z;
  return rr;
}

template <typename T, bool TRUNC>
__device__ __forceinline__ void rrs_pass(const T* trow, const T* drow, int vocab,
                                         const NodeRows& rows, TreeDecision& d, RrsWalk& w,
                                         PassScratch& scratch) {
  RaceRows rr = rrs_rows(rows, d);
  rr.excluded = d.excluded;  // the drawn tokens, this one included
  rr.n_excluded = d.n_excluded;
  float z = 0.f, m = 0.f;
  for_each_tile_pair(trow, drow, vocab, [&](int t, const float (&x)[TILE], const float (&y)[TILE]) {
    const unsigned mask = excluded_in_tile(rr, t);
#pragma unroll
    for (int i = 0; i < TILE; ++i) {
      if ((mask >> i) & 1u) continue;
      const float pv = kept_weight<TRUNC>(rr.t_kept, x[i], rr.pt(x[i]));
      const float qv = kept_weight<TRUNC>(rr.d_kept, y[i], rr.pd(y[i]));
      z += fmaxf(rrs_law(rr, pv, qv) - qv, 0.f);  // M = q / m_k
      m += qv;
    }
  });
  z = block_reduce(z, SumMerge{}, 0.f, scratch.sum);
  m = block_reduce(m, SumMerge{}, 0.f, scratch.sum);
  if (threadIdx.x == 0) {
    w.z = z;
    w.m_rest = m;
  }
}

// The RRS walk's scalar steps (one thread): applies the last pass's Z and m, then tries the
// current node's next children until one needs a pass (a rejection) or the walk stops at a
// node (TV_DONE, d.node set).
__device__ __forceinline__ void rrs_step(const TreeParams& p, int b, TreeDecision& d, RrsWalk& w,
                                         bool pending) {
  const uint64_t seed = ld(p.call.seeds + b), offset = ld(p.call.offsets + b);
  const bool wor = d.rq.law == ASPS_SIBLINGS_WITHOUT_REPLACEMENT;
  if (pending) {
    const int k = d.rrs_k;
    d.rrs_inv_z[k] = w.z > 0.f ? static_cast<float>(fmin(1.0 / w.z, TREE_FLOAT_MAX)) : 0.f;
    // m_{k+1} = m_k times the pass's sum of q / m_k off the drawn tokens (kept when that sum is
    // 0: q is 0 wherever a later law would weigh, whatever the scale).
    const bool sum = wor && w.m_rest > 0.f;
    d.rrs_log2_m[k + 1] =
        sum ? d.rrs_log2_m[k] + log2(static_cast<double>(w.m_rest)) : d.rrs_log2_m[k];
    d.rrs_k = k + 1;
    for (int j = 0; j <= k; ++j) {
      d.rrs_m_ratio[j] = static_cast<float>(exp2(d.rrs_log2_m[k + 1] - d.rrs_log2_m[j]));
    }
  }
  for (;;) {
    int c = w.last + 1;
    while (c < d.rq.n_b && ld(p.call.parents + tree_cell(p, b, c)) != w.u) ++c;
    if (c >= d.rq.n_b) {
      d.node = w.u;
      w.action = TV_DONE;
      return;
    }
    w.last = c;
    const NodeRows rows = node_rows(p, b, w.u, d, d.rq.sampled);
    const int x = ld(p.call.tokens + tree_cell(p, b, c));
    const float gt = ld(p.ws.t_gather + tree_cell(p, b, c));
    const float gd = ld(p.ws.d_gather + tree_cell(p, b, c));
    const double q_x = gathered_p(gd, rows.d_max, rows.d_log_norm, d.rq.inv_td, rows.d_kept);
    bool drawn = false;
    for (int j = 0; j < d.n_excluded; ++j) drawn |= d.excluded[j] == x;
    double p_x = 0.0;
    if (!drawn) {
      p_x = gathered_p(gt, rows.t_max, rows.t_log_norm, d.rq.inv_t, rows.t_kept);
      for (int j = 0; j < d.rrs_k; ++j) {
        p_x = fmax(p_x - q_x * exp2(-d.rrs_log2_m[j]), 0.0) * d.rrs_inv_z[j];
      }
    }
    const double m_x = q_x * exp2(-d.rrs_log2_m[d.rrs_k]);
    const double accept = m_x > 0.0 ? fmin(1.0, p_x / m_x) : 0.0;
    if (static_cast<double>(scalar_uniform(seed, offset, PURPOSE_TREE_NODE, c)) < accept) {
      // Into the child, with its own rows and no rejection yet.
      w.u = c;
      w.last = c;
      d.rrs_k = 0;
      d.rrs_log2_m[0] = 0.0;
      d.n_excluded = 0;
      continue;
    }
    // Insert x among the drawn tokens, keeping them increasing (with replacement a token may
    // come twice; it weighs 0 either way).
    insert_sorted(d.excluded, d.n_excluded, x);
    w.token = x;
    w.action = TV_PASS;
    return;
  }
}

template <typename T>
__device__ void rrs_walk(const TreeParams& p, int b, TreeDecision& d, RrsWalk& w,
                         PassScratch& scratch) {
  if (threadIdx.x == 0) {
    w.u = 0;
    w.last = 0;
    d.rrs_k = 0;
    d.rrs_log2_m[0] = 0.0;
    d.n_excluded = 0;
  }
  bool pending = false;
  for (;;) {
    if (threadIdx.x == 0) rrs_step(p, b, d, w, pending);
    __syncthreads();
    if (w.action == TV_DONE) return;
    const NodeRows rows = node_rows(p, b, w.u, d, d.rq.sampled);
    const T* trow = tree_target_row<T>(p, b, w.u);
    const T* drow = tree_draft_row<T>(p, b, w.u);
    if (d.truncated || d.d_truncated) {
      rrs_pass<T, true>(trow, drow, p.call.vocab, rows, d, w, scratch);
    } else {
      rrs_pass<T, false>(trow, drow, p.call.vocab, rows, d, w, scratch);
    }
    pending = true;
    __syncthreads();
  }
}

// The race that draws the token after the accepted node (every thread): for deterministic
// children over p without the rejected tokens; for TV over max(0, p - lambda q) (a residual
// race with p scaled by 1 / lambda: a common factor moves no key), or p alone at lambda = 0 (a
// leaf). In the stream (TreeEmit, node).
template <typename T>
__device__ __forceinline__ RowResult tree_race(const TreeParams& p, int b, const TreeDecision& d,
                                               PassScratch& scratch) {
  const T* row = tree_target_row<T>(p, b, d.node);
  const RaceNoise noise{ld(p.call.seeds + b), ld(p.call.offsets + b), PURPOSE_TREE_EMIT,
                        static_cast<uint32_t>(d.node)};
  RaceRows rr;
  rr.pd = RowExp{0.f, 0.f, 0.f};
  rr.d_kept = kept_all();
  rr.x_r = -1;
  rr.excluded = d.excluded;
  rr.n_excluded = 0;
  rr.rrs_k = 0;
  rr.rrs_m_ratio = nullptr;
  rr.rrs_inv_z = nullptr;
  const int vocab = p.call.vocab;
  // A leaf's draft cells were never written (and its race reads no draft row).
  const NodeRows rows =
      node_rows(p, b, d.node, d, d.rq.sampled && has_child(p, b, d.node, d.rq.n_b));
  rr.t_kept = rows.t_kept;
  if (!d.rq.sampled) {
    rr.pt = RowExp{rows.t_max, exp2_factor(d.rq.inv_t), 0.f};
    rr.n_excluded = d.n_excluded;
    return d.truncated ? race_pass<RACE_EXCLUDING, true>(row, row, vocab, 0, rr, noise, scratch)
                       : race_pass<RACE_EXCLUDING, false>(row, row, vocab, 0, rr, noise, scratch);
  }
  if (p.call.rule == 1 && d.rrs_k > 0) {
    const RaceRows rrs = rrs_rows(rows, d);
    const T* drow = tree_draft_row<T>(p, b, d.node);
    return d.truncated || d.d_truncated
               ? race_pass<RACE_RRS, true>(row, drow, vocab, 0, rrs, noise, scratch)
               : race_pass<RACE_RRS, false>(row, drow, vocab, 0, rrs, noise, scratch);
  }
  if (p.call.rule == 1 || !(d.lambda > 0.0)) {
    rr.pt = RowExp{rows.t_max, exp2_factor(d.rq.inv_t), 0.f};
    return d.truncated ? race_pass<RACE_BONUS, true>(row, row, vocab, 0, rr, noise, scratch)
                       : race_pass<RACE_BONUS, false>(row, row, vocab, 0, rr, noise, scratch);
  }
  // log2(lambda) in double: lambda may pass the largest float.
  const float log2_lambda = static_cast<float>(log2(d.lambda));
  rr.pt = RowExp{rows.t_max, exp2_factor(d.rq.inv_t), rows.t_log_norm * LOG2E + log2_lambda};
  rr.pd = RowExp{rows.d_max, exp2_factor(d.rq.inv_td), rows.d_log_norm * LOG2E};
  rr.d_kept = rows.d_kept;
  const T* drow = tree_draft_row<T>(p, b, d.node);
  return d.truncated || d.d_truncated
             ? race_pass<RACE_RESIDUAL, true>(row, drow, vocab, 0, rr, noise, scratch)
             : race_pass<RACE_RESIDUAL, false>(row, drow, vocab, 0, rr, noise, scratch);
}

// Launch 2, block b: request b's check, walk and race; writes its outputs and advances its
// offset. Every thread of the block calls it.
template <typename T>
__device__ void tree_decide(const TreeParams& p, int b) {
  __shared__ TreeDecision d;
  __shared__ TvWalk w;
  __shared__ RrsWalk rw;
  __shared__ PassScratch scratch;
  if (threadIdx.x == 0) {
    d.status = tree_request_status(p, b, d.rq);
    d.node = -1;
    d.token = -1;
    const Truncation tt = load_truncation(p.call.sampling.target, b);
    const Truncation dt = load_truncation(p.call.sampling.draft, b);
    if (d.status == ROW_OK) d.status = truncation_status(tt, dt);
    if (d.status == ROW_OK) {
      const int law = d.rq.law;
      if (law < ASPS_SIBLINGS_WITHOUT_REPLACEMENT || law > ASPS_SIBLINGS_DETERMINISTIC) {
        d.status = TREE_BAD_TREE;
      }
    }
    if (d.status == ROW_OK && p.call.rule != 0 && p.call.rule != 1) d.status = TREE_BAD_TREE;
    if (d.status == ROW_OK) d.status = tree_status(p, b, d.rq.n_b);
    d.truncated = !d.rq.greedy && !truncation_is_off(tt);
    d.log_min_p = tt.min_p > 0.f ? logf(tt.min_p) : -INFINITY;
    d.d_truncated = d.rq.sampled && !truncation_is_off(dt);
    d.d_log_min_p = dt.min_p > 0.f ? logf(dt.min_p) : -INFINITY;
    if (d.status == ROW_OK && d.rq.sampled) d.status = sampled_tree_status(p, b, d);
    if (d.status == ROW_OK && !d.rq.sampled) tree_walk(p, b, d);
  }
  __syncthreads();
  if (d.status == ROW_OK && d.rq.sampled) {
    if (p.call.rule == 0) {
      tv_walk<T>(p, b, d, w, scratch);
    } else {
      rrs_walk<T>(p, b, d, rw, scratch);
    }
  }
  if (d.status == ROW_OK && d.token < 0) {
    const RowResult result = tree_race<T>(p, b, d, scratch);
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
    const int cells = p.call.batch * p.call.max_nodes;                                    \
    const int k = static_cast<int>(blockIdx.x) % cells;                                   \
    asps::tree_row<T>(p, k / p.call.max_nodes, k % p.call.max_nodes,                      \
                      static_cast<int>(blockIdx.x) >= cells);                             \
  }                                                                                       \
  extern "C" __global__ void __launch_bounds__(asps::VERIFY_THREADS)                      \
      asps_tree_decide_##SUFFIX(asps::TreeParams p) {                                     \
    asps::tree_decide<T>(p, static_cast<int>(blockIdx.x));                                \
  }

ASPS_TREE_KERNELS(f32, float)
ASPS_TREE_KERNELS(f16, __half)
ASPS_TREE_KERNELS(bf16, __nv_bfloat16)
