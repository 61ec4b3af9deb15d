// This crate's kernels, compiled for the host with cuda_emu.h, behind one C entry point each,
// for the emu_* tests, which compare them with the Rust reference. The verification kernels run
// the launches of the Rust launch plan; the others launch with their Rust launcher's grid;
// each with `block` threads per block.

#include <cstring>
#include <vector>

#include "emu_runtime.h"
#include "kernels.inc"

static bool bad_block(unsigned block) { return block == 0 || block % 32 != 0 || block > 1024; }

namespace asps {
// One block's kept set of a row, as the truncating row kernel finds it (kernels/verify.cu,
// row_part): truncating_row_pass, its statistics merged over the block, then
// truncate_row_after_pass (kernels/truncate.cuh); the kept set as 0/1 per token, and ln of its
// normaliser (out untouched and log_norm NaN for a row with no finite value).
template <typename T>
void emu_kept_set(const T* row, int len, Truncation tr, float inv_t, unsigned char* out,
                  float* log_norm) {
  __shared__ SelectScratch scratch;
  __shared__ SoftmaxState reduce[32];
  TopTiles top = top_tiles_empty();
  SoftmaxState state = truncating_row_pass(row, len, 0, inv_t, tr, top, scratch);
  state = softmax_state_block_reduce(state, inv_t, reduce);
  if (softmax_state_status(state) != ROW_OK) {
    if (threadIdx.x == 0) *log_norm = NAN;
    return;
  }
  float ln = 0.f;
  const KeptSet kept =
      truncate_row_after_pass(row, len, tr, state.max, state.sum, inv_t, top, scratch, ln);
  for (int i = static_cast<int>(threadIdx.x); i < len; i += static_cast<int>(blockDim.x)) {
    out[i] = is_kept(kept, to_float(row[i])) ? 1 : 0;
  }
  if (threadIdx.x == 0) *log_norm = ln;
}
}  // namespace asps

// One launch of a verification kernel, named as the launch plan names it
// (src/cuda/verify/plan.rs, which gives every launch of a call and its grid): 0 on success, 2
// for a name that is not a verification kernel.
extern "C" int asps_emu_verify_launch(const char* kernel, const asps::VerifyParams* params,
                                      unsigned grid, unsigned block) {
  if (bad_block(block)) return 1;
  struct Entry {
    const char* name;
    void (*run)(asps::VerifyParams);
  };
#define ASPS_EMU_ENTRIES(SUFFIX)                                                            \
  Entry{"asps_verify_rows_" #SUFFIX, asps_verify_rows_##SUFFIX},                            \
      Entry{"asps_verify_rows_truncating_" #SUFFIX, asps_verify_rows_truncating_##SUFFIX},  \
      Entry{"asps_verify_decide_" #SUFFIX, asps_verify_decide_##SUFFIX},                    \
      Entry{"asps_verify_fused_" #SUFFIX, asps_verify_fused_##SUFFIX}
  static const Entry kEntries[] = {ASPS_EMU_ENTRIES(f32), ASPS_EMU_ENTRIES(f16),
                                   ASPS_EMU_ENTRIES(bf16)};
#undef ASPS_EMU_ENTRIES
  for (const Entry& e : kEntries) {
    if (std::strcmp(e.name, kernel) != 0) continue;
    const asps::VerifyParams p = *params;
    emu::launch(e.name, dim3{grid}, dim3{block}, [&] { e.run(p); });
    return 0;
  }
  return 2;
}

// The kernels' rules for a request's parameters (kernels/sampling.cuh), for the one table that
// tests/sampling_rules.rs checks them and the Rust rules against.
extern "C" int asps_emu_temperature_is_valid(float t) { return asps::temperature_is_valid(t); }
extern "C" int asps_emu_truncation_is_valid(int top_k, float top_p, float min_p) {
  return asps::truncation_is_valid(asps::Truncation{top_k, top_p, min_p});
}

extern "C" int asps_emu_kept_set(int dtype, const void* row, int len, int top_k, float top_p,
                                 float min_p, float inv_t, unsigned char* out,
                                 float* log_norm, unsigned block) {
  if (bad_block(block)) return 1;
  const asps::Truncation tr{top_k, top_p, min_p};
  auto run = [&](auto typed) {
    emu::launch("asps_kept_set", dim3{1}, dim3{block}, [&] {
      asps::emu_kept_set(static_cast<decltype(typed)>(row), len, tr, inv_t, out, log_norm);
    });
  };
  switch (dtype) {
    case 0: run(static_cast<const float*>(nullptr)); return 0;
    case 1: run(static_cast<const __half*>(nullptr)); return 0;
    case 2: run(static_cast<const __nv_bfloat16*>(nullptr)); return 0;
    default: return 2;
  }
}

extern "C" int asps_emu_softmax_stats(int dtype, const void* logits, long long row_stride, int rows,
                                      int vocab, float inv_t, float* out_max, float* out_log_norm,
                                      int* out_status, unsigned block) {
  if (bad_block(block)) return 1;
  auto run = [&](auto kernel, auto typed) {
    emu::launch("asps_softmax_stats", dim3{static_cast<unsigned>(rows)}, dim3{block}, [&] {
      kernel(static_cast<decltype(typed)>(logits), row_stride, rows, vocab, inv_t, out_max,
             out_log_norm, out_status);
    });
  };
  switch (dtype) {
    case 0: run(asps_softmax_stats_f32, static_cast<const float*>(nullptr)); return 0;
    case 1: run(asps_softmax_stats_f16, static_cast<const __half*>(nullptr)); return 0;
    case 2: run(asps_softmax_stats_bf16, static_cast<const __nv_bfloat16*>(nullptr)); return 0;
    default: return 2;
  }
}

extern "C" int asps_emu_softmax(int dtype, const void* logits, long long row_stride, int rows,
                                int vocab, float inv_t, int log_space, float* out,
                                long long out_row_stride, int* out_status, unsigned block) {
  if (bad_block(block)) return 1;
  auto run = [&](auto kernel, auto typed) {
    emu::launch("asps_softmax", dim3{static_cast<unsigned>(rows)}, dim3{block}, [&] {
      kernel(static_cast<decltype(typed)>(logits), row_stride, rows, vocab, inv_t, log_space, out,
             out_row_stride, out_status);
    });
  };
  switch (dtype) {
    case 0: run(asps_softmax_f32, static_cast<const float*>(nullptr)); return 0;
    case 1: run(asps_softmax_f16, static_cast<const __half*>(nullptr)); return 0;
    case 2: run(asps_softmax_bf16, static_cast<const __nv_bfloat16*>(nullptr)); return 0;
    default: return 2;
  }
}

extern "C" int asps_emu_normalized_residual(const float* p, const float* q, long long row_stride,
                                            int rows, int vocab, float scale, float* out,
                                            long long out_row_stride, float* out_mass,
                                            unsigned block) {
  if (bad_block(block)) return 1;
  emu::launch("asps_normalized_residual", dim3{static_cast<unsigned>(rows)}, dim3{block}, [&] {
    asps_normalized_residual(p, q, row_stride, rows, vocab, scale, out, out_row_stride, out_mass);
  });
  return 0;
}

extern "C" int asps_emu_philox(const unsigned* counters, const unsigned* keys, unsigned* out, int n) {
  emu::launch("asps_philox_kat", dim3{static_cast<unsigned>(n + 127) / 128}, dim3{128},
              [&] { asps_philox_kat(counters, keys, out, n); });
  return 0;
}

// The race and pick uniforms of tiles [first, first + count) of one noise stream row, as the
// race loops draw them (kernels/philox.cuh, tile_uniforms): out[2 i], out[2 i + 1].
extern "C" void asps_emu_tile_uniforms(unsigned long long seed, unsigned long long offset,
                                       unsigned purpose, unsigned row, unsigned first,
                                       unsigned count, float* out) {
  for (unsigned i = 0; i < count; ++i) {
    const asps::TileUniforms u = asps::tile_uniforms(seed, offset, purpose, row, first + i);
    out[2 * i] = u.race;
    out[2 * i + 1] = u.pick;
  }
}

// One launch of a tree kernel, named as the tree launch plan names it (src/cuda/tree/plan.rs),
// and the bytes it loaded from global memory: 0 on success, 2 for a name that is not a tree
// kernel.
extern "C" int asps_emu_tree_launch(const char* kernel, const asps::TreeParams* params,
                                    unsigned grid, unsigned block,
                                    unsigned long long* bytes_read) {
  if (bad_block(block)) return 1;
  struct Entry {
    const char* name;
    void (*run)(asps::TreeParams);
  };
#define ASPS_EMU_ENTRIES(SUFFIX)                                 \
  Entry{"asps_tree_rows_" #SUFFIX, asps_tree_rows_##SUFFIX},     \
      Entry{"asps_tree_decide_" #SUFFIX, asps_tree_decide_##SUFFIX}
  static const Entry kEntries[] = {ASPS_EMU_ENTRIES(f32), ASPS_EMU_ENTRIES(f16),
                                   ASPS_EMU_ENTRIES(bf16)};
#undef ASPS_EMU_ENTRIES
  for (const Entry& e : kEntries) {
    if (std::strcmp(e.name, kernel) != 0) continue;
    const asps::TreeParams p = *params;
    *bytes_read = emu::launch(e.name, dim3{grid}, dim3{block}, [&] { e.run(p); }).bytes_read;
    return 0;
  }
  return 2;
}
