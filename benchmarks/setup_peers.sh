#!/usr/bin/env bash
# Build (idempotently) the isolated venv that benchmarks/sae_train.py runs its peer SAE trainers in:
# EleutherAI's eai-sparsify and sae-lens, each with the project's CPU torch.
#
#   bash benchmarks/setup_peers.sh          # -> .venv-bench/ next to this repo (self-gitignored)
#
# The build itself (CPU torch pinned through a constraints file, dry run first, torch version asserted,
# stamp file) is scripts/peer_env.sh, shared with scripts/saelens_env.sh.
#
# Env overrides: BENCH_VENV (target dir), SPARSIFY_SPEC, SAELENS_SPEC, TORCH_SPEC, PYTHON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec bash "$ROOT/scripts/peer_env.sh" setup_peers "${BENCH_VENV:-$ROOT/.venv-bench}" \
    "${SPARSIFY_SPEC:-eai-sparsify==1.3.3}" "${SAELENS_SPEC:-sae-lens==6.54.12}"
