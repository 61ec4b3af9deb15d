#!/usr/bin/env bash
# One GPU session, run on the GPU machine from the repository root after
# `ASPS_CUDA_ARCHS=90 ../shared/tools/gpu-pack` here (it builds .gpu/tests and .gpu/benches):
#
#   bash tests/gpu-logs/session.sh        # OUT: where logs and the bench JSON go (default /tmp/out)
#
# In order, each step under its own time limit (seconds), so that one stuck step cannot eat the
# session: the test executables; compute-sanitizer memcheck and racecheck on the verification
# tests that are quick under instrumentation; the benches in their quick mode (the two target
# shapes); bench/baselines.py against the bench JSON. A step's failure is logged and the next
# step runs; the exit status says whether any failed.
source "$(dirname "$0")/step.sh"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/device.txt"
nvcc --version | tail -2 >>"$OUT/device.txt"

# 1. Every test executable (the GPU tests run at their GPU sizes; the rest are CPU tests).
# The emu_* tests run the kernels' source on the CPU emulator, which needs the symbol table
# that gpu-pack strips: CI runs them; here they would only abort.
for t in .gpu/tests/*; do
  [[ $(basename "$t") == emu_* ]] && continue
  limit=60
  [[ $(basename "$t") == gpu_verify ]] && limit=180
  step "test $(basename "$t")" "$limit" tests.log "$t" --include-ignored
done

# 2. compute-sanitizer on the verification tests that stay quick when every access is checked
#    (the chi-square and full reference comparisons launch thousands of large blocks):
#    memcheck (out-of-bounds and misaligned global accesses, leaks), racecheck (shared memory)
#    and initcheck (reads of device memory nothing wrote).
memcheck=(bad_values_are_reported_per_request extreme_temperatures_follow_the_reference
  stale_workspace_entries_never_reach_a_decision padded_and_misaligned_layouts_match_the_reference
  graph_replays_draw_fresh_noise standalone_softmax_and_residual_match_the_reference
  drafts_up_to_max_draft_verify_and_longer_ones_are_refused)
racecheck=(extreme_temperatures_follow_the_reference stale_workspace_entries_never_reach_a_decision
  drafts_up_to_max_draft_verify_and_longer_ones_are_refused)
# initcheck: no kernel reads device memory that nothing wrote (the workspace is uninitialised).
initcheck=(stale_workspace_entries_never_reach_a_decision padded_and_misaligned_layouts_match_the_reference
  drafts_up_to_max_draft_verify_and_longer_ones_are_refused)
for name in "${memcheck[@]}"; do
  step "memcheck gpu_verify $name" 45 sanitize.log \
    compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
done
step "memcheck c_abi" 45 sanitize.log compute-sanitizer --tool memcheck --error-exitcode 9 .gpu/tests/c_abi
for name in "${racecheck[@]}"; do
  step "racecheck gpu_verify $name" 45 sanitize.log \
    compute-sanitizer --tool racecheck --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
done
for name in "${initcheck[@]}"; do
  step "initcheck gpu_verify $name" 45 sanitize.log \
    compute-sanitizer --tool initcheck --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
done

# 3. Benches, quick mode: the two target shapes, ASpS, SpS, greedy, with the floor; JSON to $OUT.
#    The SM and memory clocks are sampled every 100 ms meanwhile (clocks.csv): small shapes run
#    too briefly to be sure the GPU left its idle clocks.
export CARGO_TARGET_DIR=$PWD/.gpu
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw --format=csv -lms 100 \
  >"$OUT/clocks.csv" 2>&1 &
clocks=$!
ASPS_BENCH_QUICK=1 step "bench gpu (quick)" 120 bench.log .gpu/benches/gpu --bench
kill "$clocks" 2>/dev/null

# 4. Baselines (PyTorch) against that JSON, in the same session.
json=$(ls -t "$OUT"/gpu-*.json 2>/dev/null | head -1)
if [[ -n $json ]]; then
  step "baselines" 150 baselines.log python3 bench/baselines.py --ours "$json" --quick
else
  echo "== no bench JSON in $OUT: baselines skipped" | tee -a "$OUT/baselines.log"
  status=1
fi
echo "== session exit $status"
exit $status
