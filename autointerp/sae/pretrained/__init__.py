"""Pretrained SAEs (``sae = ...`` in ``[[models]]``): SAELens, sparsify, Gemma Scope and Llama Scope files read
into the one SAE type the rest of the code uses, so a run can compare existing SAEs without training.

``load_pretrained`` resolves the reference (local path or hub), detects the format from its file names and
reads it (safetensors / npz without pickle / json only) with the module named like the format; ``install`` puts
it into a run's SAE directory. What a reference names without its weights (where the files are, which format,
which layer/site it reads) is in ``formats``, torch-free so the commands and the harvest can read it; this
package's ``__init__`` stays torch-free too, for the same reason.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from autointerp.sae.pretrained.formats import detect, resolve

if TYPE_CHECKING:
    from autointerp.sae.pretrained.common import Pretrained


def load_pretrained(spec: str | dict) -> Pretrained:
    """Read the SAE ``spec`` names (a local path, ``hf://owner/repo/path`` or ``{repo=..., path=...}``)."""
    fmt, target = detect(resolve(spec))
    return importlib.import_module(f"{__name__}.{fmt}").load(target)
