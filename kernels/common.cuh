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
  REQUEST_BAD_TEMPERATURE = 7,  // negative, NaN, infinite, or so small that 1/T is infinite
  REQUEST_NO_OUTCOME = 8,       // rounding left every outcome with weight 0
};

// Every global-memory access of the kernels goes through ld() and st(). On the GPU they are
// plain loads and stores; the CPU emulator (tests/emu) defines ASPS_GLOBAL_ACCESS to count
// their bytes and check their alignment and range.
#ifndef ASPS_GLOBAL_ACCESS
#define ASPS_GLOBAL_ACCESS(ptr, bytes, align, write) ((void)0)
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

// Calls f(index, value) for every element of row[0, len), each thread taking its share, with
// 16-byte loads where the row allows: a scalar head up to the first 16-byte boundary, a
// vectorised body, a scalar tail. `row` must be aligned to sizeof(T) (every typed pointer is).
template <typename T, typename F>
__device__ __forceinline__ void for_each_in_row(const T* __restrict__ row, int len, F&& f) {
  constexpr int N = Vec16<T>::N;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(row);
  int head = static_cast<int>(((16 - (addr & 15)) & 15) / sizeof(T));
  if (head > len) head = len;
  for (int i = threadIdx.x; i < head; i += blockDim.x) f(i, to_float(ld(row + i)));
  const int body = (len - head) / N;
  const uint4* vec = reinterpret_cast<const uint4*>(row + head);
  for (int j = threadIdx.x; j < body; j += blockDim.x) {
    Vec16<T> v;
    v.raw = ld(vec + j);
#pragma unroll
    for (int k = 0; k < N; ++k) f(head + j * N + k, to_float(v.elem[k]));
  }
  for (int i = head + body * N + threadIdx.x; i < len; i += blockDim.x) f(i, to_float(ld(row + i)));
}

}  // namespace asps
