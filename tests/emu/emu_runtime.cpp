// The kernel emulator's runtime: blocks one at a time in a shuffled order, the threads of a
// block as fibers on the launching OS thread, switched only at barriers and warp intrinsics.
//
// Checks, each of which aborts the process with the kernel, block, threads and source
// locations involved:
//   * every __syncthreads of a block is reached by all its threads (none may have exited) from
//     the same source line. (Not from the same call of a helper: two calls of block_reduce
//     from two branches share its lines. Return addresses cannot tell them apart either, since
//     the compiler may duplicate one call site into two. Such a divergence usually shows as a
//     barrier some thread never reaches, or as poisoned shared memory in the results.)
//   * every warp intrinsic is reached by all the live lanes of its mask, with the same mask,
//     from the same source line, and reads only live lanes of the mask (CUDA leaves other reads
//     undefined; the emulator refuses them);
//   * every global access through ld()/st() is aligned to its type (16 bytes for uint4) and,
//     when the emulated device installs its checker, inside a live allocation.
// __shared__ variables (function-local statics, found in the symbol table) are filled with a
// poison pattern (0x7FA5A5A5: a NaN as float, an out-of-range token as int) before every block.
//
// Stricter than CUDA on purpose: a warp intrinsic's mask may not name lanes past the end of a
// partial warp. Looser: __syncwarp synchronises its mask from any call site, as on sm_70+.
//
// Fibers switch with a few lines of x86-64 assembly, else (other architectures, or when built
// with -DASPS_EMU_UCONTEXT) with swapcontext. Under AddressSanitizer (tests/emu/gpu with
// ASPS_EMU_SANITIZE=1) every switch is announced to it (__sanitizer_start_switch_fiber before,
// __sanitizer_finish_switch_fiber after), so that it knows which stack the code runs on: without
// that it takes a fiber's frames for overflows of the launching thread's stack.

#include "emu_runtime.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#if defined(__x86_64__) && !defined(ASPS_EMU_UCONTEXT)
#define ASPS_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define ASPS_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASPS_EMU_ASAN 1
#endif
#endif
#if defined(ASPS_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace emu {

ThreadIds* current_thread = nullptr;
BlockIds* current_block = nullptr;

// A __shared__ variable in a template: proves that the symbol-table search finds those too.
template <typename T>
T* shared_canary() {
  __shared__ T canary;
  return &canary;
}

namespace {

constexpr size_t kStackBytes = 192 * 1024;
constexpr size_t kGuardBytes = 64 * 1024;  // below each stack: a frame cannot jump it
constexpr uint32_t kPoison = 0x7FA5A5A5u;

enum class State : uint8_t { Ready, AtBarrier, AtWarpOp, Done };

struct Thread {
  ThreadIds ids;
  unsigned linear = 0;
  State state = State::Ready;
  Site site{nullptr, 0};
  WarpOp op = WarpOp::SyncWarp;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int param = 0, width = 32;
  // The fiber.
  char* stack = nullptr;  // kStackBytes, above kGuardBytes of inaccessible memory
#if defined(ASPS_EMU_ASM_SWITCH)
  void* sp = nullptr;
#else
  ucontext_t context;
#endif
#if defined(ASPS_EMU_ASAN)
  void* fake_stack = nullptr;  // ASan's fake stack of the fiber while it is switched out
  char* finished_at = nullptr;  // a frame address of its last switch, once the fiber is done
#endif
};

// The launch in progress (launches are serialised by launch_mutex).
struct Launch {
  const char* kernel = nullptr;
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
  BlockIds block;
  unsigned threads = 0;
  Thread* running = nullptr;
  LaunchStats stats;
  uint64_t seed = 0;
#if defined(ASPS_EMU_ASM_SWITCH)
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
#if defined(ASPS_EMU_ASAN)
  // The launching thread's stack, as ASan knows it (learnt by each fiber as it is entered).
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_bytes = 0;
#endif
};

std::mutex launch_mutex;
Launch g;
Thread threads[kMaxBlockThreads];
// Per warp: how many of its lanes wait at a warp intrinsic (a group is checked only once enough
// lanes for its mask have arrived).
unsigned waiting_lanes[kMaxBlockThreads / 32];
// Per warp: the lanes that have exited (a warp intrinsic needs only the live lanes of its mask).
unsigned exited_lanes[kMaxBlockThreads / 32];
MemoryChecker memory_checker = nullptr;
std::vector<std::pair<char*, size_t>> shared_ranges;

[[noreturn]] void fail(const char* fmt, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "\nasps kernel emulator: ");
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (g.kernel != nullptr) {
    const dim3 b = g.block.block_idx;
    std::fprintf(stderr, "\n  in kernel %s, block (%u, %u, %u) of grid (%u, %u, %u), %u threads per block",
                 g.kernel, b.x, b.y, b.z, g.block.grid_dim.x, g.block.grid_dim.y,
                 g.block.grid_dim.z, g.threads);
    std::fprintf(stderr, " (block order seed %llu; set ASPS_EMU_SEED to vary it)",
                 static_cast<unsigned long long>(g.seed));
  }
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::abort();
}

const char* where(Site s) { return s.file == nullptr ? "?" : s.file; }

// Same source location (__FILE__ strings need not be one object in every inline instance).
bool same_site(Site a, Site b) {
  return a.line == b.line &&
         (a.file == b.file || (a.file != nullptr && b.file != nullptr && std::strcmp(a.file, b.file) == 0));
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::SyncWarp: return "__syncwarp";
  }
  return "?";
}

// ---- Fibers ---------------------------------------------------------------------------------

#if defined(ASPS_EMU_ASM_SWITCH)
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save, and
// resumes the fiber whose stack pointer is `load`. (MXCSR and the x87 control word are left
// alone: every fiber runs with the launching thread's, and kernels do not change them.)
extern "C" void asps_emu_switch(void** save, void* load);
// First frame of a fiber: calls rbx(r12) on an aligned stack; the callee never returns.
extern "C" void asps_emu_fiber_start();
asm(R"(
  .text
  .p2align 4
  .globl asps_emu_switch
  .hidden asps_emu_switch
  .type asps_emu_switch, @function
asps_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size asps_emu_switch, .-asps_emu_switch

  .p2align 4
  .globl asps_emu_fiber_start
  .hidden asps_emu_fiber_start
  .type asps_emu_fiber_start, @function
asps_emu_fiber_start:
  movq %r12, %rdi
  andq $-16, %rsp
  callq *%rbx
  ud2
  .size asps_emu_fiber_start, .-asps_emu_fiber_start
)");
#endif

[[noreturn]] void fiber_main(Thread* t);

// AddressSanitizer keeps one stack per OS thread (its bounds, and a "fake stack" for
// use-after-return detection). Before a switch the code says which stack comes next; the code
// that then runs on it finishes the switch, restoring its own fake stack and learning the stack
// it came from. A fiber that leaves for good passes no fake_stack_save, so that ASan frees its
// fake stack. Without ASan these are no-ops.
inline void start_switch([[maybe_unused]] void** fake_stack_save, [[maybe_unused]] const void* bottom,
                         [[maybe_unused]] size_t bytes) {
#if defined(ASPS_EMU_ASAN)
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, bytes);
#endif
}

inline void finish_switch([[maybe_unused]] void* fake_stack_save,
                          [[maybe_unused]] const void** bottom_old,
                          [[maybe_unused]] size_t* bytes_old) {
#if defined(ASPS_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, bytes_old);
#endif
}

void make_stack(Thread& t) {
  if (t.stack != nullptr) return;
  void* mem = mmap(nullptr, kGuardBytes + kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) fail("cannot map a fiber stack");
  if (mprotect(mem, kGuardBytes, PROT_NONE) != 0) fail("cannot protect a fiber stack's guard");
  t.stack = static_cast<char*>(mem) + kGuardBytes;
}

// Prepares t's fiber to start at fiber_main(t).
void reset_fiber(Thread& t) {
  make_stack(t);
#if defined(ASPS_EMU_ASAN)
  // A fiber finishes from inside fiber_main, whose frames (and the switch's) never return:
  // clear the shadow they may have left before the stack holds a new fiber. Deeper frames
  // returned, and cleared their own. (Only the top of the stack: clearing all of it for every
  // thread of every block would cost more than the kernels.)
  if (t.finished_at != nullptr) {
    char* from = std::max(t.stack, t.finished_at - 4096);
    __asan_unpoison_memory_region(from, static_cast<size_t>(t.stack + kStackBytes - from));
    t.finished_at = nullptr;
  }
#endif
#if defined(ASPS_EMU_ASM_SWITCH)
  // Stack tops are staggered so that the fibers' hot frames do not all map to the same cache
  // sets (the stacks themselves are kStackBytes apart).
  const size_t colour = (static_cast<size_t>(t.linear) * 1088) % 65536 & ~size_t{15};
  uint64_t* sp = reinterpret_cast<uint64_t*>(t.stack + kStackBytes - colour);
  *--sp = 0;  // where a return address would be: keeps the frame layout of a call
  *--sp = reinterpret_cast<uint64_t>(&asps_emu_fiber_start);
  *--sp = 0;                                        // rbp
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);  // rbx
  *--sp = reinterpret_cast<uint64_t>(&t);           // r12
  *--sp = 0;                                        // r13
  *--sp = 0;                                        // r14
  *--sp = 0;                                        // r15
  t.sp = sp;
#else
  getcontext(&t.context);
  t.context.uc_stack.ss_sp = t.stack;
  t.context.uc_stack.ss_size = kStackBytes;
  t.context.uc_link = nullptr;
  // makecontext passes int arguments: the thread's index.
  makecontext(&t.context, reinterpret_cast<void (*)()>(+[](int i) { fiber_main(&threads[i]); }),
              1, static_cast<int>(&t - threads));
#endif
}

// Scheduler -> thread t, until t waits or finishes.
void resume(Thread& t) {
  g.running = &t;
  current_thread = &t.ids;
  void* scheduler_fake_stack = nullptr;
  start_switch(&scheduler_fake_stack, t.stack, kStackBytes);
#if defined(ASPS_EMU_ASM_SWITCH)
  asps_emu_switch(&g.scheduler_sp, t.sp);
#else
  swapcontext(&g.scheduler, &t.context);
#endif
  finish_switch(scheduler_fake_stack, nullptr, nullptr);
  g.running = nullptr;
}

// Where a fiber's code resumes after a switch to it (its first entry included): completes the
// switch and notes the launching thread's stack, to switch back to.
void arrived_on_fiber([[maybe_unused]] Thread& t) {
#if defined(ASPS_EMU_ASAN)
  finish_switch(t.fake_stack, &g.scheduler_stack, &g.scheduler_stack_bytes);
#endif
}

// The running thread -> scheduler (for good once the thread is done).
void yield() {
  Thread& t = *g.running;
#if defined(ASPS_EMU_ASAN)
  const bool done = t.state == State::Done;
  if (done) t.finished_at = static_cast<char*>(__builtin_frame_address(0));
  start_switch(done ? nullptr : &t.fake_stack, g.scheduler_stack, g.scheduler_stack_bytes);
#endif
#if defined(ASPS_EMU_ASM_SWITCH)
  asps_emu_switch(&t.sp, g.scheduler_sp);
#else
  swapcontext(&t.context, &g.scheduler);
#endif
  arrived_on_fiber(t);
}

[[noreturn]] void fiber_main(Thread* t) {
#if defined(ASPS_EMU_ASAN)
  t->fake_stack = nullptr;  // a new fiber: ASan makes it a fake stack when it needs one
#endif
  arrived_on_fiber(*t);
  g.body(g.arg);
  t->state = State::Done;
  yield();
  fail("a finished fiber was resumed");
}

// ---- __shared__ poisoning -------------------------------------------------------------------

struct ModuleQuery {
  const void* address;
  std::string path;
  uintptr_t bias = 0;
  bool found = false;
};

// Whether a mangled name is a function-local static (_ZZ..., _ZZZ... inside a lambda) of a
// function in namespace asps or emu, or of an extern "C" function named asps_*: the kernels'
// __shared__ variables (CUDA allows no other function-local statics in device code) and the
// canary.
bool is_kernel_static(const char* name) {
  if (std::strncmp(name, "_ZZ", 3) != 0) return false;
  name += 2;
  while (*name == 'Z') ++name;
  if (std::strncmp(name, "N4asps", 6) == 0 || std::strncmp(name, "N3emu", 5) == 0) return true;
  while (*name >= '0' && *name <= '9') ++name;
  return std::strncmp(name, "asps_", 5) == 0;
}

// The inode of the file mapped at `address` (/proc/self/maps), or 0.
ino_t mapped_inode(const void* address) {
  FILE* maps = std::fopen("/proc/self/maps", "r");
  if (maps == nullptr) return 0;
  const auto a = reinterpret_cast<uintptr_t>(address);
  char line[4096];
  ino_t inode = 0;
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long long start = 0, end = 0, ino = 0;
    if (std::sscanf(line, "%llx-%llx %*s %*s %*s %llu", &start, &end, &ino) == 3 && a >= start &&
        a < end) {
      inode = static_cast<ino_t>(ino);
      break;
    }
  }
  std::fclose(maps);
  return inode;
}

// Every function-local static of the kernels (is_kernel_static) in zero-initialised storage of
// the module that holds this code.
void find_shared_ranges() {
  ModuleQuery q;
  q.address = reinterpret_cast<const void*>(&find_shared_ranges);
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        auto* q = static_cast<ModuleQuery*>(data);
        const uintptr_t a = reinterpret_cast<uintptr_t>(q->address);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          if (a >= start && a < start + ph.p_memsz) {
            q->path = info->dlpi_name != nullptr ? info->dlpi_name : "";
            q->bias = info->dlpi_addr;
            q->found = true;
            return 1;
          }
        }
        return 0;
      },
      &q);
  if (!q.found) fail("cannot find the module holding the emulator");
  if (q.path.empty()) q.path = "/proc/self/exe";
  const int fd = open(q.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open %s to find the __shared__ variables", q.path.c_str());
  struct stat st;
  if (fstat(fd, &st) != 0) fail("cannot stat %s", q.path.c_str());
  // The file must be the one mapped (tests/emu/gpu may have rebuilt it since this process
  // loaded it): its symbol table says where the mapped image keeps its statics.
  if (mapped_inode(q.address) != st.st_ino) {
    fail("%s was replaced on disk after this process loaded it; run again", q.path.c_str());
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) fail("cannot map %s", q.path.c_str());
  const char* base = static_cast<const char*>(map);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  if (size < sizeof(Elf64_Ehdr) || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64) {
    fail("%s is not a 64-bit ELF file", q.path.c_str());
  }
  const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
  for (unsigned i = 0; i < eh->e_shnum; ++i) {
    if (sh[i].sh_type != SHT_SYMTAB) continue;
    const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
    const size_t count = sh[i].sh_size / sizeof(Elf64_Sym);
    const char* names = base + sh[sh[i].sh_link].sh_offset;
    for (size_t k = 0; k < count; ++k) {
      const Elf64_Sym& s = syms[k];
      if (ELF64_ST_TYPE(s.st_info) != STT_OBJECT || s.st_size == 0) continue;
      if (s.st_shndx == SHN_UNDEF || s.st_shndx >= eh->e_shnum) continue;
      if (sh[s.st_shndx].sh_type != SHT_NOBITS) continue;
      if (!is_kernel_static(names + s.st_name)) continue;
      shared_ranges.emplace_back(reinterpret_cast<char*>(q.bias + s.st_value), s.st_size);
    }
  }
  munmap(map, size);
  // The canary proves the search works (a stripped symbol table would find nothing).
  const char* canary = reinterpret_cast<const char*>(shared_canary<int>());
  const bool found = std::any_of(shared_ranges.begin(), shared_ranges.end(), [&](const auto& r) {
    return canary >= r.first && canary < r.first + r.second;
  });
  if (!found) {
    fail("cannot find the __shared__ variables in the symbol table of %s (stripped?)",
         q.path.c_str());
  }
}

void poison_shared() {
  if (shared_ranges.empty()) find_shared_ranges();  // never empty after: the canary is there
  for (const auto& [begin, size] : shared_ranges) {
    for (size_t i = 0; i < size; ++i) begin[i] = static_cast<char>(kPoison >> (8 * (i % 4)));
  }
}

// ---- Block order ----------------------------------------------------------------------------

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t base_seed() {
  const char* s = std::getenv("ASPS_EMU_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 0) : 1;
}

// The order in which the blocks of a launch run: a permutation of 0..count-1 that depends on
// ASPS_EMU_SEED, the kernel and the grid (so a run is reproducible whatever else runs).
std::vector<uint64_t> block_order(uint64_t count, uint64_t seed) {
  if (count > (uint64_t{1} << 26)) {
    fail("a grid of %llu blocks is more than the emulator runs", static_cast<unsigned long long>(count));
  }
  std::vector<uint64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  uint64_t state = seed;
  for (uint64_t i = count; i > 1; --i) std::swap(order[i - 1], order[splitmix(state) % i]);
  return order;
}

// ---- Scheduling -----------------------------------------------------------------------------

unsigned popcount(unsigned x) {
  x = x - ((x >> 1) & 0x55555555u);
  x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
  return (((x + (x >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24;
}

unsigned lanes_in_warp(unsigned warp) {
  return std::min(32u, g.threads - 32 * warp);
}

// The lanes of t's mask that have not exited: the ones that must reach t's warp intrinsic.
unsigned required_lanes(const Thread& t) {
  return t.mask & ~exited_lanes[t.linear / 32];
}

// Whether u waits at the same warp intrinsic as t: same kind, mask and source line
// (__syncwarp synchronises its mask from any site).
bool same_warp_op(const Thread& t, const Thread& u) {
  if (u.state != State::AtWarpOp || u.op != t.op || u.mask != t.mask) return false;
  return t.op == WarpOp::SyncWarp || same_site(u.site, t.site);
}

// Completes t's group if every required lane of its mask waits at the same intrinsic: computes
// every lane's result before any of them runs again. Otherwise leaves them waiting (another
// group may have to finish first; a stall is diagnosed when nothing can run).
void try_complete_group(const Thread& t) {
  const unsigned warp = t.linear / 32;
  const unsigned lanes = lanes_in_warp(warp);
  Thread* base = &threads[warp * 32];
  const unsigned required = required_lanes(t);
  for (unsigned l = 0; l < lanes; ++l) {
    if ((required >> l & 1u) && !same_warp_op(t, base[l])) return;
  }
  for (unsigned l = 0; l < lanes; ++l) {
    if (!(required >> l & 1u)) continue;
    Thread& u = base[l];
    const int width = u.width;
    if (u.op != WarpOp::SyncWarp &&
        (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
      fail("thread %u calls %s (%s:%d) with width %d (a power of 2 up to 32)", u.linear,
           op_name(u.op), where(u.site), u.site.line, width);
    }
    const int segment = static_cast<int>(l) & ~(width - 1);
    int src = static_cast<int>(l);
    switch (u.op) {
      case WarpOp::ShflIdx: src = segment + (u.param & (width - 1)); break;
      case WarpOp::ShflUp:
        src = static_cast<int>(l) - u.param;
        if (src < segment) src = static_cast<int>(l);
        break;
      case WarpOp::ShflDown:
        src = static_cast<int>(l) + u.param;
        if (src >= segment + width) src = static_cast<int>(l);
        break;
      case WarpOp::ShflXor:
        src = static_cast<int>(l) ^ u.param;
        if (src >= segment + width || src < 0) src = static_cast<int>(l);
        break;
      case WarpOp::SyncWarp: break;
    }
    // CUDA leaves these values undefined; the emulator refuses them.
    if (src < 0 || src >= static_cast<int>(lanes) || !(t.mask >> src & 1u)) {
      fail("thread %u reads lane %d with %s (%s:%d), outside the mask 0x%08x", u.linear, src,
           op_name(u.op), where(u.site), u.site.line, t.mask);
    }
    if (!(required >> src & 1u)) {
      fail("thread %u reads lane %d, which has exited, with %s (%s:%d, mask 0x%08x)", u.linear,
           src, op_name(u.op), where(u.site), u.site.line, t.mask);
    }
    u.result = base[src].value;
  }
  for (unsigned l = 0; l < lanes; ++l) {
    if (!(required >> l & 1u)) continue;
    base[l].state = State::Ready;
    --waiting_lanes[warp];
  }
}

// Called when lane t arrives at a warp intrinsic.
void arrive_at_warp_op(const Thread& t) {
  const unsigned warp = t.linear / 32, lane = t.linear % 32;
  const unsigned lanes = lanes_in_warp(warp);
  if (!(t.mask >> lane & 1u)) {
    fail("thread %u calls %s (%s:%d) with mask 0x%08x, which leaves out its own lane %u",
         t.linear, op_name(t.op), where(t.site), t.site.line, t.mask, lane);
  }
  if (lanes < 32 && (t.mask >> lanes) != 0) {
    fail("thread %u calls %s (%s:%d) with mask 0x%08x, which names lanes past the %u of its warp",
         t.linear, op_name(t.op), where(t.site), t.site.line, t.mask, lanes);
  }
  // Only once enough lanes wait for the group to be complete is it worth checking.
  if (++waiting_lanes[warp] >= popcount(required_lanes(t))) try_complete_group(t);
}

// Called when lane t exits: the groups that waited for it may be complete now.
void exit_lane(const Thread& t) {
  const unsigned warp = t.linear / 32;
  exited_lanes[warp] |= 1u << (t.linear % 32);
  for (unsigned i = 32 * warp; i < 32 * warp + lanes_in_warp(warp); ++i) {
    if (threads[i].state == State::AtWarpOp) try_complete_group(threads[i]);
  }
}

// Nothing can run and t waits at a warp intrinsic: explains why, and aborts.
[[noreturn]] void stalled_warp_op(const Thread& t) {
  const unsigned warp = t.linear / 32;
  const Thread* base = &threads[warp * 32];
  const unsigned required = required_lanes(t);
  for (unsigned l = 0; l < lanes_in_warp(warp); ++l) {
    if (!(required >> l & 1u)) continue;
    const Thread& u = base[l];
    if (u.state == State::AtBarrier) {
      fail("thread %u waits at %s (%s:%d, mask 0x%08x) for lane %u, which waits at "
           "__syncthreads (%s:%d)",
           t.linear, op_name(t.op), where(t.site), t.site.line, t.mask, l, where(u.site),
           u.site.line);
    }
    if (!same_warp_op(t, u)) {
      fail("divergent warp intrinsics: thread %u waits at %s (%s:%d, mask 0x%08x) but lane %u "
           "of its mask at %s (%s:%d, mask 0x%08x)",
           t.linear, op_name(t.op), where(t.site), t.site.line, t.mask, l, op_name(u.op),
           where(u.site), u.site.line, u.mask);
    }
  }
  fail("thread %u waits at %s (%s:%d, mask 0x%08x) and nothing can run", t.linear, op_name(t.op),
       where(t.site), t.site.line, t.mask);
}

// Every thread waits at a barrier or has exited: releases the barrier, or aborts.
void release_barrier() {
  const Thread* waiting = nullptr;
  const Thread* exited = nullptr;
  for (unsigned i = 0; i < g.threads; ++i) {
    const Thread& t = threads[i];
    if (t.state == State::AtWarpOp) stalled_warp_op(t);
    if (t.state == State::Done && exited == nullptr) exited = &t;
    if (t.state == State::AtBarrier && waiting == nullptr) waiting = &t;
  }
  if (exited != nullptr) {
    fail("thread %u waits at __syncthreads (%s:%d) but thread %u has exited: every thread of "
         "a block must reach every barrier",
         waiting->linear, where(waiting->site), waiting->site.line, exited->linear);
  }
  for (unsigned i = 0; i < g.threads; ++i) {
    const Thread& t = threads[i];
    if (!same_site(t.site, waiting->site)) {
      fail("divergent barriers: thread %u waits at __syncthreads (%s:%d), thread %u at "
           "__syncthreads (%s:%d)",
           waiting->linear, where(waiting->site), waiting->site.line, t.linear, where(t.site),
           t.site.line);
    }
  }
  for (unsigned i = 0; i < g.threads; ++i) threads[i].state = State::Ready;
}

void run_block() {
  poison_shared();
  const dim3 bd = g.block.block_dim;
  for (unsigned i = 0; i < g.threads; ++i) {
    Thread& t = threads[i];
    t.linear = i;
    t.ids.thread_idx = dim3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
    t.state = State::Ready;
    t.site = Site{nullptr, 0};
    reset_fiber(t);
  }
  const unsigned warps = (g.threads + 31) / 32;
  for (unsigned w = 0; w < warps; ++w) waiting_lanes[w] = exited_lanes[w] = 0;
  unsigned done = 0;
  for (;;) {
    for (unsigned w = 0; w < warps; ++w) {
      for (bool ran = true; ran;) {
        ran = false;
        for (unsigned i = 32 * w; i < std::min(g.threads, 32 * w + 32); ++i) {
          Thread& t = threads[i];
          if (t.state != State::Ready) continue;
          ran = true;
          resume(t);
          if (t.state == State::AtWarpOp) {
            arrive_at_warp_op(t);
          } else if (t.state == State::Done) {
            ++done;
            exit_lane(t);
          }
        }
      }
    }
    if (done == g.threads) break;
    release_barrier();
  }
}

}  // namespace

void sync_block(Site site) {
  Thread& t = *g.running;
  t.state = State::AtBarrier;
  t.site = site;
  yield();
}

uint64_t warp_op(Site site, WarpOp op, unsigned mask, uint64_t value, int param, int width) {
  Thread& t = *g.running;
  t.state = State::AtWarpOp;
  t.site = site;
  t.op = op;
  t.mask = mask;
  t.value = value;
  t.param = param;
  t.width = width;
  yield();
  return t.result;
}

void global_access(const void* ptr, unsigned bytes, unsigned align, bool write) {
  const char* kind = write ? "store" : "load";
  if (reinterpret_cast<uintptr_t>(ptr) % align != 0) {
    fail("thread %u: misaligned %u-byte global %s at %p (needs %u-byte alignment)",
         g.running != nullptr ? g.running->linear : 0u, bytes, kind, ptr, align);
  }
  if (memory_checker != nullptr && !memory_checker(ptr, bytes, write)) {
    fail("thread %u: %u-byte global %s at %p, outside every live device allocation",
         g.running != nullptr ? g.running->linear : 0u, bytes, kind, ptr);
  }
  (write ? g.stats.bytes_written : g.stats.bytes_read) += bytes;
}

void philox_call() { ++g.stats.philox_calls; }
void transcendental_call() { ++g.stats.transcendentals; }

void set_memory_checker(MemoryChecker checker) {
  const std::lock_guard<std::mutex> lock(launch_mutex);
  memory_checker = checker;
}

LaunchStats launch(const char* kernel, dim3 grid, dim3 block, void (*body)(void*), void* arg) {
  const std::lock_guard<std::mutex> one_launch_at_a_time(launch_mutex);
  const uint64_t threads_per_block = uint64_t{block.x} * block.y * block.z;
  if (threads_per_block == 0 || threads_per_block > kMaxBlockThreads) {
    fail("kernel %s launched with a block of %llu threads (1 to %u)", kernel,
         static_cast<unsigned long long>(threads_per_block), kMaxBlockThreads);
  }
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  g = Launch{};
  g.kernel = kernel;
  g.body = body;
  g.arg = arg;
  g.threads = static_cast<unsigned>(threads_per_block);
  g.block.block_dim = block;
  g.block.grid_dim = grid;
  uint64_t seed = base_seed() ^ (blocks * 0x9E3779B97F4A7C15ull);
  for (const char* c = kernel; *c != 0; ++c) seed = (seed ^ static_cast<unsigned char>(*c)) * 0x100000001B3ull;
  g.seed = seed;
  current_block = &g.block;
  std::vector<uint64_t> block_read;
  block_read.reserve(blocks);
  for (uint64_t b : block_order(blocks, seed)) {
    g.block.block_idx = dim3{static_cast<unsigned>(b % grid.x),
                             static_cast<unsigned>((b / grid.x) % grid.y),
                             static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y))};
    const uint64_t before = g.stats.bytes_read;
    run_block();
    block_read.push_back(g.stats.bytes_read - before);
  }
  for (uint64_t bytes : block_read) g.stats.block_read_max = std::max(g.stats.block_read_max, bytes);
  for (uint64_t bytes : block_read) {
    if (2 * bytes < g.stats.block_read_max) continue;
    ++g.stats.busy_blocks;
    g.stats.busy_read += bytes;
  }
  current_block = nullptr;
  current_thread = nullptr;
  const LaunchStats stats = g.stats;
  g.kernel = nullptr;
  return stats;
}

}  // namespace emu
