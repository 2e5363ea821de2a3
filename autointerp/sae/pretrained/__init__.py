"""Pretrained SAEs (``sae = ...`` in ``[[models]]``): SAELens, sparsify, Gemma Scope and Llama Scope files read
into the one SAE type the rest of the code uses, so a run can compare existing SAEs without training.

``load_pretrained`` resolves the reference (local path or hub), detects the format from its file names and
reads it (safetensors / npz without pickle / json only); ``install`` puts it into a run's SAE directory. What a
reference names without its weights (where the files are, which format, which layer/site it reads, whether the
run already holds it) is in ``autointerp.rundir.sae_source``, below the harvest, which it decides the layer of.
"""

from __future__ import annotations

from autointerp.rundir.sae_source import FORMATS, describe, detect, resolve
from autointerp.sae.pretrained.common import Pretrained


def load_pretrained(spec: str | dict) -> Pretrained:
    """Read the SAE ``spec`` names (a local path, ``hf://owner/repo/path`` or ``{repo=..., path=...}``)."""
    from autointerp.sae.pretrained import gemma_scope, llama_scope, saelens, sparsify

    fmt, target = detect(resolve(spec))
    readers = {"saelens": saelens.load, "sparsify": sparsify.load, "gemma_scope": gemma_scope.load,
               "llama_scope": llama_scope.load}
    return readers[fmt](target)


__all__ = ["FORMATS", "Pretrained", "describe", "load_pretrained"]
