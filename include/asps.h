/*
 * asps: verification of speculative drafts on the GPU (ASpS, SpS, greedy), exact.
 *
 * C ABI of the Rust crate `asps`. Link the crate's static library (libasps.a, with -lpthread
 * -ldl -lm) or its shared library (libasps.so). All pointers in AspsVerifyArgs are device
 * pointers in the verifier's CUDA context; all functions return an AspsStatus code.
 *
 * AspsVerifyArgs is the one description of a verification call: the Rust crate's raw front
 * takes the same struct, and the kernels receive it unchanged inside their parameters
 * (kernels/verify_params.h). Its Rust mirror (src/capi/bindings.rs) is generated with bindgen
 * and checked by a test; change both together (docs/design.md, "One description of a call").
 */
#ifndef ASPS_H
#define ASPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A cudaStream_t or a CUstream (the same type); NULL is the legacy default stream. */
typedef struct CUstream_st* asps_stream_t;

/** The largest vocabulary (V) accepted: 2^30. A larger V is refused with ASPS_ERR_TOO_LARGE
 * before anything is launched: the kernels walk a row with 32-bit counters stepped by the
 * block size, which must not wrap past 2^31 - 1. */
#define ASPS_MAX_VOCAB 1073741824

/** The longest draft a verifier takes (MAX_DRAFT of kernels/launch_config.h): the kernels merge
 * a request's 2n + 1 rows in shared memory. */
#define ASPS_MAX_DRAFT 64

/** Element type of the logits. */
typedef enum AspsDtype {
  ASPS_DTYPE_F32 = 0,
  ASPS_DTYPE_F16 = 1,
  ASPS_DTYPE_BF16 = 2
} AspsDtype;

/** Verification rule, for requests whose temperature is not 0 (those are greedy). */
typedef enum AspsMethod {
  /** Accelerated Speculative Sampling (tree-wise maximal coupling). */
  ASPS_METHOD_ASPS = 0,
  /** Token-wise speculative sampling. */
  ASPS_METHOD_SPS = 1,
  /** Keep draft tokens while they are the target's argmax. */
  ASPS_METHOD_GREEDY = 2
} AspsMethod;

/** Returned by every function. Nothing is launched unless ASPS_OK is returned. */
typedef enum AspsStatus {
  ASPS_OK = 0,
  /** A null or misaligned argument struct or handle, an unknown enum code, a struct_size
   * outside what this library reads, or a field it does not know set past its struct. */
  ASPS_ERR_INVALID_ARGUMENT = 1,
  /** A required device pointer in AspsVerifyArgs is null. */
  ASPS_ERR_NULL_POINTER = 2,
  /** A device pointer is not aligned to its element type. */
  ASPS_ERR_MISALIGNED = 3,
  /** B, n or V is < 1, or a stride is smaller than V or negative. */
  ASPS_ERR_SHAPE = 4,
  /** V > ASPS_MAX_VOCAB, or a shape passes what the kernels index (2^31 blocks, 2^63
   * elements). */
  ASPS_ERR_TOO_LARGE = 5,
  /** More requests or draft tokens than the verifier was made for. */
  ASPS_ERR_CAPACITY = 6,
  /** Built without nvcc (or for the emulated device of its tests). */
  ASPS_ERR_KERNELS_MISSING = 7,
  /** No CUDA driver or no such device. */
  ASPS_ERR_NO_DRIVER = 8,
  /** The CUDA driver reported an error. */
  ASPS_ERR_CUDA = 9,
  /** A bug in asps, caught at the boundary. */
  ASPS_ERR_INTERNAL = 10,
  /** An array the kernels write (offsets, out_*) overlaps another array of the call. */
  ASPS_ERR_OVERLAP = 11
} AspsStatus;

/** Written per request into out_status by the kernels. A request that is not OK emits nothing
 * (tokens -1, counts 0); its offset is advanced all the same. */
typedef enum AspsRequestStatus {
  ASPS_REQUEST_OK = 0,
  /** A logits row holds NaN. */
  ASPS_REQUEST_NAN = 1,
  /** A logits row holds +inf. */
  ASPS_REQUEST_POS_INF = 2,
  /** A logits row is entirely -inf. */
  ASPS_REQUEST_ALL_MASKED = 3,
  /** A draft token id is < 0 or >= V. */
  ASPS_REQUEST_TOKEN_OUT_OF_RANGE = 4,
  /** The draft could not have drawn a draft token: its draft logit is -inf, its draft
   * truncation drops it, or (draft temperature 0) it is not a largest logit of its row. */
  ASPS_REQUEST_IMPOSSIBLE_DRAFT_TOKEN = 5,
  /** draft_lens[b] < 1 or > max_draft. */
  ASPS_REQUEST_BAD_DRAFT_LEN = 6,
  /** The target's or the draft's temperature is negative, NaN, infinite, or outside
   * [ASPS_MIN_TEMPERATURE, ASPS_MAX_TEMPERATURE] while not 0. */
  ASPS_REQUEST_BAD_TEMPERATURE = 7,
  /** A rejected draft token whose residual f32 cannot resolve (the rows agree to ~1e-7 but at
   * that token): sample that step from the target. */
  ASPS_REQUEST_NO_OUTCOME = 8,
  /** top_k < 0, top_p outside (0, 1], min_p outside [0, 1), or NaN (target's or draft's). */
  ASPS_REQUEST_BAD_TRUNCATION = 9,
  /** Tree calls only: a malformed tree (a node count outside 1..=max_nodes, a parent not
   * before its node, an unknown sibling law, the same token twice among children drawn
   * without replacement, children drawn from draft rows by a greedy drafter (draft
   * temperature 0: they are deterministic), or such children in a call without draft
   * logits. */
  ASPS_REQUEST_BAD_TREE = 10
} AspsRequestStatus;

/** The temperatures a request may have besides 0 (greedy): exactly those T whose 1/T, in f32,
 * is a normal number and whose log2(e)/T (1/T times log2(e), both rounded to f32, the factor
 * of the kernels' base-2 exponentials) is finite. Below, that factor overflows; above, 1/T is
 * subnormal, which -ftz flushes to 0 (a masked logit times 0 is NaN). ASPS_MIN_TEMPERATURE is
 * the f32 of bits 0x002E2A8F, about 4.2397e-39 (1/T about 2.3587e38); ASPS_MAX_TEMPERATURE is
 * 2^126. */
#define ASPS_MIN_TEMPERATURE 4.2397e-39f
#define ASPS_MAX_TEMPERATURE 8.5070592e37f

/** One model's truncation for every request of a call: [B] device arrays, applied after the
 * temperature in this order, each keeping ties at its boundary. A NULL array leaves that
 * parameter off for every request. Values out of their domain are reported per request as
 * ASPS_REQUEST_BAD_TRUNCATION (greedy requests included, which otherwise ignore truncation). */
typedef struct AspsTruncation {
  /** [B] or NULL: keep the top_k largest logits (ties kept); 0 = off, top_k >= V keeps all. */
  const int32_t* top_k;
  /** [B] or NULL: keep the most probable tokens until they hold top_p of the mass; in (0, 1],
   * 1 = off. */
  const float* top_p;
  /** [B] or NULL: keep tokens of probability >= min_p times the largest; in [0, 1), 0 = off. */
  const float* min_p;
} AspsTruncation;

/** How every request of a call samples, as [B] device arrays: the temperature and truncation
 * of the target's rows and, separately, of the draft's rows (the law the draft tokens were
 * really drawn from). The same description as the CPU reference's `Sampling`. */
typedef struct AspsSampling {
  /** [B], required: the target's temperature; 0 = greedy verification (truncation and the
   * draft's sampling are then checked but not used). */
  const float* temperature;
  /** The target's truncation. */
  AspsTruncation target;
  /** The draft's truncation: the parameters the draft tokens were drawn with. */
  AspsTruncation draft;
  /** [B] or NULL: the draft's temperature. NULL means each request's draft temperature is its
   * target temperature. 0 means a greedy drafter: each draft token is a largest logit of its
   * draft row (any of them on ties), drawn with probability 1, and the draft's truncation is
   * not used. */
  const float* draft_temperature;
} AspsSampling;

/** One verification call over a batch of B requests, each with up to n = max_draft draft
 * tokens over a vocabulary of V. Strides are in elements. Token buffers are packed.
 *
 * Extending without breaking callers: struct_size is sizeof(AspsVerifyArgs) as the caller's
 * header defined it. Fields at or past struct_size are read as zero (NULL: that option off),
 * so a caller compiled against an older, shorter header keeps its meaning; struct_size must
 * be a multiple of 8 from ASPS_VERIFY_ARGS_MIN_SIZE (every field up to sampling.temperature)
 * to ASPS_VERIFY_ARGS_MAX_SIZE. A larger struct_size (a newer header) is accepted when the
 * bytes this library does not know are all zero. Fields are only ever added at the end, each a
 * whole 8 bytes, and zero always means "off". */
typedef struct AspsVerifyArgs {
  /** sizeof(AspsVerifyArgs) of the caller's header. */
  uint32_t struct_size;
  /** AspsMethod. */
  int32_t method;
  /** AspsDtype of both logits buffers. */
  int32_t dtype;
  /** B >= 1. */
  int32_t batch;
  /** n >= 1. */
  int32_t max_draft;
  /** 1 <= V <= ASPS_MAX_VOCAB. */
  int32_t vocab;
  /** [B, n + 1, V] target logits. */
  const void* target_logits;
  /** Elements between requests in target_logits. */
  int64_t target_batch_stride;
  /** Elements between rows in target_logits, >= V. */
  int64_t target_row_stride;
  /** [B, n, V] draft logits. */
  const void* draft_logits;
  /** Elements between requests in draft_logits. */
  int64_t draft_batch_stride;
  /** Elements between rows in draft_logits, >= V. */
  int64_t draft_row_stride;
  /** [B, n] draft tokens. */
  const int32_t* draft_tokens;
  /** [B]: n_b in 1..n; rows and tokens past n_b are not read. */
  const int32_t* draft_lens;
  /** [B]: each request's noise seed. */
  const uint64_t* seeds;
  /** [B]: each request's noise offset: read, then advanced by 1 on the device. */
  uint64_t* offsets;
  /** [B, n + 1]: kept draft tokens, then one more; -1 padded. */
  int32_t* out_tokens;
  /** [B]: tokens emitted. */
  int32_t* out_num_emitted;
  /** [B]: draft tokens kept. */
  int32_t* out_num_accepted;
  /** [B]: AspsRequestStatus. */
  int32_t* out_status;
  /** How each request samples (sampling.temperature is required). */
  AspsSampling sampling;
} AspsVerifyArgs;

/** The smallest struct_size accepted: every field up to and including sampling.temperature. */
#define ASPS_VERIFY_ARGS_MIN_SIZE (offsetof(AspsVerifyArgs, sampling) + sizeof(const float*))
/** The largest struct_size read: room for the fields of headers to come. */
#define ASPS_VERIFY_ARGS_MAX_SIZE 4096

/** The most nodes a draft tree may have, its root included. */
#define ASPS_TREE_MAX_NODES 64

/** The rule that verifies children drawn from draft rows (docs/design.md, "Draft trees").
 * Deterministic children and greedy requests are verified the same way under either. */
typedef enum AspsTreeRule {
  /** Traversal Verification: sequence-level acceptance, the most tokens per step. */
  ASPS_TREE_TRAVERSAL = 0,
  /** Recursive rejection sampling over each node's children, token by token. */
  ASPS_TREE_RRS = 1
} AspsTreeRule;

/** How a node's children were drawn from its draft row. */
typedef enum AspsSiblingLaw {
  ASPS_SIBLINGS_WITHOUT_REPLACEMENT = 0,
  ASPS_SIBLINGS_WITH_REPLACEMENT = 1,
  /** The draft's most probable tokens, not drawn (EAGLE, Medusa): no draft row is read. */
  ASPS_SIBLINGS_DETERMINISTIC = 2
} AspsSiblingLaw;

/** One tree verification call over a batch of B requests, each a draft tree of up to
 * max_nodes nodes over a vocabulary of V.
 *
 * Request b's tree has num_nodes[b] nodes (1..=max_nodes); node 0 is the root (the last
 * committed position); node i >= 1 has parent parents[b * max_nodes + i] < i and token
 * tokens[b * max_nodes + i] (the edge from its parent). A node's children, in increasing index,
 * are in the order they were drawn. Node u's target row (the target's logits after its path)
 * starts at target_logits + b * target_batch_stride + u * target_node_stride elements; its draft
 * row (the draft's logits its children were drawn from) likewise in draft_logits. Entries past
 * a request's num_nodes are not read.
 *
 * Per request: its temperature (0: greedy, down the target's argmaxes) and truncations in
 * `sampling` (the draft's apply to draft rows; deterministic children read none, but their
 * values are checked), its seed and offset (advanced by one), its sibling law. Outputs per
 * request: the accepted node, the token that follows its path, the tokens emitted (the node's
 * depth + 1: the path's tokens below the root, then out_token), and an AspsRequestStatus.
 *
 * struct_size follows AspsVerifyArgs' rules (ASPS_TREE_VERIFY_ARGS_MIN_SIZE: every field up to
 * sampling.temperature). */
typedef struct AspsTreeVerifyArgs {
  /** sizeof(AspsTreeVerifyArgs) of the caller's header. */
  uint32_t struct_size;
  /** AspsTreeRule. */
  int32_t rule;
  /** AspsDtype of both logits buffers. */
  int32_t dtype;
  /** B >= 1. */
  int32_t batch;
  /** 1 <= max_nodes <= ASPS_TREE_MAX_NODES: the node slots of each request. */
  int32_t max_nodes;
  /** 1 <= V <= ASPS_MAX_VOCAB. */
  int32_t vocab;
  /** [B, max_nodes, V] target logits, one row per node. */
  const void* target_logits;
  /** Elements between requests in target_logits. */
  int64_t target_batch_stride;
  /** Elements between nodes' rows, >= V. */
  int64_t target_node_stride;
  /** [B, max_nodes - 1, V] draft logits, node u's row the one its children were drawn from
   * (read for the internal nodes of requests whose children were drawn from draft rows); NULL
   * when no request's were (such a request then gets ASPS_REQUEST_BAD_TREE). */
  const void* draft_logits;
  /** Elements between requests in draft_logits. */
  int64_t draft_batch_stride;
  /** Elements between nodes' rows, >= V. Both draft strides are checked only where a draft
   * row can be read: draft_logits given and max_nodes >= 2. */
  int64_t draft_node_stride;
  /** [B]: nodes in each request's tree, root included. */
  const int32_t* num_nodes;
  /** [B, max_nodes]: each node's parent (entry 0 of each request is not read). */
  const int32_t* parents;
  /** [B, max_nodes]: each node's token (entry 0 of each request is not read). */
  const int32_t* tokens;
  /** [B]: each request's AspsSiblingLaw. */
  const int32_t* sibling_laws;
  /** [B]: each request's noise seed. */
  const uint64_t* seeds;
  /** [B]: each request's noise offset: read, then advanced by 1 on the device. */
  uint64_t* offsets;
  /** [B]: the accepted node (0: the root, no draft token kept); -1 unless OK. */
  int32_t* out_node;
  /** [B]: the token after the accepted node's path; -1 unless OK. */
  int32_t* out_token;
  /** [B]: tokens emitted, the accepted node's depth + 1; 0 unless OK. */
  int32_t* out_num_emitted;
  /** [B]: AspsRequestStatus. */
  int32_t* out_status;
  /** How each request samples (sampling.temperature is required). */
  AspsSampling sampling;
} AspsTreeVerifyArgs;

/** The smallest struct_size accepted: every field up to and including sampling.temperature. */
#define ASPS_TREE_VERIFY_ARGS_MIN_SIZE \
  (offsetof(AspsTreeVerifyArgs, sampling) + sizeof(const float*))
/** The largest struct_size read. */
#define ASPS_TREE_VERIFY_ARGS_MAX_SIZE 4096

/** Kernels and a reusable workspace for up to max_batch requests of up to max_draft tokens.
 *
 * A verifier is NOT thread-safe, and its calls must be ordered: the kernels of a call pass
 * their results through its one workspace, so two calls that overlap (on the host or on the
 * device) corrupt each other's results. Use one verifier per concurrent caller (per thread,
 * per stream). Calls on one verifier must come one after another on the host (never from two
 * threads at once without a lock) and be ordered on the device: queued on the same stream, or
 * the caller synchronises (an event recorded after the previous call, waited on by the next
 * call's stream, or the previous call's work finished). */
typedef struct AspsVerifier AspsVerifier;

/** Creates a verifier on CUDA device `device` (its primary context, the one the CUDA runtime
 * uses). On success *out holds it; on failure *out is NULL. max_draft is at most
 * ASPS_MAX_DRAFT (ASPS_ERR_TOO_LARGE otherwise). */
int32_t asps_verifier_create(int32_t device, int32_t max_batch, int32_t max_draft,
                             AspsVerifier** out);

/** Destroys a verifier (NULL is allowed). Work queued with it must have finished. */
int32_t asps_verifier_destroy(AspsVerifier* verifier);

/** Checks `args` on the host, then queues the verification on `stream` without synchronising
 * (capturable in a CUDA graph): one kernel for the smallest greedy calls (at most one logits
 * row per SM), else two. A
 * stream of another context is refused (ASPS_ERR_INVALID_ARGUMENT). The call makes the
 * verifier's context (the device's primary context) current on the calling thread.
 *
 * Not thread-safe: never call it on one verifier from two threads at once, and order calls on
 * one verifier on the device (the same stream, or the caller synchronises between streams);
 * they share its workspace. One verifier per concurrent caller. */
int32_t asps_verify(AspsVerifier* verifier, const AspsVerifyArgs* args, asps_stream_t stream);

/** Kernels and a reusable workspace for tree calls of up to max_batch requests of up to
 * max_nodes nodes (at most ASPS_TREE_MAX_NODES). Not thread-safe, and its calls must be
 * ordered, exactly as an AspsVerifier. */
typedef struct AspsTreeVerifier AspsTreeVerifier;

/** Creates a tree verifier on CUDA device `device` (its primary context). On success *out
 * holds it; on failure *out is NULL. */
int32_t asps_tree_verifier_create(int32_t device, int32_t max_batch, int32_t max_nodes,
                                  AspsTreeVerifier** out);

/** Destroys a tree verifier (NULL is allowed). Work queued with it must have finished. */
int32_t asps_tree_verifier_destroy(AspsTreeVerifier* verifier);

/** Checks `args` on the host, then queues the tree verification on `stream` without
 * synchronising (two kernels; capturable in a CUDA graph). The same contract as asps_verify:
 * a stream of another context is refused, and calls on one verifier are never concurrent. */
int32_t asps_tree_verify(AspsTreeVerifier* verifier, const AspsTreeVerifyArgs* args,
                         asps_stream_t stream);

/** A static, NUL-terminated description of an AspsStatus or an AspsRequestStatus code. */
const char* asps_status_string(int32_t status);
const char* asps_request_status_string(int32_t status);

#ifdef __cplusplus
}
#endif

#endif /* ASPS_H */
