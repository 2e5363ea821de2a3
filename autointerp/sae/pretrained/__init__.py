"""Pretrained SAEs (``sae = ...`` in ``[[models]]``): SAELens, sparsify, Gemma Scope and Llama Scope files read
into the one SAE type the rest of the code uses, so a run can compare existing SAEs without training.

``load_pretrained`` resolves the reference (local path or hub), detects the format from its file names and
reads it (safetensors / npz without pickle / json only); ``install`` puts it into a run's SAE directory.
"""

from __future__ import annotations

from autointerp.sae.pretrained.common import FORMATS, Pretrained
from autointerp.sae.pretrained.detect import detect
from autointerp.sae.pretrained.resolve import describe, resolve


def load_pretrained(spec: str | dict) -> Pretrained:
    """Read the SAE ``spec`` names (a local path, ``hf://owner/repo/path`` or ``{repo=..., path=...}``)."""
    from autointerp.sae.pretrained import gemma_scope, llama_scope, saelens, sparsify

    fmt, target = detect(resolve(spec))
    readers = {"saelens": saelens.load, "sparsify": sparsify.load, "gemma_scope": gemma_scope.load,
               "llama_scope": llama_scope.load}
    return readers[fmt](target)


def fill_hookpoint(entry) -> None:
    """Set a ``[[models]]`` entry's unset layer/site from its pretrained SAE, where the SAE says them
    (``autointerp run`` calls it before harvesting; a set value that disagrees is caught at install)."""
    if entry.sae is None or getattr(entry, "random", False) or entry.layer is not None:
        return  # (with a layer set, nothing is read here: a re-run stays cheap)
    pre = load_pretrained(entry.sae)
    if entry.layer is None and pre.layer is not None:
        entry.layer = pre.layer
    if entry.site is None and pre.site is not None:
        entry.site = pre.site


__all__ = ["FORMATS", "Pretrained", "describe", "fill_hookpoint", "load_pretrained"]
