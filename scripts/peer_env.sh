#!/usr/bin/env bash
# Build (idempotently) an isolated "peer" venv: the given pip requirements next to the project's CPU torch.
#
#   bash scripts/peer_env.sh LABEL VENV REQUIREMENT...
#
# Used by scripts/saelens_env.sh (sae-lens, for tests/sae/test_saelens_compat.py) and benchmarks/setup_peers.sh
# (eai-sparsify + sae-lens, for benchmarks/sae_train.py). LABEL prefixes every line printed ("saelens_env",
# "setup_peers"). Peers live outside the project's .venv because they pull packages autointerp does not need
# (sae-lens: transformer-lens, wandb, plotly, ...; sparsify: schedulefree, simple-parsing, ...) and may want
# other transformers versions. torch is pinned through a constraints file to the CPU wheel the project
# uses: an unpinned resolve would pull a multi-GB CUDA build. Every install is dry-run first and the torch
# version is asserted afterwards. VENV/.installed records what was installed ("REQUIREMENT... TORCH_SPEC");
# when it matches, the script only reports "VENV is up to date" and exits.
#
# Env overrides: TORCH_SPEC (default torch==2.13.0), PYTHON (the interpreter the venv is made from).
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 LABEL VENV REQUIREMENT..." >&2
    exit 2
fi
LABEL="$1"
VENV="$2"
shift 2
SPECS=("$@")
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"
WANT="${SPECS[*]} $TORCH_SPEC"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
    echo "$LABEL: $VENV is up to date ($WANT)"
    exit 0
fi

start=$SECONDS
echo "$LABEL: building $VENV with $WANT (python: $("$PYTHON" --version 2>&1))"
rm -f "$STAMP"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
printf '*\n' > "$VENV/.gitignore"  # keep the venv out of git whatever the repo's .gitignore says

constraints="$VENV/constraints.txt"
printf '%s\n' "$TORCH_SPEC" > "$constraints"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
quiet_pip() {  # drop the local mirror's "Location ... is ignored" noise, keep real warnings and errors
    "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

echo "$LABEL: [1/3] pip install $TORCH_SPEC  (+$((SECONDS - start))s)"
quiet_pip install --quiet "$TORCH_SPEC"

echo "$LABEL: [2/3] dry run: pip install -c constraints.txt ${SPECS[*]}  (+$((SECONDS - start))s)"
plan="$(quiet_pip install --dry-run -c "$constraints" "${SPECS[@]}" 2>&1 | grep '^Would install' || true)"
echo "$LABEL: $plan"
if grep -Eq '(^| )(torch-[0-9]|nvidia-)' <<<"$plan"; then
    echo "$LABEL: refusing: the resolve would replace torch or pull CUDA packages" >&2
    exit 1
fi

echo "$LABEL: [3/3] pip install -c constraints.txt ${SPECS[*]}  (+$((SECONDS - start))s)"
quiet_pip install --quiet -c "$constraints" "${SPECS[@]}"

# The constraints file must have kept torch where it was; fail loudly rather than run on a surprise build.
"$VENV/bin/python" - "$LABEL" "$TORCH_SPEC" "${SPECS[@]}" <<'PY'
import re, sys, importlib.metadata as md
label, torch_spec, *specs = sys.argv[1:]
want = torch_spec.split("==", 1)[-1]
got = md.version("torch")
assert got.split("+")[0] == want, f"torch {got} installed, expected {want}"
names = ["torch", *(re.split(r"[\s\[<>=!~;@]", s, maxsplit=1)[0] for s in specs)]
names += [n for n in ("transformer-lens", "transformers", "schedulefree", "safetensors") if n not in names]
found = []
for n in names:
    try:
        found.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        pass
print(f"{label}: " + ", ".join(found))
PY
printf '%s' "$WANT" > "$STAMP"
echo "$LABEL: done in $((SECONDS - start))s; size $(du -sh "$VENV" | cut -f1)"
