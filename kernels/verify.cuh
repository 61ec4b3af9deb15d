// Verification of a batch of speculative drafts: the parameters shared by the two kernels of
// verify.cu and the per-request logic (checks, the acceptance ratios, and the plan: SpS's
// accept/reject scan, ASpS's full-accept and stop tests), taken by one thread per block.
#pragma once

#include "common.cuh"
#include "launch_config.h"
#include "philox.cuh"
#include "truncate.cuh"

namespace asps {

enum Method : int { METHOD_ASPS = 0, METHOD_SPS = 1, METHOD_GREEDY = 2 };

// How the decide launch evaluates a request's residual rows (src/cuda/verify/form.rs chooses):
// all candidate rows at once, each in `split` parts, one block per part (small batches), or
// one block per request walking its rows from the top, reading only those the outcome needs
// (large batches). Both follow one noise scheme and give the same tokens, except where a row's
// residual mass, summed over its parts in one form and whole in the other, moves a float
// near-tie of a stop test.
enum ResidualForm : int { FORM_PARALLEL = 0, FORM_LAZY = 1 };

// Must match `VerifyParams` in src/cuda/verify/params.rs field for field.
//
// Workspace cells: a row cell (b, r) is entry b * (n + 1) + r of a [B * (n + 1)] array; a part
// cell (b, r, s) is entry (b * (n + 1) + r) * split + s: part s of row r holds logits
// [s * chunk, min(V, (s + 1) * chunk)), read by one block of the row launch and (parallel form)
// one block of the decide launch.
struct VerifyParams {
  const void* target;             // [B, n+1, V] logits of dtype T
  long long target_batch_stride;  // elements
  long long target_row_stride;    // elements
  const void* draft;              // [B, n, V]
  long long draft_batch_stride;
  long long draft_row_stride;
  const int* draft_tokens;              // [B, n]
  const int* draft_lens;                // [B]: n_b in 1..=n
  const float* temperatures;            // [B]: 0 = greedy
  const unsigned long long* seeds;      // [B]
  unsigned long long* offsets;          // [B]: read, then advanced by 1 (by the request's last block)
  int* out_tokens;                      // [B, n+1], padded with -1
  int* out_num_emitted;                 // [B]
  int* out_num_accepted;                // [B]
  int* out_status;                      // [B]: RowStatusCode
  // Truncation (kernels/truncate.cuh), per request and model; a null array leaves that
  // parameter off for every request.
  const int* t_top_k;                   // [B]: the target's top-k (0 = off)
  const float* t_top_p;                 // [B]: (1 = off)
  const float* t_min_p;                 // [B]: (0 = off)
  const int* d_top_k;                   // [B]: the draft's
  const float* d_top_p;
  const float* d_min_p;
  // Part cells of the row launch: target row r, part s (draft rows likewise).
  float* ws_t_pmax;     // largest finite logit of the part (-inf if none)
  float* ws_t_psum;     // sum of exp((x - pmax) / T) over the part
  int* ws_t_parg;       // lowest index of pmax in the row (-1 if none)
  int* ws_t_pflags;     // FLAG_NAN | FLAG_POS_INF
  float* ws_d_pmax;
  float* ws_d_psum;
  int* ws_d_pflags;
  // Row cells of the row launch.
  float* ws_t_gather;   // logit of the draft token x_r (r < n_b), by the part that holds it
  float* ws_d_gather;
  // Row cells of the truncate launch (requests that truncate that model only): the kept set's
  // threshold and ln of its normaliser.
  float* ws_t_theta;
  float* ws_t_trunc_ln;
  float* ws_d_theta;
  float* ws_d_trunc_ln;
  // Part cells of the decide launch, parallel form (r < n_b: residual; r = n_b: bonus).
  float* ws_race_pkey;  // best race key of the part
  int* ws_race_ptoken;  // its token, -1 if the part has no candidate
  float* ws_res_part;   // ASpS: the part's share of R_r, the residual row's mass
  // Per request (entry b), parallel form: blocks of the decide launch that have finished;
  // reset to 0 by the row launch.
  unsigned int* ws_arrivals;
  int batch;            // B
  int max_draft;        // n <= MAX_DRAFT
  int vocab;            // V
  int method;           // Method
  int split;            // parts per row, 1..=MAX_SPLIT, each non-empty
  int chunk;            // elements per part (the last may hold fewer), a multiple of 16
  int form;             // ResidualForm
  int reserved;         // 0; keeps the struct free of implicit padding
};

static_assert(sizeof(VerifyParams) == 38 * 8 + 8 * 4, "VerifyParams must match its Rust mirror");

__device__ __forceinline__ long long ws_index(const VerifyParams& p, int b, int r) {
  return static_cast<long long>(b) * (p.max_draft + 1) + r;
}

__device__ __forceinline__ long long part_index(const VerifyParams& p, int b, int r, int s) {
  return ws_index(p, b, r) * p.split + s;
}

// The elements of part s of a row: [first, first + len).
__device__ __forceinline__ void part_range(const VerifyParams& p, int s, int& first, int& len) {
  first = s * p.chunk;
  len = max(0, min(p.chunk, p.vocab - first));
}

// The merged statistics of a request's rows, in the decide kernel's shared memory: target
// rows 0..n_b, draft rows 0..n_b-1, and the gathers of the rows that passed their checks (so
// that the scalar decisions of one thread read shared memory, not a chain of global loads).
// With truncation, a row's log-normaliser is its kept set's, a target gather outside the kept
// set is -inf (p = 0), and theta and ln min_p describe the kept sets for the row passes.
struct MergedRows {
  float t_max[MAX_DRAFT + 1], t_log_norm[MAX_DRAFT + 1];
  float d_max[MAX_DRAFT], d_log_norm[MAX_DRAFT];
  float t_gather[MAX_DRAFT], d_gather[MAX_DRAFT];
  int t_arg[MAX_DRAFT + 1];
  int status[2 * MAX_DRAFT + 1];  // target rows, then draft rows
  float t_theta[MAX_DRAFT + 1], d_theta[MAX_DRAFT];
  float t_log_min_p, d_log_min_p;
  int t_truncated, d_truncated;  // whether the request truncates that model's rows
  int truncation_status;         // ROW_OK or REQUEST_BAD_TRUNCATION
};

// Request b's truncation of the target's rows (`target`) or the draft's.
__device__ __forceinline__ Truncation load_truncation(const VerifyParams& p, bool target, int b) {
  const int* k = target ? p.t_top_k : p.d_top_k;
  const float* tp = target ? p.t_top_p : p.d_top_p;
  const float* mp = target ? p.t_min_p : p.d_min_p;
  return Truncation{k ? ld(k + b) : 0, tp ? ld(tp + b) : 1.f, mp ? ld(mp + b) : 0.f};
}

// REQUEST_BAD_TRUNCATION if either of request b's parameter sets is out of its domain (checked
// for greedy requests too, which otherwise ignore them), else ROW_OK.
__device__ __forceinline__ int truncation_status(const VerifyParams& p, int b) {
  const bool ok = truncation_is_valid(load_truncation(p, true, b)) &&
                  truncation_is_valid(load_truncation(p, false, b));
  return ok ? ROW_OK : REQUEST_BAD_TRUNCATION;
}

// The kept set of row r (target or draft) as the merged statistics describe it.
__device__ __forceinline__ KeptSet merged_kept(const MergedRows& m, bool target, int r, float inv_t) {
  if (!(target ? m.t_truncated : m.d_truncated)) return kept_all();
  return target ? KeptSet{true, m.t_theta[r], m.t_log_min_p, m.t_max[r], inv_t}
                : KeptSet{true, m.d_theta[r], m.d_log_min_p, m.d_max[r], inv_t};
}

// Request-level checks; on success sets n_b and the temperature. 1/T must be a normal float:
// infinite (T < 2.9e-39) breaks every scaled logit, and subnormal (T > 8.5e37) would be flushed
// to 0 under -ftz, making a masked logit's (-inf) * 0 NaN; refusing both keeps the kernels
// exact whatever the denormal mode.
__device__ __forceinline__ int request_status(const VerifyParams& p, int b, int& n_b, float& t) {
  n_b = ld(p.draft_lens + b);
  t = ld(p.temperatures + b);
  if (n_b < 1 || n_b > p.max_draft || n_b > MAX_DRAFT) return REQUEST_BAD_DRAFT_LEN;
  if (!(t >= 0.f) || isinf(t)) return REQUEST_BAD_TEMPERATURE;
  if (t > 0.f && (isinf(1.f / t) || 1.f / t < 0x1p-126f)) return REQUEST_BAD_TEMPERATURE;
  return ROW_OK;
}

__device__ __forceinline__ bool request_is_greedy(const VerifyParams& p, float t) {
  return t == 0.f || p.method == METHOD_GREEDY;
}

// min(0, x), keeping a NaN a NaN (fminf and fmin would drop it and return 0: "accept").
__device__ __forceinline__ double min0(double x) { return x > 0.0 ? 0.0 : x; }

// ln rho_r = ln p_r(x_r) - ln q_r(x_r) = ((g_t - m_t) - (g_d - m_d)) / T - (L_t - L_d), from the
// gathers g and the merged maxima m and log-normalisers L (rows that passed their checks). Taken in double, the difference of
// the two centred logits first: from float statistics |g - m| < 2^129 and 1/T < 2^128, so
// nothing overflows and the result is finite, or -inf where the target masks x_r (g_t = -inf);
// never NaN and never +inf. (In float, at T = 1e-38 both centred logits times 1/T overflow to
// -inf and their difference is NaN.) Scalar work of one thread: no fp64 in any vocab loop.
__device__ __forceinline__ double log_rho(const MergedRows& m, int r, double inv_t) {
  const double centred_t = static_cast<double>(m.t_gather[r]) - m.t_max[r];
  const double centred_d = static_cast<double>(m.d_gather[r]) - m.d_max[r];
  const double log_norms = static_cast<double>(m.t_log_norm[r]) - m.d_log_norm[r];
  return (centred_t - centred_d) * inv_t - log_norms;
}

// SpS: the first row whose draft token is rejected (u_r >= min(1, rho_r)), or n_b if none is.
__device__ __forceinline__ int sps_first_rejected(unsigned long long seed, unsigned long long offset,
                                                  const MergedRows& m, int n_b, double inv_t) {
  for (int r = 0; r < n_b; ++r) {
    const double u = scalar_uniform(seed, offset, PURPOSE_SPS_ACCEPT, r);
    if (!(log(u) < min0(log_rho(m, r, inv_t)))) return r;
  }
  return n_b;
}

// A request's decisions that need no second pass over its rows: taken by one thread from the
// merged statistics (plan_request), then read by its whole block. In the parallel decide form
// every block of a sampling request computes the plan, and the request's last block reads the
// race cells of the rows its own plan names (SpS: plan.sps_row), so all must agree bit for bit:
// they do because they run the same instructions on bit-identical merged statistics (merged
// in lane order, at one call site: kernels/verify.cu, decide_parallel). plan_request is also
// ASPS_NOINLINE: one machine-code copy per kernel, called from every call site, never copies
// inlined at two sites and rounded differently (tests/kernel_ptx.rs checks that the decide
// kernels call it).
struct Plan {
  int status;  // ROW_OK, or the first bad row's status
  int rule;    // the rule this request runs: METHOD_GREEDY when T = 0
  int bonus;   // the bonus row is raced (ASpS: U(Accept) < s_n; SpS: every draft token kept)
  int sps_row; // SpS: the one row raced, its first rejection (or n_b: the bonus)
  // ASpS, residual row r < n_b (src/reference/sample.rs): s_r, the scale before the row;
  // 1 - s_r; the row's stop uniform U(Descend, r); and whether the row is a candidate (u < s_r,
  // which bounds its stop probability R_r / (R_r + 1 - s_r)): only candidates are read.
  float scale[MAX_DRAFT];
  double gap[MAX_DRAFT];
  float u_descend[MAX_DRAFT];
  int candidate[MAX_DRAFT];
};

// Fills `plan` for a request whose rows are merged in `m` (one thread; plan.status must be
// set): `rule` is the rule it runs (METHOD_GREEDY when T = 0), `seed_ptr` and `offset_ptr`
// point to its noise key. Values and pointers only, never the kernel's parameters by
// reference: a function that is not inlined and takes their address makes every thread copy
// them to local memory.
__device__ ASPS_NOINLINE void plan_request(int rule, const unsigned long long* seed_ptr,
                                           const unsigned long long* offset_ptr, int n_b, float t,
                                           const MergedRows& m, Plan& plan) {
  plan.rule = rule;
  plan.bonus = 0;
  plan.sps_row = -1;
  if (plan.status != ROW_OK || plan.rule == METHOD_GREEDY) return;
  const unsigned long long seed = ld(seed_ptr), offset = ld(offset_ptr);
  // The scalar decisions in double (see log_rho): one thread, no fp64 in any vocabulary loop.
  const double inv_t = 1.0 / static_cast<double>(t);
  if (plan.rule == METHOD_SPS) {
    plan.sps_row = sps_first_rejected(seed, offset, m, n_b, inv_t);
    plan.bonus = plan.sps_row == n_b;
    return;
  }
  double log_s = 0.0;  // ln s_r, in [-inf, 0], never NaN (log_rho is never NaN or +inf)
  for (int r = 0; r < n_b; ++r) {
    const float u = scalar_uniform(seed, offset, PURPOSE_DESCEND, r);
    const double s = exp(log_s);
    plan.scale[r] = static_cast<float>(s);
    plan.gap[r] = -expm1(log_s);
    plan.u_descend[r] = u;
    plan.candidate[r] = static_cast<double>(u) < s;
    log_s = min0(log_s + log_rho(m, r, inv_t));
  }
  plan.bonus = static_cast<double>(scalar_uniform(seed, offset, PURPOSE_ACCEPT, 0)) < exp(log_s);
}

// Whether request b's rule reads row r in the decide launch (r = n_b: the bonus row).
__device__ __forceinline__ bool plan_reads_row(const Plan& plan, int r, int n_b) {
  if (plan.status != ROW_OK) return false;
  switch (plan.rule) {
    case METHOD_SPS: return r == plan.sps_row;
    case METHOD_ASPS: return plan.bonus ? r == n_b : r < n_b && plan.candidate[r];
    default: return false;
  }
}

// ASpS: whether the descent stops at candidate row r, whose residual mass is `mass` (the row's
// race has a winner exactly when mass > 0): u (R + 1 - s) < R, in double.
__device__ __forceinline__ bool plan_row_stops(const Plan& plan, int r, float mass) {
  const double big_r = mass;
  return mass > 0.f && static_cast<double>(plan.u_descend[r]) * (big_r + plan.gap[r]) < big_r;
}

}  // namespace asps
