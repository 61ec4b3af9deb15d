// Host stand-in for CUDA's cuda_bf16.h, for the kernel emulator (tests/emu).
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t out = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &out, 4);
  return f;
}
