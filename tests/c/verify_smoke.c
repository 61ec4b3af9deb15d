/*
 * A C engine's view of asps: include the header, link the crate, call the entry points.
 * Built by build.rs with the cc crate and linked into the c_abi test (tests/c_abi.rs), which
 * calls asps_c_smoke_main(). The host-side checks run everywhere; the real verification runs
 * when a GPU (or the emulated device of tests/emu) is present. Device memory is managed through
 * the CUDA driver API, loaded with dlopen so that the program links on machines without CUDA.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "asps.h"

static int failures = 0;
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
      failures++;                                                          \
    }                                                                      \
  } while (0)

enum { B = 2, N = 3, V = 16 };

/* Fake, well-aligned device addresses: enough for the host-side checks, never dereferenced. */
static AspsVerifyArgs fake_args(void) {
  AspsVerifyArgs a;
  memset(&a, 0, sizeof a);
  a.method = ASPS_METHOD_ASPS;
  a.dtype = ASPS_DTYPE_F32;
  a.batch = B;
  a.max_draft = N;
  a.vocab = V;
  a.target_logits = (const void*)0x100000;
  a.target_batch_stride = (N + 1) * V;
  a.target_row_stride = V;
  a.draft_logits = (const void*)0x200000;
  a.draft_batch_stride = N * V;
  a.draft_row_stride = V;
  a.draft_tokens = (const int32_t*)0x300000;
  a.draft_lens = (const int32_t*)0x300100;
  a.temperatures = (const float*)0x300200;
  a.seeds = (const uint64_t*)0x300300;
  a.offsets = (uint64_t*)0x300400;
  a.out_tokens = (int32_t*)0x300500;
  a.out_num_emitted = (int32_t*)0x300600;
  a.out_num_accepted = (int32_t*)0x300700;
  a.out_status = (int32_t*)0x300800;
  return a;
}

/* fake_args() over a vocabulary of v, with the strides it needs. */
static AspsVerifyArgs vocab_args(int32_t v) {
  AspsVerifyArgs a = fake_args();
  a.vocab = v;
  a.target_row_stride = v;
  a.target_batch_stride = (int64_t)(N + 1) * v;
  a.draft_row_stride = v;
  a.draft_batch_stride = (int64_t)N * v;
  return a;
}

static void host_checks(void) {
  AspsVerifyArgs a = fake_args();
  CHECK(asps_verify(NULL, NULL, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  /* Valid arguments, but no verifier. */
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  a = fake_args(); a.draft_tokens = NULL;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_NULL_POINTER);
  a = fake_args(); a.seeds = (const uint64_t*)0x300304;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_MISALIGNED);
  a = fake_args(); a.dtype = ASPS_DTYPE_BF16; a.target_logits = (const void*)0x100001;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_MISALIGNED);
  a = fake_args(); a.batch = 0;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_SHAPE);
  a = fake_args(); a.max_draft = 0;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_SHAPE);
  a = fake_args(); a.target_row_stride = V - 1;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_SHAPE);
  a = fake_args(); a.draft_batch_stride = -1;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_SHAPE);
  a = fake_args(); a.dtype = 7;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  a = fake_args(); a.method = -1;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  a = fake_args(); a.target_batch_stride = INT64_MAX;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_TOO_LARGE);
  /* V up to ASPS_MAX_VOCAB passes the checks (then the null handle is refused); past it, not. */
  a = vocab_args(ASPS_MAX_VOCAB);
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  a = vocab_args(ASPS_MAX_VOCAB + 1);
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_TOO_LARGE);
  a = vocab_args(INT32_MAX);
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_TOO_LARGE);
  /* Truncation arrays: NULL ones are fine, misaligned ones are refused before the handle. */
  AspsTruncationArgs t;
  memset(&t, 0, sizeof t);
  a = fake_args();
  CHECK(asps_verify_truncated(NULL, &a, NULL, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  CHECK(asps_verify_truncated(NULL, &a, &t, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  t.draft_min_p = (const float*)0x300902;
  CHECK(asps_verify_truncated(NULL, &a, &t, NULL) == ASPS_ERR_MISALIGNED);
  CHECK(asps_verify_truncated(NULL, NULL, &t, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  CHECK(asps_verifier_create(0, 1, 1, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  CHECK(asps_verifier_destroy(NULL) == ASPS_OK);
  CHECK(strlen(asps_status_string(ASPS_ERR_MISALIGNED)) > 0);
  CHECK(strcmp(asps_request_status_string(ASPS_REQUEST_OK), "ok") == 0);
  CHECK(strlen(asps_status_string(12345)) > 0);
}

/* The driver API, loaded at run time. */
typedef int (*mem_alloc_t)(uint64_t*, size_t);
typedef int (*mem_free_t)(uint64_t);
typedef int (*htod_t)(uint64_t, const void*, size_t);
typedef int (*dtoh_t)(void*, uint64_t, size_t);
typedef int (*sync_t)(void);
typedef int (*get_name_t)(char*, int, int);
static mem_alloc_t mem_alloc;
static mem_free_t mem_free;
static htod_t htod;
static dtoh_t dtoh;
static sync_t ctx_sync;

static uint64_t upload(const void* host, size_t bytes) {
  uint64_t d = 0;
  CHECK(mem_alloc(&d, bytes) == 0);
  CHECK(htod(d, host, bytes) == 0);
  return d;
}

/* Request 0 is greedy with known argmaxes; request 1 is ASpS with identical target and draft
 * logits, which keeps every draft token. */
static void gpu_run(AspsVerifier* v) {
  void* cuda = dlopen("libcuda.so.1", RTLD_NOW);
  CHECK(cuda != NULL);
  if (!cuda) return;
  mem_alloc = (mem_alloc_t)dlsym(cuda, "cuMemAlloc_v2");
  mem_free = (mem_free_t)dlsym(cuda, "cuMemFree_v2");
  htod = (htod_t)dlsym(cuda, "cuMemcpyHtoD_v2");
  dtoh = (dtoh_t)dlsym(cuda, "cuMemcpyDtoH_v2");
  ctx_sync = (sync_t)dlsym(cuda, "cuCtxSynchronize");
  CHECK(mem_alloc && mem_free && htod && dtoh && ctx_sync);
  if (!(mem_alloc && mem_free && htod && dtoh && ctx_sync)) return;
  get_name_t get_name = (get_name_t)dlsym(cuda, "cuDeviceGetName");
  char name[128] = "?";
  if (get_name) get_name(name, sizeof name, 0);
  printf("c smoke: on %s\n", name);

  float target[B][N + 1][V], draft[B][N][V];
  for (int b = 0; b < B; ++b)
    for (int r = 0; r <= N; ++r)
      for (int t = 0; t < V; ++t) {
        /* Row r's argmax is token r + 1 (request 0); smooth logits elsewhere. */
        target[b][r][t] = (b == 0 && t == r + 1) ? 5.0f : 0.1f * (float)((t * 7 + r) % 5);
        if (r < N) draft[b][r][t] = b == 1 ? target[b][r][t] : 0.0f;
      }
  /* Request 0 drafts 1, 2, 9: the first two are the target's argmax, the third is not. */
  int32_t tokens[B][N] = {{1, 2, 9}, {4, 0, 3}};
  int32_t lens[B] = {3, 3};
  float temps[B] = {0.0f, 0.8f};
  uint64_t seeds[B] = {11, 12}, offsets[B] = {0, 5};

  AspsVerifyArgs a = fake_args();
  a.target_logits = (const void*)upload(target, sizeof target);
  a.draft_logits = (const void*)upload(draft, sizeof draft);
  a.draft_tokens = (const int32_t*)upload(tokens, sizeof tokens);
  a.draft_lens = (const int32_t*)upload(lens, sizeof lens);
  a.temperatures = (const float*)upload(temps, sizeof temps);
  a.seeds = (const uint64_t*)upload(seeds, sizeof seeds);
  a.offsets = (uint64_t*)upload(offsets, sizeof offsets);
  int32_t zeros[B * (N + 1)] = {0};
  a.out_tokens = (int32_t*)upload(zeros, sizeof zeros);
  a.out_num_emitted = (int32_t*)upload(zeros, B * 4);
  a.out_num_accepted = (int32_t*)upload(zeros, B * 4);
  a.out_status = (int32_t*)upload(zeros, B * 4);

  int32_t st = asps_verify(v, &a, NULL);
  CHECK(st == ASPS_OK);
  if (st != ASPS_OK) fprintf(stderr, "asps_verify: %s\n", asps_status_string(st));
  CHECK(ctx_sync() == 0);

  int32_t out[B][N + 1], emitted[B], accepted[B], status[B];
  uint64_t offsets_after[B];
  CHECK(dtoh(out, (uint64_t)a.out_tokens, sizeof out) == 0);
  CHECK(dtoh(emitted, (uint64_t)a.out_num_emitted, sizeof emitted) == 0);
  CHECK(dtoh(accepted, (uint64_t)a.out_num_accepted, sizeof accepted) == 0);
  CHECK(dtoh(status, (uint64_t)a.out_status, sizeof status) == 0);
  CHECK(dtoh(offsets_after, (uint64_t)a.offsets, sizeof offsets_after) == 0);
  /* Greedy: keep 1, 2; reject 9; emit row 2's argmax, 3. */
  CHECK(status[0] == ASPS_REQUEST_OK);
  CHECK(accepted[0] == 2 && emitted[0] == 3);
  CHECK(out[0][0] == 1 && out[0][1] == 2 && out[0][2] == 3 && out[0][3] == -1);
  /* p = q: ASpS keeps the whole draft, then a bonus token. */
  CHECK(status[1] == ASPS_REQUEST_OK);
  CHECK(accepted[1] == 3 && emitted[1] == 4);
  CHECK(out[1][0] == 4 && out[1][1] == 0 && out[1][2] == 3 && out[1][3] >= 0 && out[1][3] < V);
  CHECK(offsets_after[0] == 1 && offsets_after[1] == 6);
  printf("c smoke: request 0 emitted %d %d %d; request 1 emitted %d %d %d %d\n", out[0][0],
         out[0][1], out[0][2], out[1][0], out[1][1], out[1][2], out[1][3]);

  /* Again with truncation. Request 0 (greedy) carries a top-p of 2, which is refused all the
   * same. Request 1's target keeps only its largest logits (top-k 1, ties kept): its first
   * draft token, 4, is not among them, so it is rejected and the emitted token is one of them. */
  int32_t top_k[B] = {0, 1};
  float top_p[B] = {2.0f, 1.0f};
  AspsTruncationArgs trunc;
  memset(&trunc, 0, sizeof trunc);
  trunc.target_top_k = (const int32_t*)upload(top_k, sizeof top_k);
  trunc.target_top_p = (const float*)upload(top_p, sizeof top_p);
  st = asps_verify_truncated(v, &a, &trunc, NULL);
  CHECK(st == ASPS_OK);
  CHECK(ctx_sync() == 0);
  CHECK(dtoh(out, (uint64_t)a.out_tokens, sizeof out) == 0);
  CHECK(dtoh(accepted, (uint64_t)a.out_num_accepted, sizeof accepted) == 0);
  CHECK(dtoh(status, (uint64_t)a.out_status, sizeof status) == 0);
  CHECK(status[0] == ASPS_REQUEST_BAD_TRUNCATION);
  CHECK(status[1] == ASPS_REQUEST_OK && accepted[1] == 0);
  float row_max = target[1][0][0];
  for (int t2 = 1; t2 < V; ++t2) row_max = target[1][0][t2] > row_max ? target[1][0][t2] : row_max;
  CHECK(out[1][0] >= 0 && out[1][0] < V && target[1][0][out[1][0]] == row_max && out[1][1] == -1);
  printf("c smoke: with truncation, request 1 emitted %d\n", out[1][0]);
  mem_free((uint64_t)trunc.target_top_k);
  mem_free((uint64_t)trunc.target_top_p);
  const void* bufs[] = {a.target_logits, a.draft_logits, a.draft_tokens, a.draft_lens,
                        a.temperatures, a.seeds, a.offsets, a.out_tokens,
                        a.out_num_emitted, a.out_num_accepted, a.out_status};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) mem_free((uint64_t)bufs[i]);
}

/* Returns the number of failed checks; prints SKIPPED for the GPU part without a GPU. */
int asps_c_smoke_main(void) {
  host_checks();
  AspsVerifier* v = NULL;
  int32_t st = asps_verifier_create(0, 4, N, &v);
  if (st == ASPS_ERR_NO_DRIVER || st == ASPS_ERR_KERNELS_MISSING) {
    CHECK(v == NULL);
    printf("SKIPPED c smoke, GPU part: %s\n", asps_status_string(st));
  } else {
    CHECK(st == ASPS_OK);
    if (st == ASPS_OK) gpu_run(v);
    CHECK(asps_verifier_destroy(v) == ASPS_OK);
  }
  return failures;
}
