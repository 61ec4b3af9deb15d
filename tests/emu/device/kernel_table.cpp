// Every kernel of kernels/*.cu, compiled for the host, by the name cuModuleGetFunction looks up,
// with its launch bound and argument sizes: what the emulated device runs instead of the
// fatbin. A new kernel needs a line here (tests/gpu_* fail with CUDA_ERROR_NOT_FOUND otherwise).

#include <cstring>
#include <tuple>

#include "../kernels.inc"
#include "device.h"

namespace device {
namespace {

template <auto Fn>
struct Entry;

// A kernel taking A... by value: arguments arrive packed back to back (cuLaunchKernel copies
// them so), are unpacked once, and every thread of every block calls the kernel with them.
template <typename... A, void (*Fn)(A...)>
struct Entry<Fn> {
  static Kernel make(const char* name, KernelSet set, unsigned max_threads) {
    return Kernel{name, set, max_threads, {sizeof(A)...}, &run};
  }
  static emu::LaunchStats run(const Kernel& k, dim3 grid, dim3 block, const unsigned char* args) {
    std::tuple<A...> values;
    size_t offset = 0;
    std::apply([&](auto&... v) { ((std::memcpy(&v, args + offset, sizeof(v)), offset += sizeof(v)), ...); },
               values);
    return emu::launch(k.name, grid, block, [&] { std::apply(Fn, values); });
  }
};

#define ASPS_KERNEL(fn, set, max_threads) Entry<&fn>::make(#fn, set, max_threads)
// The f32, f16 and bf16 instances of one production kernel.
#define ASPS_KERNEL_DTYPES(stem, max_threads)                                     \
  ASPS_KERNEL(stem##_f32, KernelSet::Verification, max_threads),                  \
      ASPS_KERNEL(stem##_f16, KernelSet::Verification, max_threads),              \
      ASPS_KERNEL(stem##_bf16, KernelSet::Verification, max_threads)

constexpr unsigned kAnyBlock = 1024;

const Kernel kKernels[] = {
    ASPS_KERNEL_DTYPES(asps_verify_rows, asps::VERIFY_THREADS),
    ASPS_KERNEL_DTYPES(asps_verify_rows_truncating, asps::VERIFY_THREADS),
    ASPS_KERNEL_DTYPES(asps_verify_decide, asps::VERIFY_THREADS),
    ASPS_KERNEL_DTYPES(asps_verify_fused, asps::VERIFY_THREADS),
    ASPS_KERNEL_DTYPES(asps_tree_rows, asps::VERIFY_THREADS),
    ASPS_KERNEL_DTYPES(asps_tree_decide, asps::VERIFY_THREADS),
    ASPS_KERNEL_DTYPES(asps_softmax_stats, asps::SOFTMAX_STATS_THREADS),
    ASPS_KERNEL_DTYPES(asps_softmax, asps::SOFTMAX_THREADS),
    ASPS_KERNEL(asps_normalized_residual, KernelSet::Verification, asps::RESIDUAL_THREADS),
    ASPS_KERNEL(asps_philox_kat, KernelSet::Testing, kAnyBlock),
    ASPS_KERNEL(asps_read_probe, KernelSet::Testing, kAnyBlock),
    ASPS_KERNEL(asps_empty, KernelSet::Testing, kAnyBlock),
};

}  // namespace

const Kernel* find_kernel(const char* name, KernelSet set) {
  for (const Kernel& k : kKernels) {
    if (k.set == set && std::strcmp(k.name, name) == 0) return &k;
  }
  return nullptr;
}

}  // namespace device
