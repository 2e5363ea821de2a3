"""Model loading: spec resolution (embedded / GGUF / local / hub), generic block discovery, early-stop forward."""

from autointerp.models.forward import forward_to_site
from autointerp.models.load import LoadedModel, find_blocks, load_model
from autointerp.models.resolve import EMBEDDED_MODELS, resolve_model

__all__ = ["EMBEDDED_MODELS", "LoadedModel", "find_blocks", "forward_to_site", "load_model", "resolve_model"]
