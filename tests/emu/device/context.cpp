// Initialisation, the device and its attributes, the primary context, the calling thread's
// current context, and error strings.

#include <cstdarg>
#include <cstdlib>
#include <cstring>

#include "device.h"

namespace device {
namespace {

struct PrimaryContext {
  int retains = 0;
};

bool g_initialized = false;
PrimaryContext g_primary;
thread_local CUcontext t_current = nullptr;

CUcontext primary_handle() { return reinterpret_cast<CUcontext>(&g_primary); }

// The device's answers, shaped like an H100 (sm_90, 132 SMs) so that launch heuristics behave
// as on one; its name says it is not.
bool attribute(int attrib, int* out) {
  switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *out = 1024; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: *out = 1024; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: *out = 1024; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: *out = 64; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: *out = 2147483647; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: *out = 65535; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: *out = 65535; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *out = 49152; return true;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *out = 32; return true;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *out = 132; return true;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: *out = 1; return true;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *out = 9; return true;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *out = 0; return true;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: *out = 1; return true;
    default: return false;
  }
}

struct ErrorText {
  CUresult code;
  const char* name;
  const char* text;
};

constexpr ErrorText kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU",
     "no kernel image is available for execution on the device"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS",
     "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
     "too many resources requested for launch"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
    {CUDA_ERROR_STREAM_CAPTURE_ISOLATION, "CUDA_ERROR_STREAM_CAPTURE_ISOLATION",
     "dependency created on uncaptured work in another stream"},
    {CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
     "operation would make the legacy stream depend on a capturing blocking stream"},
    {CUDA_ERROR_CAPTURED_EVENT, "CUDA_ERROR_CAPTURED_EVENT",
     "operation not permitted on an event last recorded in a capturing stream"},
    {CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD",
     "attempt to terminate a thread-local capture sequence from another thread"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const ErrorText* error_text(CUresult code) {
  for (const auto& e : kErrors) {
    if (e.code == code) return &e;
  }
  return nullptr;
}

}  // namespace

std::mutex& mutex() {
  static std::mutex m;
  return m;
}

void note(const char* fmt, ...) {
  std::fprintf(stderr, "asps emulated device: ");
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
}

bool initialized() { return g_initialized; }

CUcontext primary_context() { return primary_handle(); }

CUresult require_context() {
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current != primary_handle() || g_primary.retains == 0) return CUDA_ERROR_INVALID_CONTEXT;
  return CUDA_SUCCESS;
}

}  // namespace device

using namespace device;

ASPS_EXPORT CUresult cuInit(unsigned flags) {
  const Lock lock(mutex());
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  g_initialized = true;
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *version = 12080;  // the driver API the emulated entry points follow (cuda.h of CUDA 12.8)
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuDeviceGetCount(int* count) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *count = 1;
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
  *device = 0;
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuDeviceGetAttribute(int* value, int attrib, CUdevice device) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr || attrib < 0 || attrib >= CU_DEVICE_ATTRIBUTE_MAX) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
  if (!attribute(attrib, value)) {
    note("device attribute %d is not emulated", attrib);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice device) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
  // ASPS_EMU_DEVICE_NAME renames the device, for the test that a build for the emulated device
  // refuses every other device (tests/emu_device.rs).
  const char* renamed = std::getenv("ASPS_EMU_DEVICE_NAME");
  std::snprintf(name, static_cast<size_t>(len), "%s", renamed != nullptr ? renamed : kName);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
  *bytes = kTotalMemory;
  return CUDA_SUCCESS;
}

// The primary context: one handle for the life of the process, retained and released by count.
// When the count returns to 0 the context is reset (everything it owned is freed), but the
// handle stays what a later retain returns, as with the real driver.
ASPS_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice device) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
  ++g_primary.retains;
  *ctx = primary_handle();
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
  if (g_primary.retains == 0) return CUDA_ERROR_INVALID_CONTEXT;
  if (--g_primary.retains == 0) {
    reset_modules();
    reset_streams();
    reset_memory();
  }
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuCtxGetCurrent(CUcontext* ctx) {
  if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  *ctx = t_current;
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  const Lock lock(mutex());
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (ctx != nullptr && ctx != primary_handle()) return CUDA_ERROR_INVALID_CONTEXT;
  t_current = ctx;
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuCtxGetDevice(CUdevice* device) {
  const Lock lock(mutex());
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  *device = 0;
  return CUDA_SUCCESS;
}

// Work runs when it is queued, so there is never anything left to wait for.
ASPS_EXPORT CUresult cuCtxSynchronize() {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  return check_sync_call_allowed("cuCtxSynchronize");
}

ASPS_EXPORT CUresult cuGetErrorString(CUresult error, const char** text) {
  if (text == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* e = error_text(error);
  *text = e != nullptr ? e->text : nullptr;
  return e != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

ASPS_EXPORT CUresult cuGetErrorName(CUresult error, const char** name) {
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* e = error_text(error);
  *name = e != nullptr ? e->name : nullptr;
  return e != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
