// Philox4x32-10 and the counter layout of the noise streams; the Rust twin is src/rng/ and the
// layout is documented there (src/rng/noise.rs). Both are checked against the Random123
// known-answer vectors.
#pragma once

#include <stdint.h>

namespace asps {

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    if (i > 0) {
      k.x += W0;
      k.y += W1;
    }
    const uint32_t hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
    const uint32_t hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
    c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}

// Purpose codes (counter word 1, bits 24..31): must match StreamLayout::STANDARD.
enum Purpose : uint32_t {
  PURPOSE_RESIDUAL = 1,
  PURPOSE_BONUS = 2,
  PURPOSE_ACCEPT = 3,
  PURPOSE_SPS_ACCEPT = 4,
};

// The Philox block of (seed, offset, purpose, row, block): key = seed, counter = (block,
// purpose << 24 | row, offset).
__device__ __forceinline__ uint4 noise_block(uint64_t seed, uint64_t offset, uint32_t purpose,
                                             uint32_t row, uint32_t block) {
  const uint4 c = make_uint4(block, (purpose << 24) | (row & 0x00FFFFFFu),
                             static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32));
  return philox4x32_10(c, make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)));
}

}  // namespace asps
