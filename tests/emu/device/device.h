// The emulated CUDA device: a shared library named libcuda.so.1 that exports the driver entry
// points this crate reaches (through cudarc, the C ABI and the C test program), with device
// memory in host memory and kernels run by the kernel emulator (../emu_runtime.cpp).
//
// One device, ordinal 0, with one primary context. Work runs when it is queued (streams are
// trivially ordered), except on a stream under graph capture, where it is recorded and replayed
// by cuGraphLaunch. One mutex serialises every entry point, kernels included. Handles are
// checked against the live objects of their kind, device pointers against the live
// allocations; a bad one gets the driver's error code, never undefined behaviour.
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../emu_runtime.h"
#include "cuda_abi.h"

namespace device {

// The name the device reports (cuDeviceGetName). src/cuda/module.rs recognises the emulated
// device by its first words, "asps emulated device", and refuses the emulator's kernel image on
// anything else.
inline constexpr const char* kName = "asps emulated device (CPU kernel emulator, not a GPU)";
// The device memory the device reports (cuDeviceTotalMem) and allows (cuMemAlloc).
inline constexpr size_t kTotalMemory = size_t{16} << 30;
// What cuModuleLoadData accepts: the images build.rs embeds when ASPS_EMULATED_DEVICE=1, which
// begin with kImageMagic and name their kernel set, as a fatbin holds only its own kernels.
inline constexpr const char* kImageMagic = "ASPS-EMULATED-DEVICE-IMAGE v1 kernels=";
// The kernel sets: the production image's (kernels/*.cu) and the test image's
// (kernels/testing/*.cu).
enum class KernelSet { Verification, Testing };

// Every entry point holds this while it runs.
std::mutex& mutex();
using Lock = std::lock_guard<std::mutex>;

// A note on stderr for what a real driver would not explain (an unsupported request, an image
// that is not the emulator's).
void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- Context (context.cpp) ------------------------------------------------------------------

bool initialized();
// The one context's handle, the same for the life of the process.
CUcontext primary_context();
// CUDA_SUCCESS when the calling thread has the primary context current and it is retained.
CUresult require_context();
// Releases everything the context owns when its last retain goes (context.cpp calls these).
void reset_memory();
void reset_streams();
void reset_modules();

// ---- Kernels (kernel_table.cpp, module.cpp) -------------------------------------------------

struct Kernel {
  const char* name;
  KernelSet set;         // the image that holds it
  unsigned max_threads;  // __launch_bounds__, else 1024
  std::vector<size_t> arg_sizes;
  // Runs the kernel over (grid, block) with the arguments packed back to back in `args`.
  emu::LaunchStats (*run)(const Kernel& k, dim3 grid, dim3 block, const unsigned char* args);
};
// The kernel `name` of the image of `set`, or null.
const Kernel* find_kernel(const char* name, KernelSet set);

// ---- Work (streams.cpp) ---------------------------------------------------------------------

// One unit of stream work, with everything it needs copied in (kernel arguments, which live on
// the caller's stack only during the call).
struct Op {
  enum Kind { Launch, CopyHtoD, CopyDtoH, CopyDtoD, Memset, Memset32 };
  explicit Op(Kind k) : kind(k) {}
  Kind kind;
  const Kernel* kernel = nullptr;
  dim3 grid, block;
  std::vector<unsigned char> args;
  CUdeviceptr dst = 0, src = 0;
  void* host_dst = nullptr;
  const void* host_src = nullptr;
  size_t bytes = 0;
  unsigned char value = 0;
  // Memset32: `height` rows of `width` 32-bit words, rows `pitch` bytes apart from dst (bytes:
  // the extent from the first word to the end of the last).
  uint32_t value32 = 0;
  size_t width = 0, height = 0, pitch = 0;
};

// Runs op now (memory.cpp and module.cpp check its pointers when it is queued).
void execute(const Op& op);
void execute_copy(const Op& op);    // memory.cpp
void execute_launch(const Op& op);  // module.cpp
// Runs op on stream `h`, or records it when `h` is being captured.
CUresult enqueue(CUstream h, Op op);
// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (and the capture invalidated) when a capture forbids a
// synchronous call from this thread now (GLOBAL mode: any thread; THREAD_LOCAL: its thread).
CUresult check_sync_call_allowed(const char* what);
// Whether `h` names a live stream (or a special handle).
bool valid_stream(CUstream h);
// CUDA_ERROR_NOT_SUPPORTED (and the capture invalidated) for work that is not emulated under
// capture, queued on a capturing stream.
CUresult refuse_if_capturing(CUstream h, const char* what);

// ---- Memory (memory.cpp) --------------------------------------------------------------------

// Whether [ptr, ptr + bytes) lies inside one live allocation.
bool in_allocation(CUdeviceptr ptr, size_t bytes);

// The unique bytes (32-byte sectors) the kernel that just ran read and wrote; resets them.
struct UniqueTraffic {
  uint64_t read, written;
};
UniqueTraffic take_unique_traffic();

// ---- Launch trace (module.cpp) --------------------------------------------------------------

// With ASPS_EMU_TRACE=<file>, one line per kernel launch is appended to the file.
void trace_launch(const Kernel& k, dim3 grid, dim3 block, const emu::LaunchStats& stats,
                  const UniqueTraffic& unique);

}  // namespace device
