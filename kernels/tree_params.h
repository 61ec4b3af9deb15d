/*
 * The parameter of the tree verification kernels (kernels/tree.cu): a batched, ragged call
 * over draft trees, and the kernels' workspace. Kernel-side only for now: the fronts (Rust and
 * the C ABI of include/asps.h) do not take trees yet, and the emulator's tests build it
 * (tests/emu/kernel_emu.cpp). Plain C, as verify_params.h.
 *
 * Request b's tree has num_nodes[b] nodes (1..=max_nodes, at most ASPS_TREE_MAX_NODES), node 0
 * the root (the last committed position); node i >= 1 has parent parents[b * max_nodes + i] < i
 * and token tokens[b * max_nodes + i] (the edge from its parent); a node's children, in
 * increasing index, are in the order they were drawn. Node u's target logits row starts at
 * target_logits + b * target_batch_stride + u * target_node_stride (elements).
 */
#ifndef ASPS_TREE_PARAMS_H
#define ASPS_TREE_PARAMS_H

#include "../include/asps.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The most nodes a request's tree may have, its root included. */
#define ASPS_TREE_MAX_NODES 64

/** How a node's children were drawn from its draft row (docs/design.md, "Draft trees"). */
typedef enum AspsSiblingLaw {
  ASPS_SIBLINGS_WITHOUT_REPLACEMENT = 0,
  ASPS_SIBLINGS_WITH_REPLACEMENT = 1,
  /** The draft's most probable tokens, not drawn: no draft row is read. */
  ASPS_SIBLINGS_DETERMINISTIC = 2
} AspsSiblingLaw;

/** A tree verification call. Per request: its temperature (0: greedy, down the target's
 * argmaxes) and target truncation in `sampling` (the draft's fields are checked, not used:
 * deterministic children read no draft row), its seed and offset (advanced by one), its
 * sibling law. Outputs per request: the accepted node, the token that follows its path, the
 * tokens emitted (the node's depth + 1), and an AspsRequestStatus or ASPS_TREE_BAD_TREE. */
typedef struct AspsTreeCall {
  /** For children drawn from draft rows: 0, Traversal Verification; 1, recursive rejection
   * sampling. Deterministic children and greedy requests run RRS's scalar form either way. */
  int32_t rule;
  int32_t dtype;
  int32_t batch;
  int32_t max_nodes;
  int32_t vocab;
  const void* target_logits;
  int64_t target_batch_stride;
  int64_t target_node_stride;
  /** Node u's draft row (read for the internal nodes of requests whose children were drawn
   * from draft rows; may be null when no request's were). */
  const void* draft_logits;
  int64_t draft_batch_stride;
  int64_t draft_node_stride;
  const int32_t* num_nodes;
  const int32_t* parents;
  const int32_t* tokens;
  const int32_t* sibling_laws;
  const uint64_t* seeds;
  uint64_t* offsets;
  int32_t* out_node;
  int32_t* out_token;
  int32_t* out_num_emitted;
  int32_t* out_status;
  AspsSampling sampling;
} AspsTreeCall;

/** A request's tree is malformed: a node count outside 1..=max_nodes, a parent not before its
 * node, an unknown sibling law, the same token twice among children drawn without replacement,
 * children drawn from draft rows by a greedy drafter (draft temperature 0: they are
 * deterministic), or an unknown rule. */
#define ASPS_TREE_BAD_TREE 10

/** Node cells, entry b * max_nodes + u, written by the row launch for the nodes of valid
 * requests; the gather cell of node c is its parent's target logit at c's token. */
typedef struct AspsTreeWorkspace {
  float* t_max;
  float* t_log_norm;
  int32_t* t_arg;
  int32_t* t_flags;
  float* t_theta;
  float* t_trunc_ln;
  float* t_gather;
  /** The same for the draft rows of internal nodes (sampled children only). */
  float* d_max;
  float* d_log_norm;
  int32_t* d_flags;
  float* d_theta;
  float* d_trunc_ln;
  float* d_gather;
} AspsTreeWorkspace;

typedef struct AspsTreeParams {
  AspsTreeCall call;
  AspsTreeWorkspace ws;
} AspsTreeParams;

#ifdef __cplusplus
}
#endif

#endif /* ASPS_TREE_PARAMS_H */
