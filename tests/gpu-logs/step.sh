# Sourced by the GPU session scripts of this folder: moves to the repository root, makes $OUT,
# and defines `step NAME LIMIT LOG COMMAND...`, which runs COMMAND under a time limit (seconds)
# with its output appended to $OUT/LOG, logs how it ended, and records a failure in `status`.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
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
