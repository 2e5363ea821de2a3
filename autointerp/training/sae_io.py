"""Reading SAEs from disk: files saved by ``SparseAutoencoder.save`` or by SAELens (same layout).

Kept apart from the module itself: this is the boundary where user-supplied files are checked, so every
problem a user can fix (missing file, bad JSON, corrupt weights, shapes that disagree with cfg.json, NaNs)
becomes a one-line ``UserError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from autointerp.errors import UserError
from autointerp.training.sae import (
    CFG_FILE,
    WEIGHTS_FILE,
    SAEConfig,
    SparseAutoencoder,
    create_sae,
)


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE saved by ``save`` or by SAELens; every user-fixable problem is a ``UserError``."""
    directory = Path(directory)
    cfg_path, w_path = directory / CFG_FILE, directory / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise UserError(f"{p} is missing; point at a directory containing a trained SAE (or re-run training)")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{cfg_path} is not valid JSON ({e}); re-save the SAE") from e
    cfg = SAEConfig.from_dict(raw)
    try:
        tensors = load_file(str(w_path))
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError on bad files
        raise UserError(f"{w_path} is corrupt or truncated ({e}); delete it and re-train or re-download") from e
    if raw.get("rescale_acts_by_decoder_norm") and {"W_enc", "b_enc", "W_dec"} <= tensors.keys():
        # SAELens TopK: acts = topk(pre * |W_dec_i|), decoded as acts / |W_dec_i| @ W_dec; fold the norms in
        norms = tensors["W_dec"].float().norm(dim=1).clamp_min(1e-8)
        dt = tensors["W_dec"].dtype
        tensors["W_enc"] = (tensors["W_enc"].float() * norms).to(dt)
        tensors["b_enc"] = (tensors["b_enc"].float() * norms).to(dt)
        tensors["W_dec"] = (tensors["W_dec"].float() / norms[:, None]).to(dt)
    sae = create_sae(cfg)
    if cfg.architecture == "batchtopk" and "threshold" in tensors and tensors["threshold"].ndim == 1:
        tensors["threshold"] = tensors["threshold"][0]  # saved as SAELens JumpReLU (a constant per latent)
    elif cfg.architecture == "batchtopk" and "threshold" not in tensors:
        tensors["threshold"] = torch.tensor(-1.0)  # saved as TopK: threshold never estimated
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
