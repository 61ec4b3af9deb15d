/*
 * The parameters every verification kernel takes by value: the call as the caller described it
 * (AspsVerifyArgs of include/asps.h, unchanged), the verifier's workspace, and the launch
 * layout the host's plan chose (src/cuda/verify/plan.rs). Plain C, so that bindgen generates
 * the Rust mirror (src/cuda/verify/params.rs; tests/c_header.rs keeps it fresh) and the two
 * sides cannot disagree on a field.
 *
 * Workspace cells: a row cell (b, r) is entry b * (n + 1) + r of a [B * (n + 1)] array; a part
 * cell (b, r, s) is entry (b * (n + 1) + r) * split + s: part s of row r holds logits
 * [s * chunk, min(V, (s + 1) * chunk)), read by one block of the row launch and (parallel form)
 * one block of the decide launch. Draft row r uses the cells of target row r.
 */
#ifndef ASPS_VERIFY_PARAMS_H
#define ASPS_VERIFY_PARAMS_H

#include "../include/asps.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Device scratch of a verifier: every entry a kernel reads was written earlier in the same
 * call (src/cuda/verify/workspace.rs allocates it, uninitialised). */
typedef struct AspsVerifyWorkspace {
  /** Part cells of the row launch: the part's largest finite logit (-inf if none). */
  float* t_pmax;
  /** sum of exp((x - pmax) / T) over the part. */
  float* t_psum;
  /** The lowest index of pmax in the row (-1 if none). */
  int32_t* t_parg;
  /** FLAG_NAN | FLAG_POS_INF. */
  int32_t* t_pflags;
  /** The same for draft rows (at the draft's temperature). */
  float* d_pmax;
  float* d_psum;
  int32_t* d_pflags;
  /** Row cells of the row launch: the logit of the draft token x_r (r < n_b), written by the
   * part that holds it. */
  float* t_gather;
  float* d_gather;
  /** Row cells of the truncating row launch (requests that truncate that model only): the
   * kept set's threshold and ln of its normaliser. */
  float* t_theta;
  float* t_trunc_ln;
  float* d_theta;
  float* d_trunc_ln;
  /** Part cells of the decide launch, parallel form (r < n_b: residual; r = n_b: bonus): the
   * part's best race key, its token (-1 if the part has no candidate), and (ASpS) the part's
   * share of R_r, the residual row's mass. */
  float* race_pkey;
  int32_t* race_ptoken;
  float* res_part;
  /** Per request (entry b): blocks that have finished, of the parallel form's decide launch
   * (reset to 0 by the row launch) or of the fused launch (left at 0 by every form; zeroed when
   * allocated). */
  uint32_t* arrivals;
} AspsVerifyWorkspace;

/** How the host's plan laid the call out over blocks. */
typedef struct AspsVerifyLayout {
  /** Parts per row, 1..=MAX_SPLIT, each non-empty. */
  int32_t split;
  /** Elements per part (the last may hold fewer), a multiple of 16. */
  int32_t chunk;
  /** ResidualForm of the decide launch (0 parallel, 1 lazy, 2 fused). */
  int32_t form;
} AspsVerifyLayout;

/** The one parameter of asps_verify_rows_*, asps_verify_rows_truncating_*, asps_verify_decide_*
 * and asps_verify_fused_*. */
typedef struct AspsVerifyParams {
  AspsVerifyArgs call;
  AspsVerifyWorkspace ws;
  AspsVerifyLayout layout;
} AspsVerifyParams;

#ifdef __cplusplus
}
#endif

#endif /* ASPS_VERIFY_PARAMS_H */
