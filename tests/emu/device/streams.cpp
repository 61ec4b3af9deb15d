// Streams, events, graph capture and graphs.
//
// Work runs when it is queued, so every stream is always idle and synchronising waits for
// nothing. A stream under capture records its work instead; cuGraphLaunch replays it. The
// capture rules the crate relies on are enforced as the driver does: no synchronising call
// (cuStreamSynchronize on the capturing stream, cuCtxSynchronize, cuMemAlloc, synchronous
// copies) from a thread the capture mode covers, no wait on an event recorded outside the
// capture, no legacy-stream work while a blocking stream captures, no capture on the legacy
// stream. A violation fails the call and invalidates the capture, so cuStreamEndCapture
// returns CUDA_ERROR_STREAM_CAPTURE_INVALIDATED. Cross-stream capture (fork and join through
// events) is not emulated and is refused with CUDA_ERROR_NOT_SUPPORTED.

#include "device.h"

namespace device {
namespace {

using Clock = std::chrono::steady_clock;

struct Capture {
  bool active = false;
  bool invalidated = false;
  int mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
  std::thread::id owner;
  uint64_t id = 0;
  std::vector<Op> ops;
};

struct Stream {
  unsigned flags = CU_STREAM_DEFAULT;
  Capture capture;
};

struct Event {
  unsigned flags = 0;
  bool recorded = false;
  uint64_t capture_id = 0;  // the capture it was last recorded in, 0 if none
  Clock::time_point time;
};

struct Graph {
  std::vector<Op> ops;
};

struct GraphExec {
  std::vector<Op> ops;
};

Stream g_legacy;  // the legacy default stream (NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD)
std::set<Stream*> g_streams;
std::set<Event*> g_events;
std::set<Graph*> g_graphs;
std::set<GraphExec*> g_execs;
uint64_t g_next_capture = 1;

bool special(CUstream h) { return h == nullptr || h == kStreamLegacy || h == kStreamPerThread; }

Stream* find_stream(CUstream h) {
  if (special(h)) return &g_legacy;
  auto* s = reinterpret_cast<Stream*>(h);
  return g_streams.count(s) != 0 ? s : nullptr;
}

template <typename T, typename H>
T* find(const std::set<T*>& live, H h) {
  auto* p = reinterpret_cast<T*>(h);
  return live.count(p) != 0 ? p : nullptr;
}

// Destroys a live object of `live` named by handle h.
template <typename T, typename H>
CUresult destroy(std::set<T*>& live, H h) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  T* p = find(live, h);
  if (p == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  live.erase(p);
  delete p;
  return CUDA_SUCCESS;
}

bool capture_active(uint64_t id) {
  if (id == 0) return false;
  for (Stream* s : g_streams) {
    if (s->capture.active && s->capture.id == id) return true;
  }
  return false;
}

CUresult invalidate(Capture& c, CUresult why, const char* what) {
  c.invalidated = true;
  note("%s invalidated a stream capture", what);
  return why;
}

// Work on the legacy stream waits for every blocking stream: forbidden while one captures.
CUresult check_legacy_work(const char* what) {
  for (Stream* s : g_streams) {
    if (s->capture.active && !s->capture.invalidated && s->flags == CU_STREAM_DEFAULT) {
      return invalidate(s->capture, CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, what);
    }
  }
  return CUDA_SUCCESS;
}

CUresult replay(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    // Buffers may have been freed since the capture.
    const bool dst_ok = op.kind == Op::Launch || op.kind == Op::CopyDtoH || op.bytes == 0 ||
                        in_allocation(op.dst, op.bytes);
    const bool src_ok = (op.kind != Op::CopyDtoH && op.kind != Op::CopyDtoD) || op.bytes == 0 ||
                        in_allocation(op.src, op.bytes);
    if (!dst_ok || !src_ok) {
      note("a graph replay copies from or to memory freed since the capture");
      return CUDA_ERROR_ILLEGAL_ADDRESS;
    }
    execute(op);
  }
  return CUDA_SUCCESS;
}

}  // namespace

void execute(const Op& op) {
  if (op.kind == Op::Launch) {
    execute_launch(op);
  } else {
    execute_copy(op);
  }
}

bool valid_stream(CUstream h) { return find_stream(h) != nullptr; }

CUresult refuse_if_capturing(CUstream h, const char* what) {
  Stream* s = find_stream(h);
  if (s == nullptr || !s->capture.active) return CUDA_SUCCESS;
  note("%s on a capturing stream (a graph memory node) is not emulated", what);
  s->capture.invalidated = true;
  return CUDA_ERROR_NOT_SUPPORTED;
}

CUresult enqueue(CUstream h, Op op) {
  Stream* s = find_stream(h);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (s->capture.active) {
    if (s->capture.invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    s->capture.ops.push_back(std::move(op));
    return CUDA_SUCCESS;
  }
  if (s == &g_legacy) {
    if (const CUresult rc = check_legacy_work("work on the legacy stream"); rc != CUDA_SUCCESS) {
      return rc;
    }
  }
  execute(op);
  return CUDA_SUCCESS;
}

CUresult check_sync_call_allowed(const char* what) {
  for (Stream* s : g_streams) {
    Capture& c = s->capture;
    if (!c.active || c.invalidated) continue;
    const bool covered = c.mode == CU_STREAM_CAPTURE_MODE_GLOBAL ||
                         (c.mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
                          c.owner == std::this_thread::get_id());
    if (covered) return invalidate(c, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, what);
  }
  return CUDA_SUCCESS;
}

void reset_streams() {
  for (Stream* s : g_streams) delete s;
  for (Event* e : g_events) delete e;
  for (Graph* g : g_graphs) delete g;
  for (GraphExec* x : g_execs) delete x;
  g_streams.clear();
  g_events.clear();
  g_graphs.clear();
  g_execs.clear();
  g_legacy = Stream{};
}

}  // namespace device

using namespace device;

// ---- Streams --------------------------------------------------------------------------------

ASPS_EXPORT CUresult cuStreamCreate(CUstream* stream, unsigned flags) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (stream == nullptr || (flags != CU_STREAM_DEFAULT && flags != CU_STREAM_NON_BLOCKING)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  auto* s = new Stream;
  s->flags = flags;
  g_streams.insert(s);
  *stream = reinterpret_cast<CUstream>(s);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  const Lock lock(mutex());
  return destroy(g_streams, stream);  // the special handles are in no set: refused
}

ASPS_EXPORT CUresult cuStreamSynchronize(CUstream stream) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Stream* s = find_stream(stream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (s->capture.active) {
    return invalidate(s->capture, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
                      "cuStreamSynchronize on the capturing stream");
  }
  if (s == &g_legacy) return check_legacy_work("cuStreamSynchronize on the legacy stream");
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuStreamQuery(CUstream stream) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Stream* s = find_stream(stream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (s->capture.active) {
    return invalidate(s->capture, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
                      "cuStreamQuery on the capturing stream");
  }
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuStreamGetCtx(CUstream stream, CUcontext* ctx) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (find_stream(stream) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *ctx = primary_context();
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned flags) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Stream* s = find_stream(stream);
  Event* e = find(g_events, event);
  if (s == nullptr || e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  const bool recorded_in_capture = capture_active(e->capture_id);
  if (s->capture.active) {
    if (s->capture.invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    if (e->recorded && e->capture_id != s->capture.id) {
      return invalidate(s->capture, CUDA_ERROR_STREAM_CAPTURE_ISOLATION,
                        "a wait on an event recorded outside the capture");
    }
  } else if (recorded_in_capture) {
    note("a stream joining another stream's capture (through an event) is not emulated");
    return CUDA_ERROR_NOT_SUPPORTED;
  } else if (s == &g_legacy) {
    return check_legacy_work("cuStreamWaitEvent on the legacy stream");
  }
  return CUDA_SUCCESS;  // every recorded event has completed
}

ASPS_EXPORT CUresult cuStreamBeginCapture_v2(CUstream stream, int mode) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  Stream* s = find_stream(stream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (mode < CU_STREAM_CAPTURE_MODE_GLOBAL || mode > CU_STREAM_CAPTURE_MODE_RELAXED) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (s == &g_legacy) {
    if (stream == kStreamPerThread) note("capture on the per-thread default stream is not emulated");
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  }
  if (s->capture.active) return CUDA_ERROR_ILLEGAL_STATE;
  s->capture = Capture{};
  s->capture.active = true;
  s->capture.mode = mode;
  s->capture.owner = std::this_thread::get_id();
  s->capture.id = g_next_capture++;
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuStreamEndCapture(CUstream stream, CUgraph* graph) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Stream* s = find_stream(stream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  Capture& c = s->capture;
  if (!c.active) return CUDA_ERROR_ILLEGAL_STATE;
  // Every mode but RELAXED ends on the thread that began it.
  if (c.mode != CU_STREAM_CAPTURE_MODE_RELAXED && c.owner != std::this_thread::get_id()) {
    return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
  }
  c.active = false;
  if (c.invalidated) {
    *graph = nullptr;
    c.ops.clear();
    return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  }
  auto* g = new Graph{std::move(c.ops)};
  g_graphs.insert(g);
  *graph = reinterpret_cast<CUgraph>(g);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuStreamIsCapturing(CUstream stream, int* status) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Stream* s = find_stream(stream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *status = !s->capture.active        ? CU_STREAM_CAPTURE_STATUS_NONE
            : s->capture.invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                     : CU_STREAM_CAPTURE_STATUS_ACTIVE;
  return CUDA_SUCCESS;
}

// ---- Events ---------------------------------------------------------------------------------

ASPS_EXPORT CUresult cuEventCreate(CUevent* event, unsigned flags) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  if (event == nullptr || (flags & ~unsigned{CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING}) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  auto* e = new Event;
  e->flags = flags;
  g_events.insert(e);
  *event = reinterpret_cast<CUevent>(e);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuEventDestroy_v2(CUevent event) {
  const Lock lock(mutex());
  return destroy(g_events, event);
}

ASPS_EXPORT CUresult cuEventRecord(CUevent event, CUstream stream) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Event* e = find(g_events, event);
  Stream* s = find_stream(stream);
  if (e == nullptr || s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (s->capture.active) {
    if (s->capture.invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    e->recorded = true;
    e->capture_id = s->capture.id;
    return CUDA_SUCCESS;
  }
  if (s == &g_legacy) {
    if (const CUresult rc = check_legacy_work("cuEventRecord on the legacy stream"); rc != CUDA_SUCCESS) {
      return rc;
    }
  }
  e->recorded = true;
  e->capture_id = 0;
  e->time = Clock::now();
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuEventSynchronize(CUevent event) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Event* e = find(g_events, event);
  if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return capture_active(e->capture_id) ? CUDA_ERROR_CAPTURED_EVENT : CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuEventQuery(CUevent event) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Event* e = find(g_events, event);
  if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return capture_active(e->capture_id) ? CUDA_ERROR_CAPTURED_EVENT : CUDA_SUCCESS;
}

// Host time between the two records: work runs when queued, so this is the time the work
// between them took on the emulator (nothing like a GPU's).
ASPS_EXPORT CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Event* a = find(g_events, start);
  Event* b = find(g_events, end);
  if (a == nullptr || b == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (capture_active(a->capture_id) || capture_active(b->capture_id)) return CUDA_ERROR_CAPTURED_EVENT;
  if ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
  if (!a->recorded || !b->recorded || a->capture_id != 0 || b->capture_id != 0) {
    return CUDA_ERROR_INVALID_HANDLE;
  }
  *ms = std::chrono::duration<float, std::milli>(b->time - a->time).count();
  return CUDA_SUCCESS;
}

// ---- Graphs ---------------------------------------------------------------------------------

ASPS_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph,
                                                 unsigned long long flags) {
  const Lock lock(mutex());
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Graph* g = find(g_graphs, graph);
  if (g == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (flags != 0) {
    note("graph instantiation flags 0x%llx are not emulated", flags);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  auto* x = new GraphExec{g->ops};
  g_execs.insert(x);
  *exec = reinterpret_cast<CUgraphExec>(x);
  return CUDA_SUCCESS;
}

ASPS_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  const Lock lock(mutex());
  if (const CUresult rc = require_context(); rc != CUDA_SUCCESS) return rc;
  GraphExec* x = find(g_execs, exec);
  Stream* s = find_stream(stream);
  if (x == nullptr || s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (s->capture.active) {
    if (s->capture.invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    s->capture.ops.insert(s->capture.ops.end(), x->ops.begin(), x->ops.end());
    return CUDA_SUCCESS;
  }
  if (s == &g_legacy) {
    if (const CUresult rc = check_legacy_work("cuGraphLaunch on the legacy stream"); rc != CUDA_SUCCESS) {
      return rc;
    }
  }
  return replay(x->ops);
}

ASPS_EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec) {
  const Lock lock(mutex());
  return destroy(g_execs, exec);
}

ASPS_EXPORT CUresult cuGraphDestroy(CUgraph graph) {
  const Lock lock(mutex());
  return destroy(g_graphs, graph);
}
