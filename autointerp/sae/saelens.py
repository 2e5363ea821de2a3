"""The SAELens file layout, written and read: ``sae_weights.safetensors`` + ``cfg.json`` (+ ``sparsity.safetensors``).

Our own SAEs are saved in it, and SAELens SAEs load from it without transposes. Reading is the boundary
where user-supplied files are checked, so every problem a user can fix (missing file, bad JSON, corrupt
weights, shapes that disagree with cfg.json, NaNs) becomes a one-line ``UserError``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from autointerp.errors import UserError
from autointerp.io import atomic_path, read_json, read_safetensors
from autointerp.rundir.layout import SAE_CFG_FILE as CFG_FILE, SAE_SPARSITY_FILE as SPARSITY_FILE, SAE_WEIGHTS_FILE as WEIGHTS_FILE
from autointerp.sae.base import SparseAutoencoder
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae

# cfg.json "architecture" is SAELens' spelling (``SparseAutoencoder.saelens_architecture``: SAELens stores
# BatchTopK SAEs for inference as JumpReLU with a threshold per latent); our own name is "autointerp_architecture".
_SAELENS_META = ("model_name", "hook_name", "hook_layer", "context_size", "dataset_path")  # top-level in cfg.json


def save_sae(sae: SparseAutoencoder, directory: str | Path, log_feature_density: Tensor | None = None) -> Path:
    """Write the SAELens layout (weights, cfg.json, optional sparsity) atomically per file."""
    (directory := Path(directory)).mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(sae.folded_state(), str(tmp))
    if log_feature_density is not None:
        sparsity = {"sparsity": log_feature_density.detach().float().contiguous().cpu()}
        with atomic_path(directory / SPARSITY_FILE) as tmp:
            save_file(sparsity, str(tmp))
    cfg, md = sae.cfg, sae.cfg.metadata
    sl_arch = sae.saelens_architecture()
    raw = {  # ours + the keys SAELens' loaders read
        **{k: v for k, v in asdict(cfg).items() if k != "normalize_activations"},
        "architecture": sl_arch, "autointerp_architecture": cfg.architecture,
        "normalize_activations": "none",  # folded into the weights above (SAELens spelling)
        "folded_input_scale": float(sae.input_scale) if cfg.normalize_activations else None,
        # SAELens' pre-6.0 cfg reader turns activation_fn "topk" + k into architecture "topk": only for topk
        "activation_fn_str": "topk" if sl_arch == "topk" else "relu",
        "activation_fn_kwargs": {"k": cfg.k} if sl_arch == "topk" else {},
        # a null hook_name crashes SAELens' reader ("'hook_z' in None"): write only known values
        **{key: md[key] for key in _SAELENS_META if md.get(key) is not None},
        "prepend_bos": md.get("prepend_bos", True),
        "device": "cpu", "finetuning_scaling_factor": False, "sae_lens_training_version": None,
    }
    text = json.dumps(raw, indent=2, default=str)
    with atomic_path(directory / CFG_FILE) as tmp:
        tmp.write_text(text)
    return directory


def config_from_json(raw: dict[str, Any]) -> SAEConfig:
    """Build from our cfg.json or a SAELens one (extra keys are ignored, known ones mapped)."""
    try:
        arch = raw.get("autointerp_architecture") or raw.get("architecture", "standard")
        if arch == "standard" and raw.get("activation_fn_str") == "topk":
            arch = "topk"
        k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k") or 32
        norm = raw.get("normalize_activations", False)
        if norm not in (False, None, "none", "expected_average_only_in"):  # the latter is folded at save
            raise UserError(f"normalize_activations={norm!r} in cfg.json is not supported; "
                            "re-save the SAE with the scaling folded into the weights")
        metadata = dict(raw.get("metadata") or {})
        for key in (*_SAELENS_META, "prepend_bos"):
            if key in raw and raw[key] is not None:
                metadata.setdefault(key, raw[key])
        return SAEConfig(d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), architecture=arch, k=int(k),
                   l1_coefficient=None if raw.get("l1_coefficient") is None else float(raw["l1_coefficient"]),
                   normalize_activations=False,
                   apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
                   dtype=raw.get("dtype", "float32"), metadata=metadata)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"SAE cfg.json is missing or has a bad field ({e!r}); re-save the SAE") from e


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE saved by ``save_sae`` or by SAELens; every user-fixable problem is a ``UserError``."""
    directory = Path(directory)
    cfg_path, w_path = directory / CFG_FILE, directory / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise UserError(f"{p} is missing; point at a directory containing a trained SAE (or re-run training)")
    raw = read_json(cfg_path, fix="re-save the SAE (re-run training with --overwrite, or re-download it)")
    cfg = config_from_json(raw)
    tensors = read_safetensors(w_path, fix="delete it and re-train (with --overwrite) or re-download")
    if raw.get("rescale_acts_by_decoder_norm") and {"W_enc", "b_enc", "W_dec"} <= tensors.keys():
        # SAELens TopK: acts = topk(pre * |W_dec_i|), decoded as acts / |W_dec_i| @ W_dec; fold the norms in
        norms = tensors["W_dec"].float().norm(dim=1).clamp_min(1e-8)
        dt = tensors["W_dec"].dtype
        tensors["W_enc"] = (tensors["W_enc"].float() * norms).to(dt)
        tensors["b_enc"] = (tensors["b_enc"].float() * norms).to(dt)
        tensors["W_dec"] = (tensors["W_dec"].float() / norms[:, None]).to(dt)
    sae = create_sae(cfg)
    tensors = sae.saved_to_state(tensors)
    expected = {n: tuple(t.shape) for n, t in [*sae.named_parameters(), *sae.named_buffers()] if n != "input_scale"}
    for name, shape in expected.items():
        if name not in tensors:
            raise UserError(f"{w_path} has no tensor {name!r}; it is not a {cfg.architecture} SAE in SAELens layout")
        if tuple(tensors[name].shape) != shape:
            raise UserError(f"{w_path}: {name} has shape {tuple(tensors[name].shape)} but cfg.json implies {shape}; "
                            "weights and cfg.json come from different SAEs - re-save it")
        if not torch.isfinite(tensors[name]).all():
            raise UserError(f"{w_path}: {name} contains NaN/inf; re-train from the last good checkpoint")
    with torch.no_grad():
        for name, param in [*sae.named_parameters(), *sae.named_buffers()]:
            if name in expected:
                param.copy_(tensors[name].to(param.dtype))
    return sae.to(device).eval()
