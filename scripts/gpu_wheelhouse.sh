#!/usr/bin/env bash
# Wheels of what the GPU device image lacks, for a device call to carry (docs/gpu.md).
#
# The image has torch, transformers, safetensors, scipy, pandas, pyarrow, rich, typer, matplotlib,
# sentence-transformers and pytest, but not datasets, openai or gguf (library device README / KINDS.md).
# benchmarks/gpu_check.py needs none of these; carry them only to run other autointerp paths there (hub
# datasets, the OpenAI backend, GGUF conversion). Pure-Python wheels where they exist; the compiled ones
# (pydantic-core, jiter) are manylinux x86-64 wheels for CPython 3.12 (the image's
# python3). Versions are the ones installed in this checkout's .venv, so both sides run the same code.
# Writes .whl/ (git-ignored through .git/info/exclude), a few MiB; carry it with carry=[".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PACKAGES=(datasets dill multiprocess gguf openai httpx2 distro jiter sniffio pydantic pydantic-core annotated-types typing-inspection)
missing=()
for name in "${PACKAGES[@]}"; do
    version="$("$PY" -m pip show "$name" 2>/dev/null | awk '/^Version:/ {print $2}' || true)"
    spec="$name${version:+==$version}"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "$spec" 2> >(grep -v '^WARNING: Location' >&2) || missing+=("$spec")
done
[ ${#missing[@]} -eq 0 ] || echo "could not fetch: ${missing[*]} (the check itself needs none of them)" >&2
du -sh .whl
ls .whl
