#!/usr/bin/env bash
# One GPU session, run on the GPU machine from the repository root after, here,
#
#   ASPS_CUDA_ARCHS=90 ../shared/tools/gpu-pack     # builds .gpu/tests and .gpu/benches
#   rm .gpu/tests/emu_* .gpu/benches/{asps,reference,structure,model_counts}
#
# (the emulator's tests and the CPU-only benches do not run there, and with them `.gpu` is over
# the device tool's 64 MiB carry limit), then, there, with `.gpu` carried:
#
#   bash tests/gpu-logs/session.sh        # OUT: where logs and the bench JSON go (default /tmp/out)
#
# On an H100 (2026-11-26) the whole script took 294 s.
#
# In order, each step under its own time limit (seconds), so that one stuck step cannot eat the
# session: the test executables; compute-sanitizer memcheck, racecheck, initcheck and synccheck
# on the verification tests that are quick under instrumentation; the benches in their quick
# mode (the two target shapes); bench/baselines.py against the bench JSON; then, if the session
# is still young, the benches over their whole grid. A step's failure is logged and the next
# step runs; the exit status says whether any failed. At most 8 files land in $OUT (what the
# device tool brings back): device.txt, tests.log, sanitize.log, bench.log, clocks.csv,
# baselines.log and the two bench JSON files.
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
  # One test at a time with its output, so that the log holds what the GPU tests print (the
  # device, chi-square p-values, near-tie counts) under each test's name.
  step "test $(basename "$t")" "$limit" tests.log "$t" --include-ignored --nocapture --test-threads=1
done

# 2. compute-sanitizer on the verification tests that stay quick when every access is checked
#    (the chi-square tests launch thousands of large blocks and are left out; the full reference
#    comparison takes about 17 s under memcheck on an H100): memcheck (out-of-bounds and
#    misaligned global accesses, leaks), racecheck (shared memory), initcheck (reads of device
#    memory nothing wrote) and synccheck (barriers).
memcheck=(bad_values_are_reported_per_request extreme_temperatures_follow_the_reference
  stale_workspace_entries_never_reach_a_decision padded_and_misaligned_layouts_match_the_reference
  graph_replays_draw_fresh_noise standalone_softmax_and_residual_match_the_reference
  drafts_up_to_max_draft_verify_and_longer_ones_are_refused
  both_residual_forms_give_the_reference_outcomes truncation_arrays_are_checked
  truncation_matches_the_reference a_request_does_not_depend_on_its_batch gpu_matches_the_reference)
racecheck=(extreme_temperatures_follow_the_reference stale_workspace_entries_never_reach_a_decision
  drafts_up_to_max_draft_verify_and_longer_ones_are_refused
  both_residual_forms_give_the_reference_outcomes truncation_arrays_are_checked
  truncation_matches_the_reference)
# initcheck: no kernel reads device memory that nothing wrote (the workspace is uninitialised).
initcheck=(stale_workspace_entries_never_reach_a_decision padded_and_misaligned_layouts_match_the_reference
  drafts_up_to_max_draft_verify_and_longer_ones_are_refused
  both_residual_forms_give_the_reference_outcomes truncation_arrays_are_checked)
# synccheck: every __syncthreads / warp barrier reached by all the threads it names.
synccheck=(stale_workspace_entries_never_reach_a_decision both_residual_forms_give_the_reference_outcomes
  truncation_arrays_are_checked)
for name in "${memcheck[@]}"; do
  step "memcheck gpu_verify $name" 60 sanitize.log \
    compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
done
step "memcheck c_abi" 45 sanitize.log compute-sanitizer --tool memcheck --error-exitcode 9 .gpu/tests/c_abi
for name in "${racecheck[@]}"; do
  step "racecheck gpu_verify $name" 60 sanitize.log \
    compute-sanitizer --tool racecheck --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
done
for name in "${initcheck[@]}"; do
  step "initcheck gpu_verify $name" 45 sanitize.log \
    compute-sanitizer --tool initcheck --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
done
for name in "${synccheck[@]}"; do
  step "synccheck gpu_verify $name" 45 sanitize.log \
    compute-sanitizer --tool synccheck --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
done

# 3. Benches, quick mode: the two target shapes, ASpS, SpS, greedy, with the floor; JSON to $OUT.
#    The SM and memory clocks are sampled every 100 ms from here to the end of the full grid
#    (clocks.csv): small shapes run too briefly to be sure the GPU left its idle clocks.
export CARGO_TARGET_DIR=$PWD/.gpu
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw --format=csv -lms 100 \
  >"$OUT/clocks.csv" 2>&1 &
clocks=$!
ASPS_BENCH_QUICK=1 step "bench gpu (quick)" 120 bench.log .gpu/benches/gpu --bench

# 4. Baselines (PyTorch) against that JSON, in the same session.
json=$(ls -t "$OUT"/gpu-*.json 2>/dev/null | head -1)
if [[ -n $json ]]; then
  step "baselines" 200 baselines.log python3 bench/baselines.py --ours "$json" --quick
else
  echo "== no bench JSON in $OUT: baselines skipped" | tee -a "$OUT/baselines.log"
  status=1
fi

# 5. The whole bench grid (V in {32000, 128256, 151936}, n in {1, 4, 8, 16}, B in {1, 8, 64,
#    256}, bf16 and f32), while the session has time: it must end by SESSION_LIMIT seconds.
SESSION_LIMIT=${SESSION_LIMIT:-360}
left=$((SESSION_LIMIT - SECONDS))
if ((left > 120)); then
  step "bench gpu (full grid)" "$left" bench.log .gpu/benches/gpu --bench
else
  echo "== $(date -u +%T) full grid skipped: ${left}s left of ${SESSION_LIMIT}s" | tee -a "$OUT/bench.log"
fi
kill "$clocks" 2>/dev/null
echo "== session exit $status after ${SECONDS}s"
exit $status
