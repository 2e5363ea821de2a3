"""Model loading: spec resolution (embedded / GGUF / local / hub), generic block discovery, early-stop forward.

The names below are imported on first use (PEP 562), so that importing a torch-free submodule such as
``autointerp.models.resolve`` (the run config does) does not import torch: ``autointerp --help`` stays fast.
"""

import importlib

_WHERE = {"forward_to_site": "forward", "LoadedModel": "load", "find_blocks": "load", "load_model": "load",
          "EMBEDDED_MODELS": "resolve", "resolve_model": "resolve"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"autointerp.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'autointerp.models' has no attribute {name!r}")
