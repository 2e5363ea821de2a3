#!/usr/bin/env bash
# Build (idempotently) the separate venv the label-interop test drives: tests/explain/test_interop_compat.py.
#
#   bash scripts/interop_env.sh            # -> .venv-interop/ next to this repo (self-gitignored)
#
# It holds the real eai-delphi and neuronpedia packages, so the test can check that their own readers
# (delphi's explanation_loader, neuronpedia's Explanation / NPFeature models and upload payload) accept what
# `autointerp export-labels` writes, and that files written by delphi's own writer import here.
#
# Why --no-deps for the two packages: eai-delphi declares its whole GPU pipeline (vllm, bitsandbytes,
# eai-sparsify, faiss-cpu, sentence-transformers, datasets, flask, ...: several GB, vllm needs CUDA), of
# which the explanation loader and writer use none; neuronpedia forgets pydantic, which its models import.
# So step 1 builds the venv with only the modules those code paths import, CPU torch pinned, through
# scripts/peer_env.sh (dry run, torch check, stamp); step 2 adds the two packages without their declared
# dependencies and records them in VENV/.installed-nodeps. scripts/interop_probe.py imports the loader
# modules without running delphi.clients/__init__ and delphi.latents/__init__ (they import vllm and faiss).
#
# Env overrides: INTEROP_VENV (target dir), DELPHI_SPEC, NEURONPEDIA_SPEC, TORCH_SPEC, PYTHON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${INTEROP_VENV:-$ROOT/.venv-interop}"
DELPHI_SPEC="${DELPHI_SPEC:-eai-delphi==0.1.3}"
NEURONPEDIA_SPEC="${NEURONPEDIA_SPEC:-neuronpedia==1.2.1}"
start=$SECONDS

# What delphi/explainers/explainer.py, delphi/latents/latents.py, delphi/pipeline.py and neuronpedia's
# models import at module level (torch and transformers come from delphi.latents.latents).
bash "$ROOT/scripts/peer_env.sh" interop_env "$VENV" \
    transformers aiofiles blobfile orjson jaxtyping tqdm pydantic python-dotenv requests

STAMP="$VENV/.installed-nodeps"
WANT="$DELPHI_SPEC $NEURONPEDIA_SPEC"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "interop_env: $DELPHI_SPEC and $NEURONPEDIA_SPEC are installed"
    exit 0
fi
rm -f "$STAMP"
echo "interop_env: pip install --no-deps $WANT"
"$VENV/bin/python" -m pip --disable-pip-version-check install --quiet --no-deps "$DELPHI_SPEC" "$NEURONPEDIA_SPEC" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
print("interop_env: " + ", ".join(f"{n} {md.version(n)}" for n in ("eai-delphi", "neuronpedia", "torch", "transformers", "pydantic")))
PY
printf '%s' "$WANT" > "$STAMP"
echo "interop_env: done in $((SECONDS - start))s; size $(du -sh "$VENV" | cut -f1)"
