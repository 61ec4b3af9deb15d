// A kernel that does nothing: two of its launches in a CUDA graph, replayed, time the latency a
// verify call's two dependent launches cost before any work (the benches' launch floor).

extern "C" __global__ void asps_empty() {}
