#!/usr/bin/env bash
# The prepared GPU check, as one device call (docs/gpu.md): installs carried wheels if any (.whl/, built by
# scripts/gpu_wheelhouse.sh; the check itself needs none), then runs benchmarks/gpu_check.py with the repo on
# PYTHONPATH, writing its log, its figures (JSON) and nvidia-smi's answer under $OUT (or /tmp).
set -o pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 AUTOINTERP_PROGRESS=0
out="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/nvidia_smi.txt"
timeout "${GPU_CHECK_TIMEOUT:-540}" python3 benchmarks/gpu_check.py --json "$out/gpu_check.json" "$@" 2>&1 | tee "$out/gpu_check.log"
