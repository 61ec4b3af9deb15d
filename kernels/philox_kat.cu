// Runs the device Philox on given counters and keys, so that a test can hold it to the
// Random123 known-answer vectors and to the CPU twin (src/rng/philox.rs).

#include "philox.cuh"

extern "C" __global__ void asps_philox_kat(const unsigned int* counters, const unsigned int* keys,
                                           unsigned int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint4 c = make_uint4(counters[4 * i], counters[4 * i + 1], counters[4 * i + 2],
                             counters[4 * i + 3]);
  const uint4 r = asps::philox4x32_10(c, make_uint2(keys[2 * i], keys[2 * i + 1]));
  out[4 * i] = r.x;
  out[4 * i + 1] = r.y;
  out[4 * i + 2] = r.z;
  out[4 * i + 3] = r.w;
}
