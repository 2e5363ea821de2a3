#!/usr/bin/env bash
# Build (idempotently) the separate venv the SAELens compatibility test drives: tests/test_saelens_compat.py.
#
#   bash scripts/saelens_env.sh            # -> .venv-saelens/ next to this repo (self-gitignored)
#
# sae-lens pulls transformer-lens, wandb, plotly, nltk, ... (~35 packages) that autointerp does not need,
# so it lives in its own venv instead of the project's .venv; the test talks to it through
# scripts/saelens_probe.py and safetensors files. torch is pinned (constraints file) to the CPU wheel the
# project uses: an unpinned torch would pull several GB of CUDA packages.
#
# Env overrides: SAELENS_VENV (target dir), SAELENS_SPEC (sae-lens requirement), TORCH_SPEC, PYTHON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAELENS_VENV:-$ROOT/.venv-saelens}"
SAELENS_SPEC="${SAELENS_SPEC:-sae-lens==6.54.12}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"
WANT="$SAELENS_SPEC $TORCH_SPEC"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
    echo "saelens_env: $VENV is up to date ($WANT)"
    exit 0
fi

start=$SECONDS
echo "saelens_env: building $VENV with $WANT (python: $("$PYTHON" --version 2>&1))"
rm -f "$STAMP"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
printf '*\n' > "$VENV/.gitignore"  # keep the venv out of git whatever the repo's .gitignore says

constraints="$VENV/constraints.txt"
printf '%s\n' "$TORCH_SPEC" > "$constraints"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
quiet_pip() {  # drop the mirror's "Location ... is ignored" noise, keep real warnings and errors
    "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

echo "saelens_env: [1/2] pip install $TORCH_SPEC  (+$((SECONDS - start))s)"
quiet_pip install --quiet "$TORCH_SPEC"
echo "saelens_env: [2/2] pip install -c constraints.txt $SAELENS_SPEC  (+$((SECONDS - start))s)"
quiet_pip install --quiet -c "$constraints" "$SAELENS_SPEC"

# The constraints file must have kept torch where it was; fail loudly rather than run on a surprise build.
"$VENV/bin/python" - "$TORCH_SPEC" <<'PY'
import sys, importlib.metadata as md
want = sys.argv[1].split("==", 1)[-1]
got = md.version("torch")
assert got.split("+")[0] == want, f"torch {got} installed, expected {want}"
print(f"saelens_env: torch {got}, sae-lens {md.version('sae-lens')}, transformer-lens {md.version('transformer-lens')}, "
      f"transformers {md.version('transformers')}")
PY
printf '%s' "$WANT" > "$STAMP"
echo "saelens_env: done in $((SECONDS - start))s; size $(du -sh "$VENV" | cut -f1)"
