// Runs the device Philox on given counters and keys, so that a test can hold it to the
// Random123 known-answer vectors and to the CPU twin (src/rng/philox.rs).

#include "common.cuh"
#include "philox.cuh"

extern "C" __global__ void asps_philox_kat(const unsigned int* counters, const unsigned int* keys,
                                           unsigned int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  using asps::ld;
  using asps::st;
  const uint4 c = make_uint4(ld(counters + 4 * i), ld(counters + 4 * i + 1),
                             ld(counters + 4 * i + 2), ld(counters + 4 * i + 3));
  const uint4 r = asps::philox4x32_10(c, make_uint2(ld(keys + 2 * i), ld(keys + 2 * i + 1)));
  st(out + 4 * i, r.x);
  st(out + 4 * i + 1, r.y);
  st(out + 4 * i + 2, r.z);
  st(out + 4 * i + 3, r.w);
}
