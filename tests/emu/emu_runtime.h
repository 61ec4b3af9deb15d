// The host side of the kernel emulator: launching a kernel's body over a grid (emu_runtime.cpp).
// Kernels themselves include cuda_emu.h only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuda_emu.h"

namespace emu {

// Global-memory traffic of one launch, as seen by the kernels' ld()/st() helpers.
struct LaunchStats {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t philox_calls = 0;  // Philox blocks computed for noise streams (kernels/philox.cuh)
  // Float exponentials and logarithms evaluated (kernels/common.cuh, fast_exp2; expf, logf and
  // log1pf through cuda_emu.h)
  uint64_t transcendentals = 0;
  // How the loads spread over blocks, for the structure bench's model of a launch's critical
  // path: the most bytes one block loaded, and the blocks that loaded at least half of that
  // (the launch's busy blocks) with the bytes they loaded together.
  uint64_t block_read_max = 0;
  uint64_t busy_blocks = 0;
  uint64_t busy_read = 0;
};

// Whether [ptr, ptr + bytes) lies inside live device memory (the device also notes what a
// launch touches). Installed by the emulated device; without one, global accesses are counted
// and their alignment checked, nothing more.
using MemoryChecker = bool (*)(const void* ptr, size_t bytes, bool write);
void set_memory_checker(MemoryChecker checker);

// Runs body(arg) as every thread of every block of `grid` (blocks in a shuffled order, one at a
// time; the threads of a block as fibers). `kernel` names the kernel in diagnostics. Launches
// are serialised process-wide. Any violation of the execution model aborts the process with
// the kernel, block, threads and source locations involved.
LaunchStats launch(const char* kernel, dim3 grid, dim3 block, void (*body)(void*), void* arg);

template <typename F>
LaunchStats launch(const char* kernel, dim3 grid, dim3 block, F&& body) {
  using Body = std::remove_reference_t<F>;
  return launch(kernel, grid, block, [](void* f) { (*static_cast<Body*>(f))(); },
                static_cast<void*>(&body));
}

// Largest number of threads in a block.
constexpr unsigned kMaxBlockThreads = 1024;

}  // namespace emu
