// Philox4x32-10 and the counter layout of the noise streams; the Rust twin is src/rng/ and the
// layout is documented there (src/rng/noise.rs). Both are checked against the Random123
// known-answer vectors.
#pragma once

#include <stdint.h>

// The CPU emulator (tests/emu) counts Philox calls of the noise streams through this hook.
#ifndef ASPS_PHILOX_CALL
#define ASPS_PHILOX_CALL() ((void)0)
#endif

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
  PURPOSE_DESCEND = 5,
  PURPOSE_TREE_NODE = 6,
  PURPOSE_TREE_EMIT = 7,
};

// The Philox block of (seed, offset, purpose, row, block): key = seed, counter = (block,
// purpose << 24 | row, offset).
__device__ __forceinline__ uint4 noise_block(uint64_t seed, uint64_t offset, uint32_t purpose,
                                             uint32_t row, uint32_t block) {
  ASPS_PHILOX_CALL();
  const uint4 c = make_uint4(block, (purpose << 24) | (row & 0x00FFFFFFu),
                             static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32));
  return philox4x32_10(c, make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)));
}

}  // namespace asps

namespace asps {

// The uniform of two Philox words, as a float strictly inside (0, 1), built with integer
// operations only (no fp64, no rounding; src/rng/noise.rs `unit` is its bit-for-bit twin).
// Read x = hi * 2^32 + lo as a 64-bit fixed-point number in [0, 1): k = clz(x) in 0..=64
// picks the binade [2^-(k+1), 2^-k) with its exact probability 2^-(k+1), the 22 bits after
// the leading one pick one of 2^22 equal cells in it, and u is that cell's midpoint (mantissa
// `cell << 1 | 1`). So u is a uniform variate rounded to 22 significant bits, with that
// relative precision down to 2^-42 and exact binade masses down to 2^-64 (race winners of
// small weight draw tiny u), and 2^-65 < u <= 1 - 2^-24. x = 0 (probability 2^-64) lands in
// [2^-65, 2^-64); nothing lands lower.
__device__ __forceinline__ float unit_from_words(uint32_t hi, uint32_t lo) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  const uint32_t k = static_cast<uint32_t>(__clzll(static_cast<long long>(x)));
  const uint32_t cell = k < 64 ? static_cast<uint32_t>((x << k) >> 41) & 0x3FFFFFu : 0u;
  return __uint_as_float(((126u - k) << 23) | (cell << 1) | 1u);
}

// -ln E with E = -ln(1 - u): a standard Gumbel variate. E is computed from u near 0, where u
// keeps its relative precision; 2^-65 < u <= 1 - 2^-24 keeps E in (2^-65, 16.7]: finite.
__device__ __forceinline__ float gumbel_from_unit(float u) { return -logf(-log1pf(-u)); }

// The two uniforms of tile j (tokens 16 j .. 16 j + 15) of a race's noise stream (seed, offset,
// purpose, row): words 0-1 of Philox block j for the race between tiles, words 2-3 for the pick
// inside the winning tile (src/rng/noise.rs, "Races").
struct TileUniforms {
  float race;
  float pick;
};

__device__ __forceinline__ TileUniforms tile_uniforms(uint64_t seed, uint64_t offset,
                                                      uint32_t purpose, uint32_t row,
                                                      uint32_t tile) {
  const uint4 w = noise_block(seed, offset, purpose, row, tile);
  return TileUniforms{unit_from_words(w.x, w.y), unit_from_words(w.z, w.w)};
}

// The one uniform of a scalar stream (seed, offset, purpose, row): words 0-1 of block 0.
__device__ __forceinline__ float scalar_uniform(uint64_t seed, uint64_t offset, uint32_t purpose,
                                                 uint32_t row) {
  const uint4 w = noise_block(seed, offset, purpose, row, 0);
  return unit_from_words(w.x, w.y);
}

}  // namespace asps
