/*
 * asps: verification of speculative drafts on the GPU (ASpS, SpS, greedy), exact.
 *
 * C ABI of the Rust crate `asps`. Link the crate's static library (libasps.a, with -lpthread
 * -ldl -lm) or its shared library (libasps.so). All pointers in AspsVerifyArgs are device
 * pointers in the verifier's CUDA context; all functions return an AspsStatus code.
 *
 * The Rust mirror of this header (src/capi/bindings.rs) is generated with bindgen and checked
 * by a test; change both together.
 */
#ifndef ASPS_H
#define ASPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A cudaStream_t or a CUstream (the same type); NULL is the legacy default stream. */
typedef struct CUstream_st* asps_stream_t;

/* The largest vocabulary (V) accepted: 2^30. A larger V is refused with ASPS_ERR_TOO_LARGE
 * before anything is launched: the kernels walk a row with 32-bit counters stepped by the
 * block size, which must not wrap past 2^31 - 1. */
#define ASPS_MAX_VOCAB 1073741824

/* The longest draft a verifier takes (MAX_DRAFT of kernels/launch_config.h): the kernels merge
 * a request's 2n + 1 rows in shared memory. */
#define ASPS_MAX_DRAFT 64

/* Element type of the logits. */
typedef enum AspsDtype {
  ASPS_DTYPE_F32 = 0,
  ASPS_DTYPE_F16 = 1,
  ASPS_DTYPE_BF16 = 2
} AspsDtype;

/* Verification rule, for requests whose temperature is not 0 (those are greedy). */
typedef enum AspsMethod {
  ASPS_METHOD_ASPS = 0,  /* Accelerated Speculative Sampling (tree-wise maximal coupling) */
  ASPS_METHOD_SPS = 1,   /* token-wise speculative sampling */
  ASPS_METHOD_GREEDY = 2 /* keep draft tokens while they are the target's argmax */
} AspsMethod;

/* Returned by every function. Nothing is launched unless ASPS_OK is returned. */
typedef enum AspsStatus {
  ASPS_OK = 0,
  ASPS_ERR_INVALID_ARGUMENT = 1, /* a null argument struct or handle, or an unknown enum code */
  ASPS_ERR_NULL_POINTER = 2,     /* a device pointer in AspsVerifyArgs is null */
  ASPS_ERR_MISALIGNED = 3,       /* a device pointer is not aligned to its element type */
  ASPS_ERR_SHAPE = 4,            /* B, n or V is < 1, a stride is smaller than V or negative */
  ASPS_ERR_TOO_LARGE = 5,        /* V > ASPS_MAX_VOCAB, or a shape passes what the kernels index
                                    (2^31 blocks, 2^63 elements) */
  ASPS_ERR_CAPACITY = 6,         /* more requests or draft tokens than the verifier was made for */
  ASPS_ERR_KERNELS_MISSING = 7,  /* built without nvcc (or for the emulated device of its tests) */
  ASPS_ERR_NO_DRIVER = 8,        /* no CUDA driver or no such device */
  ASPS_ERR_CUDA = 9,             /* the CUDA driver reported an error */
  ASPS_ERR_INTERNAL = 10         /* a bug in asps, caught at the boundary */
} AspsStatus;

/* Written per request into out_status by the kernels. A request that is not OK emits nothing
 * (tokens -1, counts 0); its offset is advanced all the same. */
typedef enum AspsRequestStatus {
  ASPS_REQUEST_OK = 0,
  ASPS_REQUEST_NAN = 1,                    /* a logits row holds NaN */
  ASPS_REQUEST_POS_INF = 2,                /* a logits row holds +inf */
  ASPS_REQUEST_ALL_MASKED = 3,             /* a logits row is entirely -inf */
  ASPS_REQUEST_TOKEN_OUT_OF_RANGE = 4,     /* a draft token id is < 0 or >= V */
  ASPS_REQUEST_IMPOSSIBLE_DRAFT_TOKEN = 5, /* the draft gives a draft token a -inf logit */
  ASPS_REQUEST_BAD_DRAFT_LEN = 6,          /* draft_lens[b] < 1 or > max_draft */
  ASPS_REQUEST_BAD_TEMPERATURE = 7,        /* negative, NaN, infinite, or 1/T not a normal
                                              float (T < 2.9e-39 or T > 8.5e37) */
  ASPS_REQUEST_NO_OUTCOME = 8,             /* a rejected draft token whose residual f32 cannot
                                              resolve (the rows agree to ~1e-7 but at that
                                              token): sample that step from the target */
  ASPS_REQUEST_BAD_TRUNCATION = 9          /* top_k < 0, top_p outside (0, 1], min_p outside
                                              [0, 1), NaN (asps_verify_truncated) */
} AspsRequestStatus;

/* One verification call over a batch of B requests, each with up to n = max_draft draft tokens
 * over a vocabulary of V. Strides are in elements. Token buffers are packed. */
typedef struct AspsVerifyArgs {
  int32_t method;                /* AspsMethod */
  int32_t dtype;                 /* AspsDtype of both logits buffers */
  int32_t batch;                 /* B >= 1 */
  int32_t max_draft;             /* n >= 1 */
  int32_t vocab;                 /* 1 <= V <= ASPS_MAX_VOCAB */
  int32_t reserved;              /* set to 0 */
  const void* target_logits;     /* [B, n + 1, V] */
  int64_t target_batch_stride;   /* elements between requests */
  int64_t target_row_stride;     /* elements between rows, >= V */
  const void* draft_logits;      /* [B, n, V] */
  int64_t draft_batch_stride;
  int64_t draft_row_stride;
  const int32_t* draft_tokens;   /* [B, n] */
  const int32_t* draft_lens;     /* [B]: n_b in 1..n; rows past n_b are not read */
  const float* temperatures;     /* [B]: 0 = greedy */
  const uint64_t* seeds;         /* [B] */
  uint64_t* offsets;             /* [B]: read, then advanced by 1 on the device */
  int32_t* out_tokens;           /* [B, n + 1]: kept draft tokens, then one more; -1 padded */
  int32_t* out_num_emitted;      /* [B] */
  int32_t* out_num_accepted;     /* [B] */
  int32_t* out_status;           /* [B]: AspsRequestStatus */
} AspsVerifyArgs;

/* Per-request truncation of a call (asps_verify_truncated): [B] device arrays of the target's
 * and the draft's top-k, top-p and min-p, applied after the temperature in that order, each
 * keeping ties at its boundary (the draft's: the parameters the draft tokens were drawn with).
 * A NULL array leaves that parameter off for every request (top_k 0, top_p 1, min_p 0). Values
 * out of their domain (top_k < 0, top_p outside (0, 1], min_p outside [0, 1), NaN) are
 * reported per request as ASPS_REQUEST_BAD_TRUNCATION, greedy requests included, which
 * otherwise ignore truncation. The arrays are device memory of the verifier's context, valid
 * until the queued work has finished. */
typedef struct AspsTruncationArgs {
  const int32_t* target_top_k;   /* [B] or NULL */
  const float* target_top_p;     /* [B] or NULL */
  const float* target_min_p;     /* [B] or NULL */
  const int32_t* draft_top_k;    /* [B] or NULL */
  const float* draft_top_p;      /* [B] or NULL */
  const float* draft_min_p;      /* [B] or NULL */
} AspsTruncationArgs;

/* Kernels and a reusable workspace for up to max_batch requests of up to max_draft tokens.
 *
 * A verifier is NOT thread-safe, and its calls must be ordered: the two kernels of a call
 * pass their results through its one workspace, so two calls that overlap (on the host or on
 * the device) corrupt each other's results. Use one verifier per concurrent caller (per thread,
 * per stream). Calls on one verifier must come one after another on the host (never from two
 * threads at once without a lock) and be ordered on the device: queued on the same stream, or
 * the caller synchronises (an event recorded after the previous call, waited on by the next
 * call's stream, or the previous call's work finished). */
typedef struct AspsVerifier AspsVerifier;

/* Creates a verifier on CUDA device `device` (its primary context, the one the CUDA runtime
 * uses). On success *out holds it; on failure *out is NULL. max_draft is at most
 * ASPS_MAX_DRAFT (ASPS_ERR_TOO_LARGE otherwise). */
int32_t asps_verifier_create(int32_t device, int32_t max_batch, int32_t max_draft,
                             AspsVerifier** out);

/* Destroys a verifier (NULL is allowed). Work queued with it must have finished. */
int32_t asps_verifier_destroy(AspsVerifier* verifier);

/* Checks `args` on the host, then queues the verification on `stream` without synchronising
 * (capturable in a CUDA graph). A stream of another context is refused
 * (ASPS_ERR_INVALID_ARGUMENT); V > ASPS_MAX_VOCAB is refused (ASPS_ERR_TOO_LARGE). The call
 * makes the verifier's context (the device's primary context) current on the calling thread.
 *
 * Not thread-safe: never call it on one verifier from two threads at once, and order calls on
 * one verifier on the device (the same stream, or the caller synchronises between streams);
 * they share its workspace. One verifier per concurrent caller. */
int32_t asps_verify(AspsVerifier* verifier, const AspsVerifyArgs* args, asps_stream_t stream);

/* asps_verify with per-request truncation (AspsTruncationArgs; NULL or all arrays NULL: exactly
 * asps_verify). With any array given, the call queues one more kernel, which finds each
 * truncating row's kept set in at most 10 passes over the row. A draft token outside its own
 * draft row's kept set is reported as ASPS_REQUEST_IMPOSSIBLE_DRAFT_TOKEN. */
int32_t asps_verify_truncated(AspsVerifier* verifier, const AspsVerifyArgs* args,
                              const AspsTruncationArgs* truncation, asps_stream_t stream);

/* A static, NUL-terminated description of an AspsStatus or an AspsRequestStatus code. */
const char* asps_status_string(int32_t status);
const char* asps_request_status_string(int32_t status);

#ifdef __cplusplus
}
#endif

#endif /* ASPS_H */
