#!/usr/bin/env bash
# Build (idempotently) the separate venv the SAELens compatibility test drives: tests/sae/test_saelens_compat.py.
#
#   bash scripts/saelens_env.sh            # -> .venv-saelens/ next to this repo (self-gitignored)
#
# sae-lens pulls transformer-lens, wandb, plotly, nltk, ... (~35 packages) that autointerp does not need,
# so it lives in its own venv instead of the project's .venv; the test talks to it through
# scripts/saelens_probe.py and safetensors files. The build itself (CPU torch pinned, dry run, stamp) is
# scripts/peer_env.sh, shared with benchmarks/setup_peers.sh.
#
# Env overrides: SAELENS_VENV (target dir), SAELENS_SPEC (sae-lens requirement), TORCH_SPEC, PYTHON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec bash "$ROOT/scripts/peer_env.sh" saelens_env "${SAELENS_VENV:-$ROOT/.venv-saelens}" \
    "${SAELENS_SPEC:-sae-lens==6.54.12}"
