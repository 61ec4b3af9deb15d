// Verification of a batch of speculative drafts: the parameters shared by the kernels of
// verify.cu and the per-request logic (checks, the acceptance ratios, and the plan: SpS's
// accept/reject scan, ASpS's full-accept and stop tests), taken by one thread per block.
#pragma once

#include "common.cuh"
#include "launch_config.h"
#include "philox.cuh"
#include "sampling.cuh"
#include "truncate.cuh"
#include "verify_params.h"

namespace asps {

enum Method : int { METHOD_ASPS = 0, METHOD_SPS = 1, METHOD_GREEDY = 2 };

// How the decide step evaluates a request's residual rows (src/cuda/verify/form.rs chooses):
// all candidate rows at once, each in `split` parts, one block per part (small batches), or
// one block per request walking its rows from the top, reading only those the outcome needs
// (large batches), in a launch of its own or (fused) in the row launch's last block of each
// request (the smallest calls: one launch). All follow one noise scheme and give the same
// tokens, except where a row's residual mass, summed over its parts in one form and whole in
// another, moves a float near-tie of a stop test.
enum ResidualForm : int { FORM_PARALLEL = 0, FORM_LAZY = 1, FORM_FUSED = 2 };

// The kernels' one parameter (kernels/verify_params.h): the caller's call, the workspace and
// the host's launch layout.
using VerifyParams = ::AspsVerifyParams;

__device__ __forceinline__ long long ws_index(const VerifyParams& p, int b, int r) {
  return static_cast<long long>(b) * (p.call.max_draft + 1) + r;
}

__device__ __forceinline__ long long part_index(const VerifyParams& p, int b, int r, int s) {
  return ws_index(p, b, r) * p.layout.split + s;
}

// The elements of part s of a row: [first, first + len).
__device__ __forceinline__ void part_range(const VerifyParams& p, int s, int& first, int& len) {
  first = s * p.layout.chunk;
  len = max(0, min(p.layout.chunk, p.call.vocab - first));
}

// Draft token r of request b.
__device__ __forceinline__ int draft_token(const VerifyParams& p, int b, int r) {
  return ld(p.call.draft_tokens + static_cast<long long>(b) * p.call.max_draft + r);
}

// How one request samples, as the kernels use it: each model's 1/T (inv_temperature: 1 where
// that temperature is 0), whether the request is verified greedily (T = 0 or METHOD_GREEDY),
// and whether its drafter is greedy (draft temperature 0: q_r is a point mass at x_r).
struct RequestSampling {
  float inv_t;
  float inv_td;
  bool greedy;
  bool draft_greedy;
};

// The merged statistics of a request's rows, in the decide kernel's shared memory: target
// rows 0..n_b, draft rows 0..n_b-1, and the gathers of the rows that passed their checks (so
// that the scalar decisions of one thread read shared memory, not a chain of global loads).
// With truncation, a row's log-normaliser is its kept set's, a target gather outside the kept
// set is -inf (p = 0), and theta and ln min_p describe the kept sets for the row passes.
struct MergedRows {
  int truncation_status;  // truncation_status(): ROW_OK or REQUEST_BAD_TRUNCATION
  float t_max[MAX_DRAFT + 1], t_log_norm[MAX_DRAFT + 1];
  float d_max[MAX_DRAFT], d_log_norm[MAX_DRAFT];
  float t_gather[MAX_DRAFT], d_gather[MAX_DRAFT];
  int t_arg[MAX_DRAFT + 1];
  int status[2 * MAX_DRAFT + 1];  // target rows, then draft rows
  float t_theta[MAX_DRAFT + 1], d_theta[MAX_DRAFT];
  float t_log_min_p, d_log_min_p;
  int t_truncated, d_truncated;  // whether the request truncates that model's rows
};

// Request b's truncation of the target's rows (`target`) or the draft's.
__device__ __forceinline__ Truncation request_truncation(const VerifyParams& p, bool target,
                                                         int b) {
  return load_truncation(target ? p.call.sampling.target : p.call.sampling.draft, b);
}

// REQUEST_BAD_TRUNCATION if either of a request's truncations (the target's, the draft's) is
// out of its domain (checked for greedy requests too, which otherwise ignore them), else
// ROW_OK. Apart from request_status, so that the row launch, which does not need them, never
// loads them.
__device__ __forceinline__ int truncation_status(const Truncation& target,
                                                 const Truncation& draft) {
  const bool ok = truncation_is_valid(target) && truncation_is_valid(draft);
  return ok ? ROW_OK : REQUEST_BAD_TRUNCATION;
}

// Whether a request sampling as `rs`, whose truncation of that model's rows is `tr` (valid:
// truncation_status), truncates them (a greedy drafter's point mass is not truncated).
__device__ __forceinline__ bool truncates(const RequestSampling& rs, bool target,
                                          const Truncation& tr) {
  return !rs.greedy && !(!target && rs.draft_greedy) && !truncation_is_off(tr);
}

// The kept set of row r (target or draft) as the merged statistics describe it.
__device__ __forceinline__ KeptSet merged_kept(const MergedRows& m, bool target, int r,
                                               const RequestSampling& rs) {
  if (!(target ? m.t_truncated : m.d_truncated)) return kept_all();
  return target ? KeptSet{true, m.t_theta[r], m.t_log_min_p, m.t_max[r], rs.inv_t}
                : KeptSet{true, m.d_theta[r], m.d_log_min_p, m.d_max[r], rs.inv_td};
}

// Request b's own checks, in this order: its draft length, both temperatures
// (temperature_is_valid; then truncation_status, which the decide launch reports next). On
// ROW_OK, n_b and rs describe the request.
__device__ __forceinline__ int request_status(const VerifyParams& p, int b, int& n_b,
                                              RequestSampling& rs) {
  const AspsSampling& sampling = p.call.sampling;
  n_b = ld(p.call.draft_lens + b);
  const float t = ld(sampling.temperature + b);
  const float td = sampling.draft_temperature ? ld(sampling.draft_temperature + b) : t;
  if (n_b < 1 || n_b > p.call.max_draft || n_b > MAX_DRAFT) return REQUEST_BAD_DRAFT_LEN;
  if (!temperature_is_valid(t) || !temperature_is_valid(td)) return REQUEST_BAD_TEMPERATURE;
  rs = RequestSampling{inv_temperature(t), inv_temperature(td),
                       t == 0.f || p.call.method == METHOD_GREEDY, td == 0.f};
  return ROW_OK;
}

// min(0, x), keeping a NaN a NaN (fminf and fmin would drop it and return 0: "accept").
__device__ __forceinline__ double min0(double x) { return x > 0.0 ? 0.0 : x; }

// ln rho_r = ln p_r(x_r) - ln q_r(x_r), with ln p = (g_t - m_t) / T - L_t from the gathers g
// and the merged maxima m and log-normalisers L (rows that passed their checks), ln q likewise
// at the draft's temperature, or 0 for a greedy drafter (q_r is a point mass at x_r). Taken in
// double: from float statistics |g - m| < 2^129 and 1/T < 2^128, so nothing overflows and each
// term is finite, ln p being -inf where the target masks x_r (or truncates it away): the result
// is never NaN and never +inf. (In float, at T = 1e-38 the centred logits times 1/T overflow to
// -inf.) Scalar work of one thread: no fp64 in any vocabulary loop.
__device__ __forceinline__ double log_rho(const MergedRows& m, int r, float inv_t, float inv_td,
                                          bool draft_greedy) {
  const double log_p = (static_cast<double>(m.t_gather[r]) - m.t_max[r]) * inv_t - m.t_log_norm[r];
  if (draft_greedy) return log_p;
  const double log_q = (static_cast<double>(m.d_gather[r]) - m.d_max[r]) * inv_td - m.d_log_norm[r];
  return log_p - log_q;
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
  float gap[MAX_DRAFT];
  float u_descend[MAX_DRAFT];
  int candidate[MAX_DRAFT];
};

// Fills `plan` for a request whose rows are merged in `m` (one thread; plan.status must be
// set): `rule` is the rule it runs (METHOD_GREEDY when T = 0), `seed_ptr` and `offset_ptr`
// point to its noise key, inv_t, inv_td and draft_greedy describe its sampling
// (RequestSampling). Values and pointers only, never the kernel's parameters by reference: a
// function that is not inlined and takes their address makes every thread copy them to local
// memory.
__device__ ASPS_NOINLINE void plan_request(int rule, const uint64_t* seed_ptr,
                                           const uint64_t* offset_ptr, int n_b,
                                           float inv_t, float inv_td, bool draft_greedy,
                                           const MergedRows& m, Plan& plan) {
  plan.rule = rule;
  plan.bonus = 0;
  plan.sps_row = -1;
  if (plan.status != ROW_OK || plan.rule == METHOD_GREEDY) return;
  const uint64_t seed = ld(seed_ptr), offset = ld(offset_ptr);
  if (plan.rule == METHOD_SPS) {
    // The first row whose draft token is rejected (u_r >= min(1, rho_r)), or n_b if none is.
    plan.sps_row = n_b;
    for (int r = 0; r < n_b; ++r) {
      const double u = scalar_uniform(seed, offset, PURPOSE_SPS_ACCEPT, r);
      if (!(log(u) < min0(log_rho(m, r, inv_t, inv_td, draft_greedy)))) {
        plan.sps_row = r;
        break;
      }
    }
    plan.bonus = plan.sps_row == n_b;
    return;
  }
  double log_s = 0.0;  // ln s_r, in [-inf, 0], never NaN (log_rho is never NaN or +inf)
  for (int r = 0; r < n_b; ++r) {
    const float u = scalar_uniform(seed, offset, PURPOSE_DESCEND, r);
    const double s = exp(log_s);
    plan.scale[r] = static_cast<float>(s);
    plan.gap[r] = static_cast<float>(-expm1(log_s));
    plan.u_descend[r] = u;
    plan.candidate[r] = static_cast<double>(u) < s;
    log_s = min0(log_s + log_rho(m, r, inv_t, inv_td, draft_greedy));
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
// race has a winner exactly when mass > 0): u (R + 1 - s) < R, in float (the lazy form runs it
// between the passes of its walk over rows, a loop that loads logits: no fp64 there). Every
// operand is a float already (1 - s was rounded once from double, keeping its relative
// precision when s is near 1), so the test moves only at near-ties, by a few ulps.
__device__ __forceinline__ bool plan_row_stops(const Plan& plan, int r, float mass) {
  return mass > 0.f && plan.u_descend[r] * (mass + plan.gap[r]) < mass;
}

}  // namespace asps
