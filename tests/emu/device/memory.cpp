// Device memory: host allocations (256-byte aligned, filled with a poison pattern as real device
// memory is not zeroed) in a map from base address. Frees and copies of unknown or out-of-range
// addresses are refused with CUDA_ERROR_INVALID_VALUE. Kernels' global accesses are checked
// against the same map (emu::set_memory_checker), and the 32-byte sectors they touch are marked
// per launch: the unique bytes a launch moves, as DRAM would see them if nothing stayed in
// cache (a value that all 512 threads of a block load counts once, not 512 times).

#include <cstdlib>
#include <cstring>
#include <optional>

#include "device.h"

namespace device {
namespace {

constexpr size_t kAlignment = 256;
constexpr size_t kSector = 32;
constexpr uint32_t kPoison = 0x7FA5A5A5u;  // NaN as f32, an out-of-range token as i32

struct Allocation {
  CUdeviceptr base;
  size_t bytes;
  // Sectors read and written by the running launch (allocated on first touch).
  std::vector<uint64_t> read, written;
};

std::map<CUdeviceptr, Allocation> g_allocations;
// The allocation of the last successful check: kernels touch the same buffers many times.
Allocation* g_last = nullptr;
// Allocations touched by the running launch, and its unique traffic.
std::vector<Allocation*> g_touched;
uint64_t g_unique_read = 0, g_unique_written = 0;

Allocation* find(CUdeviceptr ptr, size_t bytes) {
  const auto inside = [&](const Allocation& a) {
    return ptr >= a.base && ptr - a.base <= a.bytes && bytes <= a.bytes - (ptr - a.base);
  };
  if (g_last != nullptr && inside(*g_last)) return g_last;
  auto it = g_allocations.upper_bound(ptr);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  if (!inside(it->second)) return nullptr;
  g_last = &it->second;
  return g_last;
}

// A kernel's global access: inside an allocation, and its sectors marked.
bool checker(const void* p, size_t bytes, bool write) {
  const auto ptr = reinterpret_cast<CUdeviceptr>(p);
  Allocation* a = find(ptr, bytes);
  if (a == nullptr) return false;
  if (bytes == 0) return true;
  std::vector<uint64_t>& bits = write ? a->written : a->read;
  if (a->read.empty() && a->written.empty()) g_touched.push_back(a);
  if (bits.empty()) bits.assign((a->bytes + kSector * 64 - 1) / (kSector * 64), 0);
  const size_t first = (ptr - a->base) / kSector, last = (ptr - a->base + bytes - 1) / kSector;
  for (size_t sector = first; sector <= last; ++sector) {
    uint64_t& word = bits[sector / 64];
    const uint64_t bit = uint64_t{1} << (sector % 64);
    if ((word & bit) == 0) {
      word |= bit;
      (write ? g_unique_written : g_unique_read) += kSector;
    }
  }
  return true;
}

size_t used_bytes() {
  size_t used = 0;
  for (const auto& [base, a] : g_allocations) used += a.bytes;
  return used;
}

CUresult allocate(CUdeviceptr* out, size_t bytes) {
  if (out == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  // No more than the device reports (cuDeviceTotalMem), which also keeps the sums below exact.
  if (bytes > kTotalMemory - used_bytes()) return CUDA_ERROR_OUT_OF_MEMORY;
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  // One more block of 256 bytes that no allocation owns: a kernel that runs past the end of a
  // buffer reads the gap, which the checker refuses, not the next buffer.
  void* mem = std::aligned_alloc(kAlignment, rounded + kAlignment);
  if (mem == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
  auto* words = static_cast<uint32_t*>(mem);
  for (size_t i = 0; i < rounded / 4; ++i) words[i] = kPoison;
  *out = reinterpret_cast<CUdeviceptr>(mem);
  g_allocations.emplace(*out, Allocation{*out, bytes, {}, {}});
  static bool installed = false;
  if (!installed) {
    emu::set_memory_checker(&checker);
    installed = true;
  }
  return CUDA_SUCCESS;
}

CUresult release(CUdeviceptr ptr) {
  const auto it = g_allocations.find(ptr);
  if (it == g_allocations.end()) {
    note("free of 0x%llx, which is not the start of a live allocation",
         static_cast<unsigned long long>(ptr));
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (g_last == &it->second) g_last = nullptr;
  g_allocations.erase(it);
  std::free(reinterpret_cast<void*>(ptr));
  return CUDA_SUCCESS;
}

CUresult check_range(const char* what, CUdeviceptr ptr, size_t bytes) {
  if (bytes == 0 || in_allocation(ptr, bytes)) return CUDA_SUCCESS;
  note("%s: [0x%llx, +%zu) is not inside one live allocation", what,
       static_cast<unsigned long long>(ptr), bytes);
  return CUDA_ERROR_INVALID_VALUE;
}

}  // namespace

bool in_allocation(CUdeviceptr ptr, size_t bytes) { return find(ptr, bytes) != nullptr; }

UniqueTraffic take_unique_traffic() {
  for (Allocation* a : g_touched) {
    a->read.clear();
    a->written.clear();
  }
  g_touched.clear();
  const UniqueTraffic t{g_unique_read, g_unique_written};
  g_unique_read = g_unique_written = 0;
  return t;
}

void reset_memory() {
  for (const auto& [base, a] : g_allocations) std::free(reinterpret_cast<void*>(base));
  g_allocations.clear();
  g_last = nullptr;
  g_touched.clear();
  g_unique_read = g_unique_written = 0;
}

void execute_copy(const Op& op) {
  if (op.bytes == 0) return;
  switch (op.kind) {
    case Op::CopyHtoD: std::memcpy(reinterpret_cast<void*>(op.dst), op.host_src, op.bytes); break;
    case Op::CopyDtoH: std::memcpy(op.host_dst, reinterpret_cast<const void*>(op.src), op.bytes); break;
    case Op::CopyDtoD:
      std::memmove(reinterpret_cast<void*>(op.dst), reinterpret_cast<const void*>(op.src), op.bytes);
      break;
    case Op::Memset: std::memset(reinterpret_cast<void*>(op.dst), op.value, op.bytes); break;
    case Op::Memset32:
      for (size_t row = 0; row < op.height; ++row) {
        auto* words = reinterpret_cast<uint32_t*>(op.dst + row * op.pitch);
        for (size_t i = 0; i < op.width; ++i) words[i] = op.value32;
      }
      break;
    case Op::Launch: break;
  }
}

}  // namespace device

using namespace device;

namespace {

// Checks a copy or memset, then runs it now (`sync`) or queues it on `stream`.
CUresult copy(const char* what, Op op, bool sync, CUstream stream) {
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (op.bytes > 0) {
    if ((op.kind == Op::CopyHtoD && op.host_src == nullptr) ||
        (op.kind == Op::CopyDtoH && op.host_dst == nullptr)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    if (op.kind != Op::CopyDtoH) {
      if (const CUresult rc = check_range(what, op.dst, op.bytes); rc != CUDA_SUCCESS) return rc;
    }
    if (op.kind == Op::CopyDtoH || op.kind == Op::CopyDtoD) {
      if (const CUresult rc = check_range(what, op.src, op.bytes); rc != CUDA_SUCCESS) return rc;
    }
  }
  if (sync) {
    if (const CUresult rc = check_sync_call_allowed(what); rc != CUDA_SUCCESS) return rc;
    execute(op);
    return CUDA_SUCCESS;
  }
  return enqueue(stream, std::move(op));
}

Op htod(CUdeviceptr dst, const void* src, size_t bytes) {
  Op op{Op::CopyHtoD};
  op.dst = dst;
  op.host_src = src;
  op.bytes = bytes;
  return op;
}

Op dtoh(void* dst, CUdeviceptr src, size_t bytes) {
  Op op{Op::CopyDtoH};
  op.host_dst = dst;
  op.src = src;
  op.bytes = bytes;
  return op;
}

Op dtod(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  Op op{Op::CopyDtoD};
  op.dst = dst;
  op.src = src;
  op.bytes = bytes;
  return op;
}

Op memset8(CUdeviceptr dst, unsigned char value, size_t bytes) {
  Op op{Op::Memset};
  op.dst = dst;
  op.value = value;
  op.bytes = bytes;
  return op;
}

// A 32-bit memset of `height` rows of `width` words, `pitch` bytes apart; nullopt when the
// driver would refuse it (a misaligned address or pitch, rows that overlap, a size overflow).
std::optional<Op> memset32(CUdeviceptr dst, size_t pitch, uint32_t value, size_t width,
                           size_t height) {
  Op op{Op::Memset32};
  op.dst = dst;
  op.value32 = value;
  op.width = width;
  op.height = height;
  op.pitch = pitch;
  if (width == 0 || height == 0) return op;  // bytes 0: nothing to check or write
  if (dst % 4 != 0 || pitch % 4 != 0 || (height > 1 && pitch < width * 4)) return std::nullopt;
  if (width > SIZE_MAX / 4 || (height > 1 && (height - 1) > (SIZE_MAX - width * 4) / pitch)) {
    return std::nullopt;
  }
  op.bytes = (height - 1) * pitch + width * 4;
  return op;
}

}  // namespace

ASPS_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* ptr, size_t bytes) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (const CUresult rc = check_sync_call_allowed("cuMemAlloc"); rc != CUDA_SUCCESS) return rc;
  return allocate(ptr, bytes);
}

// Stream-ordered allocation and free are immediate here (work runs when queued); on a stream
// under capture they would be graph memory nodes, which are not emulated.
ASPS_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* ptr, size_t bytes, CUstream stream) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (!valid_stream(stream)) return CUDA_ERROR_INVALID_HANDLE;
  if (const CUresult rc = refuse_if_capturing(stream, "cuMemAllocAsync"); rc != CUDA_SUCCESS) {
    return rc;
  }
  return allocate(ptr, bytes);
}

ASPS_EXPORT CUresult cuMemFree_v2(CUdeviceptr ptr) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (const CUresult rc = check_sync_call_allowed("cuMemFree"); rc != CUDA_SUCCESS) return rc;
  return release(ptr);
}

ASPS_EXPORT CUresult cuMemFreeAsync(CUdeviceptr ptr, CUstream stream) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (!valid_stream(stream)) return CUDA_ERROR_INVALID_HANDLE;
  if (const CUresult rc = refuse_if_capturing(stream, "cuMemFreeAsync"); rc != CUDA_SUCCESS) {
    return rc;
  }
  return release(ptr);
}

ASPS_EXPORT CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (free == nullptr || total == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *total = kTotalMemory;
  *free = kTotalMemory - used_bytes();
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
  const Lock lock(mutex());
  return copy("cuMemcpyHtoD", htod(dst, src, bytes), true, nullptr);
}

ASPS_EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
  const Lock lock(mutex());
  return copy("cuMemcpyDtoH", dtoh(dst, src, bytes), true, nullptr);
}

ASPS_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  const Lock lock(mutex());
  return copy("cuMemcpyDtoD", dtod(dst, src, bytes), true, nullptr);
}

ASPS_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes,
                                          CUstream stream) {
  const Lock lock(mutex());
  return copy("cuMemcpyHtoDAsync", htod(dst, src, bytes), false, stream);
}

ASPS_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes,
                                          CUstream stream) {
  const Lock lock(mutex());
  return copy("cuMemcpyDtoHAsync", dtoh(dst, src, bytes), false, stream);
}

ASPS_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                                          CUstream stream) {
  const Lock lock(mutex());
  return copy("cuMemcpyDtoDAsync", dtod(dst, src, bytes), false, stream);
}

ASPS_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t bytes) {
  const Lock lock(mutex());
  return copy("cuMemsetD8", memset8(dst, value, bytes), true, nullptr);
}

ASPS_EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t bytes,
                                     CUstream stream) {
  const Lock lock(mutex());
  return copy("cuMemsetD8Async", memset8(dst, value, bytes), false, stream);
}

ASPS_EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int value, size_t words,
                                      CUstream stream) {
  const Lock lock(mutex());
  const std::optional<Op> op = memset32(dst, words * 4, value, words, 1);
  if (!op) return CUDA_ERROR_INVALID_VALUE;
  return copy("cuMemsetD32Async", *op, false, stream);
}

ASPS_EXPORT CUresult cuMemsetD2D32Async(CUdeviceptr dst, size_t pitch, unsigned int value,
                                        size_t width, size_t height, CUstream stream) {
  const Lock lock(mutex());
  const std::optional<Op> op = memset32(dst, pitch, value, width, height);
  if (!op) return CUDA_ERROR_INVALID_VALUE;
  return copy("cuMemsetD2D32Async", *op, false, stream);
}

// The one attribute asked of it: the device of an address inside an allocation (device 0);
// any other address is not device memory, as a pageable host address is not to the driver.
ASPS_EXPORT CUresult cuPointerGetAttribute(void* data, int attribute, CUdeviceptr ptr) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  constexpr int kDeviceOrdinal = 9;  // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
  if (data == nullptr || attribute != kDeviceOrdinal) return CUDA_ERROR_INVALID_VALUE;
  if (!in_allocation(ptr, 1)) return CUDA_ERROR_INVALID_VALUE;
  *static_cast<int*>(data) = 0;
  return CUDA_SUCCESS;
}
