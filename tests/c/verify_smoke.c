/*
 * A C engine's view of asps: include the header, link the crate, call the entry points.
 * Built by build.rs with the cc crate and linked into the c_abi test (tests/c_abi.rs), which
 * calls asps_c_smoke_main(). The host-side checks run everywhere; the real verification runs
 * when a GPU (or the emulated device of tests/emu) is present. Device memory is managed through
 * the CUDA driver API, loaded with dlopen so that the program links on machines without CUDA.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
  a.struct_size = sizeof a;
  a.draft_tokens = (const int32_t*)0x300000;
  a.draft_lens = (const int32_t*)0x300100;
  a.sampling.temperature = (const float*)0x300200;
  a.seeds = (const uint64_t*)0x300300;
  a.offsets = (uint64_t*)0x300400;
  a.out_tokens = (int32_t*)0x300500;
  a.out_num_emitted = (int32_t*)0x300600;
  a.out_num_accepted = (int32_t*)0x300700;
  a.out_status = (int32_t*)0x300800;
  return a;
}

/* fake_args() over a vocabulary of v, with the strides it needs, the logits far enough apart
 * (2^40 bytes) not to overlap the other arrays. */
static AspsVerifyArgs vocab_args(int32_t v) {
  AspsVerifyArgs a = fake_args();
  a.target_logits = (const void*)((uintptr_t)1 << 40);
  a.draft_logits = (const void*)((uintptr_t)2 << 40);
  a.vocab = v;
  a.target_row_stride = v;
  a.target_batch_stride = (int64_t)(N + 1) * v;
  a.draft_row_stride = v;
  a.draft_batch_stride = (int64_t)N * v;
  return a;
}

/* The layout of an older header, which ended before the draft temperature: what a caller built
 * against it passes (struct_size included). */
#define OLD_ARGS_SIZE offsetof(AspsVerifyArgs, sampling.draft_temperature)

/* A copy of the first `size` bytes of the argument struct at `a` (struct_size, its first field,
 * set to `size`) placed so that it ends where a page that may not be read begins: a library
 * reading past struct_size would crash. Returns NULL (and fails a check) if the pages cannot be
 * had. */
static void* at_page_end_of(const void* a, size_t size) {
  static unsigned char* pages = NULL;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (pages == NULL) {
    void* p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    if (p == MAP_FAILED) return NULL;
    pages = (unsigned char*)p;
    CHECK(mprotect(pages + page, page, PROT_NONE) == 0);
  }
  unsigned char* at = pages + page - size;
  memcpy(at, a, size);
  *(uint32_t*)at = (uint32_t)size;
  return at;
}

static AspsVerifyArgs* at_page_end(const AspsVerifyArgs* a, size_t size) {
  return (AspsVerifyArgs*)at_page_end_of(a, size);
}

static void host_checks(void) {
  AspsVerifyArgs a = fake_args();
  CHECK(asps_verify(NULL, NULL, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  /* Valid arguments, but no verifier. */
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  a = fake_args(); a.draft_tokens = NULL;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_NULL_POINTER);
  a = fake_args(); a.sampling.temperature = NULL;
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
  /* Optional arrays: NULL ones are fine, misaligned ones are refused before the handle. */
  a = fake_args(); a.sampling.draft.min_p = (const float*)0x300902;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_MISALIGNED);
  a = fake_args(); a.sampling.draft_temperature = (const float*)0x300a01;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_MISALIGNED);
  /* Arrays the kernels write may not overlap another array of the call. */
  a = fake_args(); a.out_status = a.out_num_emitted;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_OVERLAP);
  a = fake_args(); a.out_tokens = (int32_t*)((const char*)a.target_logits + 8);
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_OVERLAP);
  a = fake_args(); a.offsets = (uint64_t*)(uintptr_t)a.sampling.temperature;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_OVERLAP);
  /* Inputs may share memory. */
  a = fake_args(); a.draft_logits = a.target_logits;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  /* struct_size: at least ASPS_VERIFY_ARGS_MIN_SIZE. A struct that size is read (its empty
   * batch is refused as a shape), a shorter one is not read at all. */
  a = fake_args(); a.batch = 0;
  CHECK(asps_verify(NULL, at_page_end(&a, ASPS_VERIFY_ARGS_MIN_SIZE), NULL) == ASPS_ERR_SHAPE);
  a.struct_size = ASPS_VERIFY_ARGS_MIN_SIZE - 8;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  a.struct_size = 0;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  /* A size that cuts a field in half, or past what any header will have, is refused too. */
  a.struct_size = ASPS_VERIFY_ARGS_MIN_SIZE + 4;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  a.struct_size = ASPS_VERIFY_ARGS_MAX_SIZE + 8;
  CHECK(asps_verify(NULL, &a, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  /* An older header's struct, at the end of readable memory: read, never past its end. */
  CHECK(asps_verify(NULL, at_page_end(&a, OLD_ARGS_SIZE), NULL) == ASPS_ERR_SHAPE);
  a = fake_args();
  CHECK(asps_verify(NULL, at_page_end(&a, OLD_ARGS_SIZE), NULL) == ASPS_ERR_INVALID_ARGUMENT);
  /* A newer header's longer struct: accepted when the fields this library does not know are 0. */
  {
    unsigned char longer[sizeof(AspsVerifyArgs) + 16] __attribute__((aligned(8)));
    memset(longer, 0, sizeof longer);
    a = fake_args(); a.batch = 0;
    memcpy(longer, &a, sizeof a);
    ((AspsVerifyArgs*)longer)->struct_size = sizeof longer;
    CHECK(asps_verify(NULL, (const AspsVerifyArgs*)longer, NULL) == ASPS_ERR_SHAPE);
    longer[sizeof(AspsVerifyArgs) + 3] = 1;
    CHECK(asps_verify(NULL, (const AspsVerifyArgs*)longer, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  }
  /* The temperature bounds of the header: the least T whose log2(e)/T is a finite f32, and
   * 2^126. */
  {
    const float below = nextafterf(ASPS_MIN_TEMPERATURE, 0.0f);
    CHECK(isfinite((1.0f / ASPS_MIN_TEMPERATURE) * 1.4426950408889634f));
    CHECK(!isfinite((1.0f / below) * 1.4426950408889634f));
  }
  CHECK(ASPS_MAX_TEMPERATURE == ldexpf(1.0f, 126));
  CHECK(asps_verifier_create(0, 1, 1, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  CHECK(asps_tree_verify(NULL, NULL, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  CHECK(asps_tree_verifier_create(0, 1, 1, NULL) == ASPS_ERR_INVALID_ARGUMENT);
  CHECK(asps_tree_verifier_destroy(NULL) == ASPS_OK);
  CHECK(asps_verifier_destroy(NULL) == ASPS_OK);
  CHECK(strlen(asps_status_string(ASPS_ERR_MISALIGNED)) > 0);
  CHECK(strlen(asps_status_string(ASPS_ERR_OVERLAP)) > 0);
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
/* One call's results, read back. */
typedef struct Results {
  int32_t out[B][N + 1], emitted[B], accepted[B], status[B];
  uint64_t offsets[B];
} Results;

/* Sets the offsets to `offsets`, verifies `call` (whose device arrays are those of `a`),
 * waits, and reads the results. */
static void run_call(AspsVerifier* v, const AspsVerifyArgs* call, const AspsVerifyArgs* a,
                     const uint64_t* offsets, Results* r) {
  CHECK(htod((uint64_t)a->offsets, offsets, B * sizeof(uint64_t)) == 0);
  int32_t st = asps_verify(v, call, NULL);
  CHECK(st == ASPS_OK);
  if (st != ASPS_OK) fprintf(stderr, "asps_verify: %s\n", asps_status_string(st));
  CHECK(ctx_sync() == 0);
  CHECK(dtoh(r->out, (uint64_t)a->out_tokens, sizeof r->out) == 0);
  CHECK(dtoh(r->emitted, (uint64_t)a->out_num_emitted, sizeof r->emitted) == 0);
  CHECK(dtoh(r->accepted, (uint64_t)a->out_num_accepted, sizeof r->accepted) == 0);
  CHECK(dtoh(r->status, (uint64_t)a->out_status, sizeof r->status) == 0);
  CHECK(dtoh(r->offsets, (uint64_t)a->offsets, sizeof r->offsets) == 0);
}

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
  a.sampling.temperature = (const float*)upload(temps, sizeof temps);
  a.seeds = (const uint64_t*)upload(seeds, sizeof seeds);
  a.offsets = (uint64_t*)upload(offsets, sizeof offsets);
  int32_t zeros[B * (N + 1)] = {0};
  a.out_tokens = (int32_t*)upload(zeros, sizeof zeros);
  a.out_num_emitted = (int32_t*)upload(zeros, B * 4);
  a.out_num_accepted = (int32_t*)upload(zeros, B * 4);
  a.out_status = (int32_t*)upload(zeros, B * 4);

  Results r;
  run_call(v, &a, &a, offsets, &r);
  /* Greedy: keep 1, 2; reject 9; emit row 2's argmax, 3. */
  CHECK(r.status[0] == ASPS_REQUEST_OK);
  CHECK(r.accepted[0] == 2 && r.emitted[0] == 3);
  CHECK(r.out[0][0] == 1 && r.out[0][1] == 2 && r.out[0][2] == 3 && r.out[0][3] == -1);
  /* p = q: ASpS keeps the whole draft, then a bonus token. */
  CHECK(r.status[1] == ASPS_REQUEST_OK);
  CHECK(r.accepted[1] == 3 && r.emitted[1] == 4);
  CHECK(r.out[1][0] == 4 && r.out[1][1] == 0 && r.out[1][2] == 3);
  CHECK(r.out[1][3] >= 0 && r.out[1][3] < V);
  CHECK(r.offsets[0] == 1 && r.offsets[1] == 6);
  printf("c smoke: request 0 emitted %d %d %d; request 1 emitted %d %d %d %d\n", r.out[0][0],
         r.out[0][1], r.out[0][2], r.out[1][0], r.out[1][1], r.out[1][2], r.out[1][3]);

  /* The same call from an older header's shorter struct (no draft temperature), at the end of
   * readable memory, and with the draft temperature given as the target's: the same results. */
  Results old_struct, same_temperature;
  run_call(v, at_page_end(&a, OLD_ARGS_SIZE), &a, offsets, &old_struct);
  CHECK(memcmp(&old_struct, &r, sizeof r) == 0);
  AspsVerifyArgs with_draft_t = a;
  with_draft_t.sampling.draft_temperature = (const float*)upload(temps, sizeof temps);
  run_call(v, &with_draft_t, &a, offsets, &same_temperature);
  CHECK(memcmp(&same_temperature, &r, sizeof r) == 0);

  /* A greedy drafter (draft temperature 0) proposes its rows' largest logits; request 1's
   * first draft token, 4, is not one (its logit is 0.3, the row's largest 0.4): impossible. */
  float greedy_drafter[B] = {0.0f, 0.0f};
  AspsVerifyArgs greedy_draft = a;
  greedy_draft.sampling.draft_temperature = (const float*)upload(greedy_drafter, sizeof greedy_drafter);
  Results g;
  run_call(v, &greedy_draft, &a, offsets, &g);
  CHECK(g.status[0] == ASPS_REQUEST_OK && g.status[1] == ASPS_REQUEST_IMPOSSIBLE_DRAFT_TOKEN);
  CHECK(g.emitted[1] == 0 && g.out[1][0] == -1);

  /* With truncation. Request 0 (greedy) carries a top-p of 2, which is refused all the same.
   * Request 1's target keeps only its largest logits (top-k 1, ties kept): its first draft
   * token, 4, is not among them, so it is rejected and the emitted token is one of them. */
  int32_t top_k[B] = {0, 1};
  float top_p[B] = {2.0f, 1.0f};
  AspsVerifyArgs truncated = a;
  truncated.sampling.target.top_k = (const int32_t*)upload(top_k, sizeof top_k);
  truncated.sampling.target.top_p = (const float*)upload(top_p, sizeof top_p);
  Results t;
  run_call(v, &truncated, &a, offsets, &t);
  CHECK(t.status[0] == ASPS_REQUEST_BAD_TRUNCATION);
  CHECK(t.status[1] == ASPS_REQUEST_OK && t.accepted[1] == 0);
  float row_max = target[1][0][0];
  for (int t2 = 1; t2 < V; ++t2) row_max = target[1][0][t2] > row_max ? target[1][0][t2] : row_max;
  CHECK(t.out[1][0] >= 0 && t.out[1][0] < V && target[1][0][t.out[1][0]] == row_max);
  CHECK(t.out[1][1] == -1);
  printf("c smoke: with truncation, request 1 emitted %d\n", t.out[1][0]);
  const void* bufs[] = {a.target_logits, a.draft_logits, a.draft_tokens, a.draft_lens,
                        a.sampling.temperature, a.seeds, a.offsets, a.out_tokens,
                        a.out_num_emitted, a.out_num_accepted, a.out_status,
                        with_draft_t.sampling.draft_temperature,
                        greedy_draft.sampling.draft_temperature,
                        truncated.sampling.target.top_k, truncated.sampling.target.top_p};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) mem_free((uint64_t)bufs[i]);
}

/* A greedy tree call: a root whose target argmax is token 1, its children node 1 (token 1) and
 * node 2 (token 5), and node 3 (token 2) under node 1, whose row's argmax is 7: the walk keeps
 * node 1 (node 3's token is not node 1's argmax) and emits 7. The same through a struct that
 * ends at sampling.temperature. */
static void tree_run(void) {
  enum { TN = 4, TV = 16 };
  AspsTreeVerifier* tv = NULL;
  CHECK(asps_tree_verifier_create(0, 2, TN, &tv) == ASPS_OK);
  float target[TN][TV];
  for (int u = 0; u < TN; ++u)
    for (int t = 0; t < TV; ++t) target[u][t] = (u == 0 && t == 1) || (u == 1 && t == 7) ? 4.0f : 0.1f * (float)(t % 3);
  int32_t parents[TN] = {0, 0, 0, 1}, tokens[TN] = {0, 1, 5, 2}, num_nodes[1] = {TN};
  int32_t laws[1] = {ASPS_SIBLINGS_DETERMINISTIC}, zeros[1] = {0};
  float temps[1] = {0.0f};
  uint64_t seeds[1] = {3}, offsets[1] = {0};
  AspsTreeVerifyArgs a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof(AspsTreeVerifyArgs);
  a.rule = ASPS_TREE_TRAVERSAL;
  a.dtype = ASPS_DTYPE_F32;
  a.batch = 1;
  a.max_nodes = TN;
  a.vocab = TV;
  a.target_logits = (const void*)upload(target, sizeof target);
  a.target_batch_stride = TN * TV;
  a.target_node_stride = TV;
  a.num_nodes = (const int32_t*)upload(num_nodes, sizeof num_nodes);
  a.parents = (const int32_t*)upload(parents, sizeof parents);
  a.tokens = (const int32_t*)upload(tokens, sizeof tokens);
  a.sibling_laws = (const int32_t*)upload(laws, sizeof laws);
  a.seeds = (const uint64_t*)upload(seeds, sizeof seeds);
  a.offsets = (uint64_t*)upload(offsets, sizeof offsets);
  a.out_node = (int32_t*)upload(zeros, 4);
  a.out_token = (int32_t*)upload(zeros, 4);
  a.out_num_emitted = (int32_t*)upload(zeros, 4);
  a.out_status = (int32_t*)upload(zeros, 4);
  a.sampling.temperature = (const float*)upload(temps, sizeof temps);
  for (int pass = 0; pass < 2; ++pass) {
    CHECK(htod((uint64_t)a.out_node, zeros, 4) == 0);
    const AspsTreeVerifyArgs* call =
        pass == 0 ? &a
                  : (const AspsTreeVerifyArgs*)at_page_end_of(&a, ASPS_TREE_VERIFY_ARGS_MIN_SIZE);
    int32_t st = asps_tree_verify(tv, call, NULL);
    CHECK(st == ASPS_OK);
    if (st != ASPS_OK) fprintf(stderr, "asps_tree_verify: %s\n", asps_status_string(st));
    CHECK(ctx_sync() == 0);
    int32_t node = -2, token = -2, emitted = -2, status = -2;
    CHECK(dtoh(&node, (uint64_t)a.out_node, 4) == 0);
    CHECK(dtoh(&token, (uint64_t)a.out_token, 4) == 0);
    CHECK(dtoh(&emitted, (uint64_t)a.out_num_emitted, 4) == 0);
    CHECK(dtoh(&status, (uint64_t)a.out_status, 4) == 0);
    CHECK(status == ASPS_REQUEST_OK && node == 1 && token == 7 && emitted == 2);
    if (pass == 0) printf("c smoke: tree call kept node %d, then token %d\n", node, token);
  }
  const void* bufs[] = {a.target_logits, a.num_nodes, a.parents, a.tokens, a.sibling_laws,
                        a.seeds, a.offsets, a.out_node, a.out_token, a.out_num_emitted,
                        a.out_status, a.sampling.temperature};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) mem_free((uint64_t)bufs[i]);
  CHECK(asps_tree_verifier_destroy(tv) == ASPS_OK);
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
    if (st == ASPS_OK) tree_run();
    CHECK(asps_verifier_destroy(v) == ASPS_OK);
  }
  return failures;
}
