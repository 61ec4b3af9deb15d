// The device's read bandwidth, for the benches' memory floor: a read-only reduction over a
// buffer larger than L2, with 16-byte loads and a grid-stride loop. The XOR of everything read
// is written out so the loads cannot be optimised away.

#include <stdint.h>

#include "common.cuh"

extern "C" __global__ void asps_read_probe(const uint4* __restrict__ data, long long n_vec,
                                           unsigned int* __restrict__ out) {
  unsigned int acc = 0;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_vec;
       i += stride) {
    const uint4 v = __ldcs(data + i);  // streaming: read once, do not keep in L2
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) asps::st(out, acc);  // almost never taken, but the compiler cannot know
}
