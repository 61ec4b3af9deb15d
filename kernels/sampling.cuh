// The domain of a request's sampling parameters, written once for the kernels (the Rust rules
// are src/reference/sampling.rs; tests/sampling_rules.rs checks both against one table), and
// the one place the kernels take 1/T.
#pragma once

#include "common.cuh"
#include "verify_params.h"

namespace asps {

// A temperature is 0 (greedy) or a T whose 1/T is a normal f32 and whose log2(e)/T is finite
// (include/asps.h, ASPS_MIN_TEMPERATURE): an infinite factor breaks every scaled logit, and a
// subnormal 1/T would be flushed to 0 under -ftz, making a masked logit's (-inf) * 0 NaN. NaN
// fails every comparison.
__host__ __device__ __forceinline__ bool temperature_is_valid(float t) {
  return t == 0.f || (t >= ASPS_MIN_TEMPERATURE && t <= ASPS_MAX_TEMPERATURE);
}

// 1/T of a valid temperature, and 1 for T = 0 (greedy rows need only their max and argmax).
__device__ __forceinline__ float inv_temperature(float t) { return t > 0.f ? 1.f / t : 1.f; }

// One model's truncation parameters for one request (off: top_k 0, top_p 1, min_p 0).
struct Truncation {
  int top_k;
  float top_p;
  float min_p;
};

__host__ __device__ __forceinline__ bool truncation_is_off(const Truncation& t) {
  return t.top_k == 0 && t.top_p == 1.f && t.min_p == 0.f;
}

// The domain: top_k >= 0, top_p in (0, 1], min_p in [0, 1); NaN refused.
__host__ __device__ __forceinline__ bool truncation_is_valid(const Truncation& t) {
  return t.top_k >= 0 && t.top_p > 0.f && t.top_p <= 1.f && t.min_p >= 0.f && t.min_p < 1.f;
}

// Request b's parameters from one model's arrays (a null array: that parameter off).
__device__ __forceinline__ Truncation load_truncation(const AspsTruncation& arrays, int b) {
  return Truncation{arrays.top_k ? ld(arrays.top_k + b) : 0,
                    arrays.top_p ? ld(arrays.top_p + b) : 1.f,
                    arrays.min_p ? ld(arrays.min_p + b) : 0.f};
}

}  // namespace asps
