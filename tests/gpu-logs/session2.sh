#!/usr/bin/env bash
# The second call of the first GPU session (tests/gpu-logs/session.sh ran first): the benches
# over their whole grid (V in {32000, 128256, 151936}, n in {1, 4, 8, 16}, B in {1, 8, 64, 256},
# bf16 and f32) for the JSON, then compute-sanitizer memcheck on the two verification tests the
# first call left out (a_request_does_not_depend_on_its_batch, and the full reference
# comparison while the time lasts).
source "$(dirname "$0")/step.sh"
export CARGO_TARGET_DIR=$PWD/.gpu
step "bench gpu (full grid)" 300 bench-full.log .gpu/benches/gpu --bench
step "memcheck gpu_verify a_request_does_not_depend_on_its_batch" 45 sanitize2.log \
  compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
  .gpu/tests/gpu_verify --exact a_request_does_not_depend_on_its_batch
left=$((440 - SECONDS))
if ((left > 30)); then
  step "memcheck gpu_verify gpu_matches_the_reference" "$left" sanitize2.log \
    compute-sanitizer --tool memcheck --error-exitcode 9 .gpu/tests/gpu_verify --exact gpu_matches_the_reference
fi
echo "== session exit $status"
exit $status
