// Shared device helpers: logit loads for f32/f16/bf16, 16-byte vector loads, and the row
// status codes that the Rust side mirrors in src/cuda/status.rs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

namespace asps {

// Status of a row, and of a request (the first bad row's status, or a request-level problem),
// written by the kernels: must match `RowStatus` in src/cuda/status.rs and `AspsRequestStatus`
// in include/asps.h.
enum RowStatusCode : int {
  ROW_OK = 0,
  ROW_NAN = 1,                  // an entry is NaN
  ROW_POS_INF = 2,              // an entry is +inf
  ROW_ALL_MASKED = 3,           // every entry is -inf
  ROW_TOKEN_OUT_OF_RANGE = 4,   // the row's draft token is < 0 or >= V
  ROW_IMPOSSIBLE_TOKEN = 5,     // the draft row gives its draft token logit -inf
  REQUEST_BAD_DRAFT_LEN = 6,    // n_b < 1 or n_b > n
  REQUEST_BAD_TEMPERATURE = 7,  // negative, NaN, infinite, or 1/T infinite or subnormal
  REQUEST_NO_OUTCOME = 8,       // a rejection whose residual f32 cannot resolve (status.rs)
  REQUEST_BAD_TRUNCATION = 9,   // top_k < 0, top_p outside (0, 1], min_p outside [0, 1), NaN
};

// Every global-memory access of the kernels goes through ld() and st(). On the GPU they are
// plain loads and stores; the CPU emulator (tests/emu) defines ASPS_GLOBAL_ACCESS to count
// their bytes and check their alignment and range.
#ifndef ASPS_GLOBAL_ACCESS
#define ASPS_GLOBAL_ACCESS(ptr, bytes, align, write) ((void)0)
#endif

// A device function kept as one machine-code copy that every caller in a kernel calls, never
// inlined: for computations that several blocks must agree on bit for bit (verify.cuh,
// plan_request), since copies inlined at different call sites may be optimised differently
// (an FMA contracted in one copy and not in another). Give it values and pointers: a reference
// to a kernel parameter makes every thread copy the parameter to local memory. The CPU
// emulator defines its own.
#ifndef ASPS_NOINLINE
#define ASPS_NOINLINE __noinline__
#endif

template <typename T>
__device__ __forceinline__ T ld(const T* p) {
  ASPS_GLOBAL_ACCESS(p, sizeof(T), alignof(T), false);
  return *p;
}

template <typename T>
__device__ __forceinline__ void st(T* p, T value) {
  ASPS_GLOBAL_ACCESS(p, sizeof(T), alignof(T), true);
  *p = value;
}

// A load from L2, around this SM's L1 (not coherent between blocks): for data that other
// blocks of the same launch wrote (verify.cu, the last block of a request).
template <typename T>
__device__ __forceinline__ T ld_l2(const T* p) {
  ASPS_GLOBAL_ACCESS(p, sizeof(T), alignof(T), false);
  return __ldcg(p);
}

// atomicAdd on a global counter; returns the value before.
__device__ __forceinline__ unsigned atomic_add(unsigned* p, unsigned value) {
  ASPS_GLOBAL_ACCESS(p, sizeof(unsigned), alignof(unsigned), false);
  ASPS_GLOBAL_ACCESS(p, sizeof(unsigned), alignof(unsigned), true);
  return atomicAdd(p, value);
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// Element i of a row of T, as float.
template <typename T>
__device__ __forceinline__ float load_float(const T* __restrict__ row, int i) {
  return to_float(ld(row + i));
}

// The CPU emulator (tests/emu) counts the exponentials and logarithms of the vocabulary loops
// through this hook (per logit, one of the structure bench's counts).
#ifndef ASPS_TRANSCENDENTAL_CALL
#define ASPS_TRANSCENDENTAL_CALL() ((void)0)
#endif

// 2^x by the SFU's approximation (ex2.approx.ftz: relative error about 2^-22, results below
// 2^-126 flushed to 0, 2^-inf = 0, NaN stays NaN): the exponential of the vocabulary loops,
// one instruction where expf takes about eight. The emulator uses the host's exp2f.
__device__ __forceinline__ float fast_exp2(float x) {
  ASPS_TRANSCENDENTAL_CALL();
#ifdef ASPS_EMULATOR
  const float y = exp2f(x);
  return y < 0x1p-126f ? 0.f : y;
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

// log2(e): exp(y) = 2^(y log2(e)).
constexpr float LOG2E = 1.4426950408889634f;

// The factor c of exp((x - m) / T) = 2^((x - m) c), c = log2(e) / T, from inv_t = 1/T: finite
// for every valid temperature (kernels/sampling.cuh, temperature_is_valid, which bounds T
// below exactly so), so x = m gives 2^0 = 1, never 0 * inf.
__device__ __forceinline__ float exp2_factor(float inv_t) { return inv_t * LOG2E; }

// How many elements of T one 16-byte load carries.
template <typename T>
struct Vec16 {
  static constexpr int N = 16 / sizeof(T);
  union {
    uint4 raw;
    T elem[N];
  };
};

// Row r of request b in a logits array of element strides batch_stride and row_stride (64-bit
// offsets).
template <typename T>
__device__ __forceinline__ const T* logits_row(const void* logits, long long batch_stride,
                                               long long row_stride, int b, int r) {
  return static_cast<const T*>(logits) + static_cast<long long>(b) * batch_stride +
         static_cast<long long>(r) * row_stride;
}

// Tokens per tile: the unit of one thread's work in the vocabulary loops (one, two or four
// 16-byte loads of a 16-token-aligned run) and of the residual and bonus races' noise (one
// Philox block per tile: src/rng/noise.rs). Parts of split rows start at multiples of it
// (src/cuda/verify/split.rs, PART_ALIGN).
constexpr int TILE = 16;

// Tile t of a row as floats, by 16-byte loads, all issued before any is used (the row starts
// on a 16-byte boundary and the tile is whole).
template <typename T>
__device__ __forceinline__ void load_tile_vectorised(const T* row, int t, float (&x)[TILE]) {
  constexpr int N = Vec16<T>::N;
  const uint4* v = reinterpret_cast<const uint4*>(row + t * TILE);
  Vec16<T> parts[TILE / N];
#pragma unroll
  for (int j = 0; j < TILE / N; ++j) parts[j].raw = ld(v + j);
#pragma unroll
  for (int j = 0; j < TILE / N; ++j) {
    if constexpr (sizeof(T) == 2 && !std::is_same<T, __half>::value) {
      // bf16 is the high half of an f32: one shift or one mask per element, where the
      // conversion intrinsic spends a byte permute and a shift on the odd elements.
      const uint32_t w[4] = {parts[j].raw.x, parts[j].raw.y, parts[j].raw.z, parts[j].raw.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        x[j * N + 2 * k] = __uint_as_float(w[k] << 16);
        x[j * N + 2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
      }
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) x[j * N + k] = to_float(parts[j].elem[k]);
    }
  }
}

// Tile t of a row of `len` elements as floats, element by element; those at or past len read
// as -inf (masked: they weigh 0 everywhere).
template <typename T>
__device__ __forceinline__ void load_tile_scalar(const T* row, int len, int t, float (&x)[TILE]) {
#pragma unroll
  for (int i = 0; i < TILE; ++i) {
    const int v = t * TILE + i;
    x[i] = v < len ? load_float(row, v) : -INFINITY;
  }
}

// Calls f(t, x) for this thread's tiles t of a row of `len` elements (t = threadIdx.x,
// + blockDim.x, ...; tile t holds elements [16 t, 16 t + 16), x their values as floats, -inf
// past len), in increasing t: by 16-byte loads where the row starts on a 16-byte boundary, in a
// loop of its own (the vocabulary loop proper, holding no scalar path), then the rest (a last,
// partial tile, or every tile of a row that is not so aligned) element by element.
template <typename T, typename F>
__device__ __forceinline__ void for_each_tile(const T* __restrict__ row, int len, F&& f) {
  const int tiles = (len + TILE - 1) / TILE;
  int t = threadIdx.x;
  if ((reinterpret_cast<uintptr_t>(row) & 15) == 0) {
    for (; t < len / TILE; t += blockDim.x) {
      float x[TILE];
      load_tile_vectorised(row, t, x);
      f(t, x);
    }
  }
  for (; t < tiles; t += blockDim.x) {
    float x[TILE];
    load_tile_scalar(row, len, t, x);
    f(t, x);
  }
}

// for_each_tile over two rows at once: f(t, x, y) with x from `a` and y from `b`, vectorised
// where both rows start on a 16-byte boundary.
template <typename T, typename F>
__device__ __forceinline__ void for_each_tile_pair(const T* __restrict__ a,
                                                   const T* __restrict__ b, int len, F&& f) {
  const int tiles = (len + TILE - 1) / TILE;
  int t = threadIdx.x;
  if (((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b)) & 15) == 0) {
    for (; t < len / TILE; t += blockDim.x) {
      float x[TILE], y[TILE];
      load_tile_vectorised(a, t, x);
      load_tile_vectorised(b, t, y);
      f(t, x, y);
    }
  }
  for (; t < tiles; t += blockDim.x) {
    float x[TILE], y[TILE];
    load_tile_scalar(a, len, t, x);
    load_tile_scalar(b, len, t, y);
    f(t, x, y);
  }
}

// Calls f(index, value) for every element of row[0, len) (truncation's passes over a row), each
// thread taking its share in increasing order, with 16-byte loads where the row allows: a scalar
// head up to the row's first 16-byte boundary, a vectorised body in which a thread takes runs of
// N consecutive elements, a scalar tail. Typed pointers are aligned to sizeof(T).
template <typename T, typename F>
__device__ __forceinline__ void for_each_in_row(const T* __restrict__ row, int len, F&& f) {
  constexpr int N = Vec16<T>::N;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(row);
  int head = static_cast<int>(((16 - (addr & 15)) & 15) / sizeof(T));
  if (head > len) head = len;
  for (int i = threadIdx.x; i < head; i += blockDim.x) f(i, to_float(ld(row + i)));
  const int body = (len - head) / N;
  const uint4* v = reinterpret_cast<const uint4*>(row + head);
  for (int j = threadIdx.x; j < body; j += blockDim.x) {
    const int first = head + j * N;
    Vec16<T> x;
    x.raw = ld(v + j);
#pragma unroll
    for (int k = 0; k < N; ++k) f(first + k, to_float(x.elem[k]));
  }
  for (int i = head + body * N + threadIdx.x; i < len; i += blockDim.x) f(i, to_float(ld(row + i)));
}

}  // namespace asps
