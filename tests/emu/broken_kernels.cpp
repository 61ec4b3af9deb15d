// Deliberately broken kernels, one per check of the kernel emulator, for tests/emu_checks.rs:
// each check must catch its bug (an abort with a message, or a visibly wrong result where the
// bug is a wrong value). Each has a correct twin that must pass.

#include "emu_runtime.h"

#include "../../kernels/common.cuh"

namespace asps::broken {

// Reads a __shared__ accumulator that nobody initialised. With zero-initialised, persistent
// statics this returns 1 in the first block (right by accident) and counts blocks after that.
template <typename T>
void uninitialised_shared(T* out, bool initialise) {
  __shared__ T acc;
  if (threadIdx.x == 0 && initialise) acc = 0;
  __syncthreads();
  if (threadIdx.x == 0) acc += 1;
  __syncthreads();
  if (threadIdx.x == 0) st(out + blockIdx.x, acc);
}

// Only the first warp reaches the barrier; the others return.
void barrier_skipped(bool broken) {
  if (broken && threadIdx.x >= 32) return;
  __syncthreads();
}

// Two halves of the block wait at two different barriers.
void barriers_at_two_sites(bool broken) {
  if (broken && threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

// Lane 5 skips a full-warp shuffle.
void shuffle_missing_lane(int* out, bool broken) {
  int v = static_cast<int>(threadIdx.x);
  if (!broken || threadIdx.x % 32 != 5) v = __shfl_xor_sync(0xffffffffu, v, 1);
  st(out + threadIdx.x, v);
}

// A shuffle among lanes 0..15 that reads lane (lane ^ 16), outside its mask.
void shuffle_outside_mask(int* out, bool broken) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0x0000ffffu, v, broken ? 16 : 8);
  st(out + threadIdx.x, v);
}

// A 16-byte load from an address that is only 4-byte aligned.
void misaligned_vector_load(const unsigned* words, unsigned* out, bool broken) {
  const uint4 v = ld(reinterpret_cast<const uint4*>(words + (broken ? 1 : 4)));
  if (threadIdx.x == 0) st(out + blockIdx.x, v.x);
}

// Block b reads what block b - 1 wrote: right only if blocks run in order.
void depends_on_block_order(int* out) {
  if (threadIdx.x != 0) return;
  const int b = static_cast<int>(blockIdx.x);
  st(out + b, b == 0 ? 1 : ld(out + b - 1) + 1);
}

// Correct CUDA that a stricter-than-CUDA emulator would refuse: shuffles among sub-warp groups
// that wait for each other, and a full-mask shuffle after some lanes have exited (CUDA needs
// only the live lanes of the mask).
void sub_warp_groups(int* out) {
  const unsigned lane = threadIdx.x % 32;
  int v = static_cast<int>(lane);
  if (lane == 1 || lane == 3) v = __shfl_xor_sync(0x0000000Au, v, 2);
  if (lane < 3) v += __shfl_sync(0x00000007u, v, 0);
  if (lane < 16) v = __shfl_xor_sync(0x0000FFFFu, v, 1);
  v = __shfl_xor_sync(0xFFFFFFFFu, v, 16);
  if (threadIdx.x >= 32 && lane < 16) return;  // in the second warp, lanes 0..15 exit
  v = __shfl_xor_sync(0xFFFFFFFFu, v, 8);      // there, lanes 16..23 and 24..31 swap
  if (lane >= 24) v = __shfl_down_sync(0xFF000000u, v, 1, 8);
  st(out + threadIdx.x, v);
}

}  // namespace asps::broken

// Runs broken kernel `which` (or its correct twin when broken = 0) over `blocks` blocks of 64
// threads, with `out` (room for blocks * 64 ints or floats) and `words` (64 unsigned words).
// Returns 0, or 1 for an unknown kernel.
extern "C" int asps_emu_broken(int which, int broken, unsigned blocks, void* out, const unsigned* words) {
  using namespace asps::broken;
  const bool b = broken != 0;
  const dim3 grid{blocks}, block{64};
  switch (which) {
    case 0:
      emu::launch("uninitialised_shared<float>", grid, block,
                  [&] { uninitialised_shared(static_cast<float*>(out), !b); });
      return 0;
    case 1:
      emu::launch("uninitialised_shared<int>", grid, block,
                  [&] { uninitialised_shared(static_cast<int*>(out), !b); });
      return 0;
    case 2: emu::launch("barrier_skipped", grid, block, [&] { barrier_skipped(b); }); return 0;
    case 3:
      emu::launch("barriers_at_two_sites", grid, block, [&] { barriers_at_two_sites(b); });
      return 0;
    case 4:
      emu::launch("shuffle_missing_lane", grid, block,
                  [&] { shuffle_missing_lane(static_cast<int*>(out), b); });
      return 0;
    case 5:
      emu::launch("shuffle_outside_mask", grid, block,
                  [&] { shuffle_outside_mask(static_cast<int*>(out), b); });
      return 0;
    case 6:
      emu::launch("misaligned_vector_load", grid, block,
                  [&] { misaligned_vector_load(words, static_cast<unsigned*>(out), b); });
      return 0;
    case 7:
      emu::launch("depends_on_block_order", grid, block,
                  [&] { depends_on_block_order(static_cast<int*>(out)); });
      return 0;
    case 9:
      emu::launch("sub_warp_groups", grid, block, [&] { sub_warp_groups(static_cast<int*>(out)); });
      return 0;
    default: return 1;
  }
}
