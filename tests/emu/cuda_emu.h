// The CUDA built-ins the kernels use, for the host: kernels/*.cu compiled with this header run
// on the CPU emulator of the CUDA execution model (emu_runtime.cpp). The threads of a block are
// fibers on one OS thread, switched only at barriers and warp intrinsics; the runtime checks
// that every barrier and warp intrinsic is reached by all the threads it names, from the same
// source line, poisons __shared__ memory at the start of every block, runs the blocks of a launch
// in a shuffled order, and sees every global load and store that goes through the kernels'
// ld()/st() helpers (kernels/common.cuh): it counts their bytes, checks their alignment, and,
// on the emulated device, that they fall inside a live allocation.
//
// It checks the kernels' logic; it says nothing about speed, the memory model, concurrency
// between blocks, or the GPU's float rounding (host libm, no FMA contraction guarantees).
// A kernel that uses a CUDA built-in missing here needs a stand-in below.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#define ASPS_EMULATOR 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Not __noinline__, a name GCC's own headers use inside __attribute__((...)).
#define ASPS_NOINLINE __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
// Function-local statics. The runtime finds them in the symbol table (function-local statics
// of functions in namespace asps, or of extern "C" asps_* kernels) and poisons them before
// each block.
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
// Vector types aligned as on the device, so that the alignment check of ld() catches a
// misaligned 16-byte load.
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline float __uint_as_float(unsigned x) {
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned x;
  std::memcpy(&x, &f, sizeof x);
  return x;
}
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
// Round-to-nearest arithmetic that the compiler may not contract (the host compiler does not
// contract across these calls either).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
using std::isinf;
using std::isnan;

namespace emu {

// Where a thread waits: the source location of the barrier or warp intrinsic.
struct Site {
  const char* file;
  int line;
};

// The running CUDA thread and its block; valid inside a kernel (the runtime sets them before it
// switches to a thread's fiber).
struct ThreadIds {
  dim3 thread_idx;
};
struct BlockIds {
  dim3 block_idx, block_dim, grid_dim;
};
extern ThreadIds* current_thread;
extern BlockIds* current_block;

// Block barrier (__syncthreads).
void sync_block(Site site);

// Warp intrinsics: every lane named in `mask` must call the same one from the same site.
enum class WarpOp : int { ShflIdx, ShflUp, ShflDown, ShflXor, SyncWarp };
uint64_t warp_op(Site site, WarpOp op, unsigned mask, uint64_t value, int param, int width);

template <typename T>
T shfl(Site site, WarpOp op, unsigned mask, T value, int param, int width) {
  static_assert(sizeof(T) <= 8, "a shuffle moves a register-sized value");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = warp_op(site, op, mask, bits, param, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// Every global access of a kernel (kernels/common.cuh, ld() and st()): counted, its alignment
// checked, and its range checked against the device's allocations when a checker is installed.
void global_access(const void* ptr, unsigned bytes, unsigned align, bool write);
// Every Philox block a noise stream computes (kernels/philox.cuh, noise_block): counted.
void philox_call();
// Every float exponential or logarithm a kernel evaluates: counted.
void transcendental_call();

}  // namespace emu

#define threadIdx (emu::current_thread->thread_idx)
#define blockIdx (emu::current_block->block_idx)
#define blockDim (emu::current_block->block_dim)
#define gridDim (emu::current_block->grid_dim)
constexpr int warpSize = 32;

#define __syncthreads() emu::sync_block(emu::Site{__FILE__, __LINE__})
#define __syncwarp(...) emu::sync_warp(emu::Site{__FILE__, __LINE__}, ##__VA_ARGS__)
#define __shfl_sync(...) emu::shfl_call(emu::Site{__FILE__, __LINE__}, emu::WarpOp::ShflIdx, __VA_ARGS__)
#define __shfl_up_sync(...) emu::shfl_call(emu::Site{__FILE__, __LINE__}, emu::WarpOp::ShflUp, __VA_ARGS__)
#define __shfl_down_sync(...) \
  emu::shfl_call(emu::Site{__FILE__, __LINE__}, emu::WarpOp::ShflDown, __VA_ARGS__)
#define __shfl_xor_sync(...) emu::shfl_call(emu::Site{__FILE__, __LINE__}, emu::WarpOp::ShflXor, __VA_ARGS__)
#define __threadfence() ((void)0)

namespace emu {
inline void sync_warp(Site site, unsigned mask = 0xffffffffu) {
  (void)warp_op(site, WarpOp::SyncWarp, mask, 0, 0, 32);
}
template <typename T>
T shfl_call(Site site, WarpOp op, unsigned mask, T value, int param, int width = 32) {
  return shfl(site, op, mask, value, param, width);
}
}  // namespace emu

// The global-access hook of kernels/common.cuh, and the noise hook of kernels/philox.cuh.
#define ASPS_GLOBAL_ACCESS(ptr, bytes, align, write) emu::global_access(ptr, bytes, align, write)
#define ASPS_PHILOX_CALL() emu::philox_call()
#define ASPS_TRANSCENDENTAL_CALL() emu::transcendental_call()
// The float exponentials and logarithms of the kernels, counted (fast_exp2 counts itself). The
// double ones (the one-thread plan's, per row) are not.
#define expf(x) (emu::transcendental_call(), ::expf(x))
#define logf(x) (emu::transcendental_call(), ::logf(x))
#define log1pf(x) (emu::transcendental_call(), ::log1pf(x))

// A load from L2 (kernels/common.cuh, ld_l2, which counts it): one memory here.
template <typename T>
T __ldcg(const T* p) {
  return *p;
}
// The blocks of a launch run one after another on one OS thread: a plain add is atomic
// (kernels/common.cuh, atomic_add, counts it).
inline unsigned atomicAdd(unsigned* p, unsigned value) {
  const unsigned old = *p;
  *p = old + value;
  return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long value) {
  const unsigned long long old = *p;
  *p = old + value;
  return old;
}
inline int atomicMax(int* p, int value) {
  const int old = *p;
  *p = old > value ? old : value;
  return old;
}
inline int atomicMin(int* p, int value) {
  const int old = *p;
  *p = old < value ? old : value;
  return old;
}

// A streaming load (kernels/testing/bandwidth.cu).
template <typename T>
T __ldcs(const T* p) {
  ASPS_GLOBAL_ACCESS(p, sizeof(T), alignof(T), false);
  return *p;
}
