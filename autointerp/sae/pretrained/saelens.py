"""SAELens directories (``cfg.json`` + ``sae_weights.safetensors``): standard/ReLU, TopK (incl.
``rescale_acts_by_decoder_norm``, folded in by ``autointerp.sae.saelens.load_sae``), BatchTopK (saved by
SAELens for inference as JumpReLU) and JumpReLU.

The weights are read by the same ``load_sae`` our own SAEs use (same layout); this module adds the checks
that only matter for someone else's file: an architecture we cannot run, a JumpReLU without threshold,
and the hook name that tells which layer/site the SAE reads.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from autointerp.errors import UserError
from autointerp.rundir.layout import SAEFiles
from autointerp.sae.config import _ALIASES
from autointerp.sae.pretrained.common import Pretrained, hookpoint
from autointerp.sae.saelens import load_sae

SUPPORTED = ("standard", "relu", "topk", "batchtopk", "batch_topk", "jumprelu")


def _raw_config(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-download the SAE") from e
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a JSON object; it is not an SAELens cfg.json")
    return raw


def hook_of(raw: dict) -> str | None:
    """SAELens >= 6 keeps hook_name under metadata; older files have it (or hook_point) at the top level."""
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    return raw.get("hook_name") or raw.get("hook_point") or meta.get("hook_name")


def load(directory: Path) -> Pretrained:
    files = SAEFiles(directory)
    raw = _raw_config(files.cfg)
    arch = str(raw.get("architecture") or "standard")
    if arch not in SUPPORTED:
        raise UserError(f"{files.cfg}: SAELens architecture {arch!r} is not supported; autointerp runs "
                        "standard, topk, batchtopk and jumprelu SAEs")
    if _ALIASES.get(arch, arch) == "jumprelu" and raw.get("autointerp_architecture") in (None, "jumprelu"):
        try:
            with safe_open(str(files.weights), framework="pt") as f:
                has_threshold = "threshold" in f.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises several types on a bad file
            raise UserError(f"{files.weights} is corrupt or truncated ({e}); re-download the SAE") from e
        if not has_threshold:
            raise UserError(f"{files.weights}: a JumpReLU SAE needs its `threshold` tensor, and the file has none; "
                            "re-download the SAE")
    hook = hook_of(raw)
    layer, site = hookpoint(hook)
    if layer is None and raw.get("hook_layer") is not None and hook is None:
        layer = int(raw["hook_layer"])
    return Pretrained(load_sae(directory), "saelens", directory, layer, site, hook)
