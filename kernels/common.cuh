// Shared device helpers: logit loads for f32/f16/bf16, 16-byte vector loads, and the row
// status codes that the Rust side mirrors in src/cuda/status.rs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

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

// How many elements of T one 16-byte load carries.
template <typename T>
struct Vec16 {
  static constexpr int N = 16 / sizeof(T);
  union {
    uint4 raw;
    T elem[N];
  };
};

// The loop of for_each_in_row and for_each_in_rows: every index of [0, len) once, each thread
// taking its share in increasing order, with 16-byte loads of `a` where the row allows (a scalar
// head up to a's first 16-byte boundary, a vectorised body, a scalar tail). In the body a thread
// takes runs of N consecutive elements, so neighbouring tokens (which share a Philox call of
// the per-token noise) are handled by one thread: exactly so when the head is even (rows whose
// start is an even number of elements past a 16-byte boundary, e.g. packed rows of an even V);
// with an odd head each run splits a pair at both ends, up to 1.25x (f16, bf16) or 1.5x (f32)
// the Philox calls of the even case. With PAIR, `b` is read at the same indices:
// by 16-byte loads too where it has a's alignment modulo 16, else element by element (still
// coalesced across the warp). Typed pointers are aligned to sizeof(T).
template <bool PAIR, typename T, typename F>
__device__ __forceinline__ void for_each_impl(const T* __restrict__ a, const T* __restrict__ b,
                                              int len, F&& f) {
  constexpr int N = Vec16<T>::N;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(a);
  int head = static_cast<int>(((16 - (addr & 15)) & 15) / sizeof(T));
  if (head > len) head = len;
  const auto scalar = [&](int i) {
    if constexpr (PAIR) {
      f(i, to_float(ld(a + i)), to_float(ld(b + i)));
    } else {
      f(i, to_float(ld(a + i)));
    }
  };
  for (int i = threadIdx.x; i < head; i += blockDim.x) scalar(i);
  const int body = (len - head) / N;
  const uint4* va = reinterpret_cast<const uint4*>(a + head);
  const uint4* vb = reinterpret_cast<const uint4*>(b + head);
  const bool b_vectorised = ((reinterpret_cast<uintptr_t>(b) - addr) & 15) == 0;
  for (int j = threadIdx.x; j < body; j += blockDim.x) {
    const int first = head + j * N;
    Vec16<T> x;
    x.raw = ld(va + j);
    if constexpr (PAIR) {
      Vec16<T> y;
      if (b_vectorised) {
        y.raw = ld(vb + j);
      } else {
#pragma unroll
        for (int k = 0; k < N; ++k) y.elem[k] = ld(b + first + k);
      }
#pragma unroll
      for (int k = 0; k < N; ++k) f(first + k, to_float(x.elem[k]), to_float(y.elem[k]));
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) f(first + k, to_float(x.elem[k]));
    }
  }
  for (int i = head + body * N + threadIdx.x; i < len; i += blockDim.x) scalar(i);
}

// Calls f(index, value) for every element of row[0, len) (see for_each_impl).
template <typename T, typename F>
__device__ __forceinline__ void for_each_in_row(const T* __restrict__ row, int len, F&& f) {
  for_each_impl<false>(row, row, len, f);
}

// Calls f(index, a[index], b[index]) for every index of [0, len) (see for_each_impl).
template <typename T, typename F>
__device__ __forceinline__ void for_each_in_rows(const T* __restrict__ a, const T* __restrict__ b,
                                                 int len, F&& f) {
  for_each_impl<true>(a, b, len, f);
}

}  // namespace asps
