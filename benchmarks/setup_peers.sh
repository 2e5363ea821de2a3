#!/usr/bin/env bash
# Build (idempotently) the isolated venv that benchmarks/sae_train.py runs its peer SAE trainers in:
# EleutherAI's eai-sparsify and sae-lens, each with the project's CPU torch.
#
#   bash benchmarks/setup_peers.sh          # -> .venv-bench/ next to this repo (self-gitignored)
#
# The peers live outside the project's .venv because they pull packages autointerp does not need
# (sae-lens: transformer-lens, wandb, plotly, ...; sparsify: schedulefree, simple-parsing, ...) and may
# want other transformers versions. torch is pinned through a constraints file to the CPU wheel the
# project uses: an unpinned resolve would pull a multi-GB CUDA build. Every install is dry-run first and
# the torch version is asserted afterwards.
#
# Env overrides: BENCH_VENV (target dir), SPARSIFY_SPEC, SAELENS_SPEC, TORCH_SPEC, PYTHON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
SPARSIFY_SPEC="${SPARSIFY_SPEC:-eai-sparsify==1.3.3}"
SAELENS_SPEC="${SAELENS_SPEC:-sae-lens==6.54.12}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"
WANT="$SPARSIFY_SPEC $SAELENS_SPEC $TORCH_SPEC"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
    echo "setup_peers: $VENV is up to date ($WANT)"
    exit 0
fi

start=$SECONDS
echo "setup_peers: building $VENV with $WANT (python: $("$PYTHON" --version 2>&1))"
rm -f "$STAMP"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
printf '*\n' > "$VENV/.gitignore"  # keep the venv out of git whatever the repo's .gitignore says

constraints="$VENV/constraints.txt"
printf '%s\n' "$TORCH_SPEC" > "$constraints"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
quiet_pip() {  # drop the local mirror's "Location ... is ignored" noise, keep real warnings and errors
    "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

echo "setup_peers: [1/3] pip install $TORCH_SPEC  (+$((SECONDS - start))s)"
quiet_pip install --quiet "$TORCH_SPEC"

echo "setup_peers: [2/3] dry run: pip install -c constraints.txt $SPARSIFY_SPEC $SAELENS_SPEC  (+$((SECONDS - start))s)"
plan="$(quiet_pip install --dry-run -c "$constraints" "$SPARSIFY_SPEC" "$SAELENS_SPEC" 2>&1 | grep '^Would install' || true)"
echo "setup_peers: $plan"
if grep -Eq '(^| )(torch-[0-9]|nvidia-)' <<<"$plan"; then
    echo "setup_peers: refusing: the resolve would replace torch or pull CUDA packages" >&2
    exit 1
fi

echo "setup_peers: [3/3] pip install -c constraints.txt $SPARSIFY_SPEC $SAELENS_SPEC  (+$((SECONDS - start))s)"
quiet_pip install --quiet -c "$constraints" "$SPARSIFY_SPEC" "$SAELENS_SPEC"

# The constraints file must have kept torch where it was; fail loudly rather than run on a surprise build.
"$VENV/bin/python" - "$TORCH_SPEC" <<'PY'
import sys, importlib.metadata as md
want = sys.argv[1].split("==", 1)[-1]
got = md.version("torch")
assert got.split("+")[0] == want, f"torch {got} installed, expected {want}"
names = ("torch", "eai-sparsify", "sae-lens", "transformer-lens", "transformers", "schedulefree", "safetensors")
print("setup_peers: " + ", ".join(f"{n} {md.version(n)}" for n in names))
PY
printf '%s' "$WANT" > "$STAMP"
echo "setup_peers: done in $((SECONDS - start))s; size $(du -sh "$VENV" | cut -f1)"
