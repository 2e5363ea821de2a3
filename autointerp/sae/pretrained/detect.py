"""Which library wrote an SAE, from the files it left: each format has its own file names, so a directory
(or file) is recognised without guessing from contents. No match, or more than one, is a one-line error
naming the files each format needs."""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import UserError
from autointerp.rundir.layout import (GEMMA_SCOPE_FILE, LLAMA_SCOPE_CHECKPOINT_DIR, LLAMA_SCOPE_HPARAMS_FILE,
                                      LLAMA_SCOPE_WEIGHTS_FILE, SAE_CFG_FILE, SAE_WEIGHTS_FILE, SPARSIFY_WEIGHTS_FILE)

EXPECTED = (f"SAELens: a directory with {SAE_CFG_FILE} + {SAE_WEIGHTS_FILE}; "
            f"sparsify: a hookpoint directory (e.g. layers.6) with {SAE_CFG_FILE} + {SPARSIFY_WEIGHTS_FILE}; "
            f"Gemma Scope: {GEMMA_SCOPE_FILE} (or its directory, layer_L/width_W/average_l0_N); "
            f"Llama Scope: a directory with {LLAMA_SCOPE_HPARAMS_FILE} + "
            f"{LLAMA_SCOPE_CHECKPOINT_DIR}/{LLAMA_SCOPE_WEIGHTS_FILE}")


def _llama_weights(d: Path) -> bool:
    return (d / LLAMA_SCOPE_CHECKPOINT_DIR / LLAMA_SCOPE_WEIGHTS_FILE).is_file() or (d / LLAMA_SCOPE_WEIGHTS_FILE).is_file()


def detect(path: Path) -> tuple[str, Path]:
    """(format, what its reader takes: a directory, or Gemma Scope's npz file) for a local path."""
    if not path.exists():
        raise UserError(f"SAE path {path} does not exist; give a local directory/file or a hub reference "
                        "(hf://<repo_id>/<path in repo>)")
    if path.is_file():
        if path.suffix == ".npz":
            return "gemma_scope", path
        if path.name == LLAMA_SCOPE_WEIGHTS_FILE:  # .../<sae>/checkpoints/final.safetensors
            for d in (path.parent, path.parent.parent):
                if (d / LLAMA_SCOPE_HPARAMS_FILE).is_file():
                    return "llama_scope", d
        if path.parent != path and path.name in (SAE_WEIGHTS_FILE, SPARSIFY_WEIGHTS_FILE, SAE_CFG_FILE):
            return detect(path.parent)
        raise UserError(f"SAE file {path} is of no known format; expected {EXPECTED}")
    found = []
    has_cfg = (path / SAE_CFG_FILE).is_file()
    if has_cfg and (path / SAE_WEIGHTS_FILE).is_file():
        found.append(("saelens", path))
    if has_cfg and (path / SPARSIFY_WEIGHTS_FILE).is_file():
        found.append(("sparsify", path))
    if (path / GEMMA_SCOPE_FILE).is_file():
        found.append(("gemma_scope", path / GEMMA_SCOPE_FILE))
    if (path / LLAMA_SCOPE_HPARAMS_FILE).is_file() and _llama_weights(path):
        found.append(("llama_scope", path))
    if len(found) > 1:
        raise UserError(f"SAE directory {path} is ambiguous: it holds the files of {' and '.join(f for f, _ in found)}; "
                        f"point at a directory with one format's files ({EXPECTED})")
    if found:
        return found[0]
    hookpoints = sorted(d.name for d in path.iterdir() if d.is_dir() and (d / SPARSIFY_WEIGHTS_FILE).is_file())
    if hookpoints:
        raise UserError(f"{path} holds sparsify SAEs for several hookpoints ({', '.join(hookpoints[:8])}); "
                        f"point at one of them, e.g. {path / hookpoints[0]}")
    present = sorted(p.name for p in path.iterdir())[:8]
    raise UserError(f"SAE directory {path} is of no known format (it holds {', '.join(present) or 'nothing'}); "
                    f"expected {EXPECTED}")
