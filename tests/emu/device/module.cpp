// Modules, functions and kernel launches. A module is the emulator's kernel table: the image
// must be the one build.rs embeds for the emulated device (ASPS_EMULATED_DEVICE=1); a real
// fatbin is refused with CUDA_ERROR_NO_BINARY_FOR_GPU, as a GPU refuses a fatbin without code
// for it. Launches are checked (handles, dimensions, launch bounds, argument pointers), their
// arguments copied, and run (or captured) on their stream.

#include <cstdlib>
#include <cstring>

#include "device.h"

namespace device {
namespace {

struct Module;

struct Function {
  Module* module;
  const Kernel* kernel;
};

struct Module {
  KernelSet set;
  std::map<std::string, Function*> functions;
};

std::set<Module*> g_modules;
std::set<Function*> g_functions;

void destroy(Module* m) {
  for (auto& [name, f] : m->functions) {
    g_functions.erase(f);
    delete f;
  }
  g_modules.erase(m);
  delete m;
}

}  // namespace

void reset_modules() {
  while (!g_modules.empty()) destroy(*g_modules.begin());
}

void execute_launch(const Op& op) {
  const emu::LaunchStats stats = op.kernel->run(*op.kernel, op.grid, op.block, op.args.data());
  trace_launch(*op.kernel, op.grid, op.block, stats, take_unique_traffic());
}

// bytes_read / bytes_written: every byte the threads loaded or stored (a value loaded by 512
// threads counts 512 times); unique_read / unique_written: the 32-byte sectors touched, once
// each per launch; philox: Philox blocks computed for noise; exps: float exponentials and
// logarithms evaluated; block_read_max: the most bytes one block loaded; busy_blocks /
// busy_read: the blocks that loaded at least half of that, and their bytes together.
void trace_launch(const Kernel& k, dim3 grid, dim3 block, const emu::LaunchStats& stats,
                  const UniqueTraffic& unique) {
  const char* path = std::getenv("ASPS_EMU_TRACE");
  if (path == nullptr || *path == 0) return;
  FILE* f = std::fopen(path, "a");
  if (f == nullptr) {
    note("cannot append to ASPS_EMU_TRACE=%s", path);
    return;
  }
  std::fprintf(f,
               "launch kernel=%s grid=%ux%ux%u block=%ux%ux%u bytes_read=%llu bytes_written=%llu "
               "unique_read=%llu unique_written=%llu philox=%llu exps=%llu block_read_max=%llu "
               "busy_blocks=%llu busy_read=%llu\n",
               k.name, grid.x, grid.y, grid.z, block.x, block.y, block.z,
               static_cast<unsigned long long>(stats.bytes_read),
               static_cast<unsigned long long>(stats.bytes_written),
               static_cast<unsigned long long>(unique.read),
               static_cast<unsigned long long>(unique.written),
               static_cast<unsigned long long>(stats.philox_calls),
               static_cast<unsigned long long>(stats.transcendentals),
               static_cast<unsigned long long>(stats.block_read_max),
               static_cast<unsigned long long>(stats.busy_blocks),
               static_cast<unsigned long long>(stats.busy_read));
  std::fclose(f);
}

}  // namespace device

using namespace device;

ASPS_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (module == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const char* text = static_cast<const char*>(image);
  const size_t magic = std::strlen(kImageMagic);
  if (std::strncmp(text, kImageMagic, magic) != 0) {
    note("the module image is not the emulated device's (a CUDA fatbin?); build through "
         "tests/emu/gpu, which sets ASPS_EMULATED_DEVICE=1");
    return CUDA_ERROR_NO_BINARY_FOR_GPU;
  }
  KernelSet set;
  if (std::strncmp(text + magic, "verification:", 13) == 0) {
    set = KernelSet::Verification;
  } else if (std::strncmp(text + magic, "testing:", 8) == 0) {
    set = KernelSet::Testing;
  } else {
    note("the emulated device image names no kernel set it knows: %.80s", text);
    return CUDA_ERROR_INVALID_IMAGE;
  }
  auto* m = new Module{set, {}};
  g_modules.insert(m);
  *module = reinterpret_cast<CUmodule>(m);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuModuleUnload(CUmodule module) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  auto* m = reinterpret_cast<Module*>(module);
  if (g_modules.count(m) == 0) return CUDA_ERROR_INVALID_HANDLE;
  destroy(m);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (function == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto* m = reinterpret_cast<Module*>(module);
  if (g_modules.count(m) == 0) return CUDA_ERROR_INVALID_HANDLE;
  const Kernel* k = find_kernel(name, m->set);
  if (k == nullptr) return CUDA_ERROR_NOT_FOUND;
  Function*& f = m->functions[name];
  if (f == nullptr) {
    f = new Function{m, k};
    g_functions.insert(f);
  }
  *function = reinterpret_cast<CUfunction>(f);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuLaunchKernel(CUfunction function, unsigned grid_x, unsigned grid_y,
                                    unsigned grid_z, unsigned block_x, unsigned block_y,
                                    unsigned block_z, unsigned shared_bytes, CUstream stream,
                                    void** params, void** extra) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  auto* f = reinterpret_cast<Function*>(function);
  if (g_functions.count(f) == 0 || !valid_stream(stream)) return CUDA_ERROR_INVALID_HANDLE;
  const Kernel& k = *f->kernel;
  const unsigned long long threads =
      static_cast<unsigned long long>(block_x) * block_y * block_z;
  if (grid_x == 0 || grid_y == 0 || grid_z == 0 || grid_x > 2147483647u || grid_y > 65535 ||
      grid_z > 65535 || threads == 0 || threads > 1024 || block_z > 64) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (threads > k.max_threads) {
    note("%s launched with %llu threads per block, more than its launch bound %u", k.name, threads,
         k.max_threads);
    return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
  }
  if (shared_bytes != 0 || extra != nullptr) {
    note("dynamic shared memory and `extra` launch arguments are not emulated");
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  if (params == nullptr && !k.arg_sizes.empty()) return CUDA_ERROR_INVALID_VALUE;
  Op op{Op::Launch};
  op.kernel = &k;
  op.grid = dim3{grid_x, grid_y, grid_z};
  op.block = dim3{block_x, block_y, block_z};
  for (size_t i = 0; i < k.arg_sizes.size(); ++i) {
    if (params[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const auto* bytes = static_cast<const unsigned char*>(params[i]);
    op.args.insert(op.args.end(), bytes, bytes + k.arg_sizes[i]);
  }
  return enqueue(stream, std::move(op));
}
