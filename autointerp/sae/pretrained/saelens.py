"""SAELens directories (``cfg.json`` + ``sae_weights.safetensors``): standard/ReLU, TopK (incl.
``rescale_acts_by_decoder_norm``, folded in by ``autointerp.sae.saelens.load_sae``), BatchTopK (saved by
SAELens for inference as JumpReLU) and JumpReLU.

The weights are read by the same ``load_sae`` our own SAEs use (same layout); this module adds the checks
that only matter for someone else's file: an architecture we cannot run, a JumpReLU without threshold,
and the hook name that tells which layer/site the SAE reads.
"""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import UserError
from autointerp.io import open_safetensors
from autointerp.rundir.layout import SAEFiles
from autointerp.sae.pretrained.formats import REDOWNLOAD, saelens_config, saelens_hookpoint
from autointerp.sae.config import ARCHITECTURE_ALIASES
from autointerp.sae.pretrained.common import Pretrained
from autointerp.sae.registry import ARCHITECTURES
from autointerp.sae.saelens import load_sae


def load(directory: Path) -> Pretrained:
    files = SAEFiles(directory)
    raw = saelens_config(files.cfg)
    arch = str(raw.get("architecture") or "standard")
    if ARCHITECTURE_ALIASES.get(arch, arch) not in ARCHITECTURES:
        names = sorted({cls.saelens_name or name for name, cls in ARCHITECTURES.items()})
        raise UserError(f"{files.cfg}: SAELens architecture {arch!r} is not supported; autointerp runs "
                        f"{', '.join(names)} SAEs")
    cls = ARCHITECTURES.get(raw.get("autointerp_architecture") or ARCHITECTURE_ALIASES.get(arch, arch))
    if cls is not None and cls.requires_threshold:
        with open_safetensors(files.weights, fix=REDOWNLOAD) as f:
            has_threshold = "threshold" in f.keys()
        if not has_threshold:
            raise UserError(f"{files.weights}: a JumpReLU SAE needs its `threshold` tensor, and the file has none; "
                            "re-download the SAE")
    layer, site, hook = saelens_hookpoint(raw)
    return Pretrained(load_sae(directory), "saelens", directory, layer, site, hook)
