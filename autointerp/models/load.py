"""Load a model + fast tokenizer and find its transformer blocks generically.

Block discovery does not hard-code architectures: the block list is the largest ``nn.ModuleList``
whose children all share one class (``transformer.h`` in GPT-2, ``model.decoder.layers`` in OPT,
``model.layers`` in Llama/Gemma, ``encoder.layer`` in BERT, ...). Layer ``L`` means the residual stream
after block ``L``; negative indices count from the end.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from autointerp.errors import UserError
from autointerp.models.resolve import GGUF_MARKER, MODEL_LOAD_LOCK, ResolvedModel, random_weights_spec, resolve_model  # noqa: F401 - random_weights_spec: also read from here

log = logging.getLogger("autointerp")

# Where the MLP output lives inside a block, by family (first match wins).
_MLP_ATTRS = ("mlp", "feed_forward", "fc2", "output.dense", "ffn")
SITES = ("resid", "mlp")


@dataclass
class LoadedModel:
    spec: str
    resolved: ResolvedModel
    model: nn.Module
    tokenizer: object
    blocks: nn.ModuleList
    blocks_path: str
    is_causal: bool
    max_positions: int | None
    d_model: int
    special_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def resolve_layer(self, layer: int) -> int:
        """Map a possibly negative layer index to 0..n_layers-1, or explain the valid range."""
        n = self.n_layers
        if not -n <= layer < n:
            raise UserError(f"layer {layer} is out of range for {self.spec}: it has {n} blocks, so use 0..{n - 1} (or -{n}..-1 from the end)")
        return layer % n

    def hook_module(self, layer: int, site: str = "resid") -> nn.Module:
        """The module whose output is the activation at ``site`` of block ``layer``."""
        block = self.blocks[self.resolve_layer(layer)]
        if site == "resid":
            return block
        if site == "mlp":
            for attr in _MLP_ATTRS:
                module = _get_attr_path(block, attr)
                if isinstance(module, nn.Module):
                    return module
            raise UserError(f"no MLP submodule found in {type(block).__name__} of {self.spec}; use --site resid")
        raise UserError(f"unknown site '{site}'; choose one of {', '.join(SITES)}")

    def check_ctx_len(self, ctx_len: int) -> None:
        if ctx_len < 2:
            raise UserError(f"--ctx-len must be at least 2 (got {ctx_len})")
        if self.max_positions is not None and ctx_len > self.max_positions:
            raise UserError(f"--ctx-len {ctx_len} is larger than {self.spec}'s maximum context of {self.max_positions} tokens; use --ctx-len {self.max_positions} or less")


def _get_attr_path(obj: object, path: str) -> object:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's transformer block list: the largest homogeneous ModuleList (by parameter count)."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            size = sum(p.numel() for p in module.parameters())
            if best is None or size > best[0]:
                best = (size, name, module)
    if best is None:
        raise UserError(f"could not find a list of transformer blocks in {type(model).__name__}; this architecture is not supported")
    return best[1], best[2]


def _max_positions(config) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            # OPT stores 2048 but offsets positions by 2; the usable length is still the stated one.
            return value
    return None


def _load_tokenizer(resolved: ResolvedModel, kwargs: dict):
    """AutoTokenizer, except for our GGUF conversions: their tokenizer.json is loaded as-is by the generic
    fast class, skipping the model-specific class's rebuild from vocab (Gemma: ~4.5 s -> ~2 s; same ids)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (Path(resolved.path) / GGUF_MARKER).is_file():
        return PreTrainedTokenizerFast.from_pretrained(resolved.path, **kwargs)
    return AutoTokenizer.from_pretrained(resolved.path, **kwargs)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available; use --device cpu")
    return dev


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Compute dtype. ``auto``: bf16 on CUDA, float32 on CPU (no avx512_bf16 here: bf16 is slower; see benchmarks)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise UserError(f"unknown dtype '{dtype}'; use auto, float32, bfloat16 or float16")
    return table[dtype]




def _random_weights(loader, config, seed: int, dtype: torch.dtype) -> nn.Module:
    """``loader``'s model class built from ``config`` with its own initialisation under ``seed`` (CPU RNG,
    so the same seed gives the same weights on every machine)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = loader.from_config(config)
    return model.to(dtype)


def load_model(spec: str, device: str = "auto", dtype: str = "auto", random_init: int | None = None,
               device_map: str | None = None) -> LoadedModel:
    """Resolve ``spec`` and load the model in eval mode with a fast tokenizer (needed for char offsets).

    ``random_init=seed``: the same architecture and tokenizer with freshly initialised weights (from the
    model's config, seeded; nothing downloaded beyond what ``spec`` already resolves to) - the
    random-weights control, whose SAE features come from the tokenizer and the text alone."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    resolved = resolve_model(spec)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    kwargs = {"local_files_only": resolved.local_files_only}
    try:
        config = AutoConfig.from_pretrained(resolved.path, **kwargs)
        architectures = getattr(config, "architectures", None) or []
        is_causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures) or bool(getattr(config, "is_decoder", False))
        loader = AutoModelForCausalLM if is_causal else AutoModel
        # The tokenizer (Rust, releases the GIL) parses while the weights load: ~2x faster for big vocabularies.
        with ThreadPoolExecutor(max_workers=1) as pool:
            tokenizer_future = pool.submit(_load_tokenizer, resolved, kwargs)
            with MODEL_LOAD_LOCK:
                if random_init is None:
                    placement = {"device_map": device_map} if device_map else {}  # "auto": accelerate spreads it over the GPUs
                    model = loader.from_pretrained(resolved.path, dtype=torch_dtype, **placement, **kwargs)
                else:
                    model = _random_weights(loader, config, random_init, torch_dtype)
            tokenizer = tokenizer_future.result()
    except UserError:
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing/corrupt/mismatched files
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"could not load model '{spec}' from {resolved.path}: {first_line}; check the files or re-download") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"model '{spec}' has no fast tokenizer, which is needed for character offsets; provide a tokenizer.json")
    if not (device_map and random_init is None):  # a device map already placed every weight
        model.to(dev)
    model.eval()
    blocks_path, blocks = find_blocks(model)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    d_model = getattr(text_config, "hidden_size", None) or getattr(text_config, "n_embd", None) or getattr(text_config, "d_model")
    return LoadedModel(
        spec=spec if random_init is None else random_weights_spec(spec, random_init),
        resolved=resolved,
        model=model,
        tokenizer=tokenizer,
        blocks=blocks,
        blocks_path=blocks_path,
        is_causal=is_causal,
        max_positions=_max_positions(text_config),
        d_model=int(d_model),
        special_ids=frozenset(int(i) for i in tokenizer.all_special_ids),
    )
