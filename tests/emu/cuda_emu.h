// A small CPU emulator of the CUDA execution model, enough to run this crate's kernels
// unchanged on the host: one std::thread per CUDA thread of a block, blocks one after another,
// __syncthreads as a block barrier, warp shuffles through a per-warp exchange and barrier,
// __shared__ as static storage (safe because blocks run one at a time, process-wide: a
// mutex serialises launches from concurrent callers, such as tests running in parallel). It checks the
// kernels' logic (indexing, reductions, statuses, the noise keys, the decisions) against the
// Rust reference where no GPU is available; it says nothing about speed or the memory model.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct uint2 {
  unsigned x, y;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int min(int a, int b) { return a < b ? a : b; }
using std::isinf;
using std::isnan;

namespace emu {
struct Warp {
  std::barrier<> bar{32};
  uint64_t slots[32];
};
struct Block {
  explicit Block(unsigned threads) : bar(threads), warps(threads / 32) {
    for (auto& w : warps) w = std::make_unique<Warp>();
  }
  std::barrier<> bar;
  std::vector<std::unique_ptr<Warp>> warps;
};
inline thread_local Block* current_block = nullptr;
}  // namespace emu

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() { emu::current_block->bar.arrive_and_wait(); }

template <typename T>
T __shfl_xor_sync(unsigned, T value, int offset) {
  static_assert(sizeof(T) <= 8, "shuffle of a register-sized value");
  emu::Warp& w = *emu::current_block->warps[threadIdx.x / 32];
  const unsigned lane = threadIdx.x & 31;
  std::memcpy(&w.slots[lane], &value, sizeof(T));
  w.bar.arrive_and_wait();
  T out;
  std::memcpy(&out, &w.slots[lane ^ static_cast<unsigned>(offset)], sizeof(T));
  w.bar.arrive_and_wait();
  return out;
}

namespace emu {
inline std::mutex launch_mutex;

// Runs kernel() over `grid` blocks of `block` threads (a multiple of 32, <= 1024).
template <typename Kernel>
void launch(unsigned grid, unsigned block, Kernel kernel) {
  const std::lock_guard<std::mutex> one_launch_at_a_time(launch_mutex);
  for (unsigned b = 0; b < grid; ++b) {
    Block state(block);
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; ++t) {
      threads.emplace_back([&, t] {
        current_block = &state;
        threadIdx = dim3{t, 0, 0};
        blockIdx = dim3{b, 0, 0};
        blockDim = dim3{block, 1, 1};
        gridDim = dim3{grid, 1, 1};
        kernel();
      });
    }
    for (auto& th : threads) th.join();
  }
}
}  // namespace emu
