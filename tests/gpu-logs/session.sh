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
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
status=0
step() { # NAME LIMIT LOG COMMAND...
  local name=$1 limit=$2 log=$OUT/$3
  shift 3
  echo "== $(date -u +%T) $name (limit ${limit}s)" | tee -a "$log"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$log"
  [[ $rc -eq 0 ]] || status=1
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/device.txt"
nvcc --version | tail -2 >>"$OUT/device.txt"

# 1. Every test executable (the GPU tests run at their GPU sizes; the rest are CPU tests).
for t in .gpu/tests/*; do
  step "test $(basename "$t")" 120 tests.log "$t" --include-ignored
done

# 2. compute-sanitizer on the verification tests that stay quick when every access is checked
#    (the chi-square and full reference comparisons launch thousands of large blocks).
quick=(bad_values_are_reported_per_request a_request_does_not_depend_on_its_batch
  extreme_temperatures_follow_the_reference stale_workspace_entries_never_reach_a_decision
  graph_replays_draw_fresh_noise standalone_softmax_and_residual_match_the_reference)
for tool in memcheck racecheck; do
  for name in "${quick[@]}"; do
    step "$tool gpu_verify $name" 60 sanitize.log \
      compute-sanitizer --tool "$tool" --error-exitcode 9 .gpu/tests/gpu_verify --exact "$name"
  done
  step "$tool c_abi" 60 sanitize.log compute-sanitizer --tool "$tool" --error-exitcode 9 .gpu/tests/c_abi
done

# 3. Benches, quick mode: the two target shapes, ASpS, SpS, greedy, with the floor; JSON to $OUT.
export CARGO_TARGET_DIR=$PWD/.gpu
ASPS_BENCH_QUICK=1 step "bench gpu (quick)" 240 bench.log \
  .gpu/benches/gpu --bench --warm-up-time 1 --measurement-time 2

# 4. Baselines (PyTorch) against that JSON, in the same session.
json=$(ls -t "$OUT"/gpu-*.json 2>/dev/null | head -1)
if [[ -n $json ]]; then
  step "baselines" 240 baselines.log python3 bench/baselines.py --ours "$json" --quick
else
  echo "== no bench JSON in $OUT: baselines skipped" | tee -a "$OUT/baselines.log"
  status=1
fi
echo "== session exit $status"
exit $status
