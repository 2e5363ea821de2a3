"""What every pretrained-SAE reader shares: the result type, checked construction of the one SAE type the
rest of the code uses (hook names -> (layer, site) are read in ``formats``).

Each format module converts its file's tensors to the SAELens orientation (W_enc [d_in, d_sae], W_dec
[d_sae, d_in]) and hands them to ``build_sae``, which checks what a user can get wrong (shapes that disagree,
NaN/inf, a JumpReLU without its threshold) and raises one-line ``UserError``s naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from autointerp.errors import UserError
from autointerp.sae.base import SparseAutoencoder
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import architecture as architecture_class, create_sae

@dataclass
class Pretrained:
    """A pretrained SAE read into our type, with where it came from (named in metrics.json and the report)."""
    sae: SparseAutoencoder
    format: str  # a key of autointerp.sae.pretrained.formats.FORMATS
    path: Path  # the local directory or file read
    layer: int | None  # the block whose output it reads, when its config or path says so
    site: str | None  # "resid" / "mlp" when known
    hook: str | None  # the hook name as the SAE's own config spells it

    def describe(self, spec: str) -> str:
        """One line for the report: format, architecture, width, and the user's reference."""
        k = f" k={self.sae.cfg.k}" if self.sae.uses_k else ""
        return f"{self.format} {self.sae.architecture}{k} {self.sae.cfg.d_sae} latents ({spec})"


def as_tensor(value, name: str, where: Path) -> Tensor:
    """numpy/torch -> float32 CPU tensor; non-float arrays (a pickled object, ints) are a one-line error."""
    t = torch.from_numpy(np.asarray(value)) if not isinstance(value, Tensor) else value
    if not t.is_floating_point():
        raise UserError(f"{where}: {name} has dtype {t.dtype}, expected floating point weights; the file is not an SAE")
    return t.detach().to(torch.float32).cpu()


def build_sae(where: Path, architecture: str, tensors: dict[str, Tensor], *, k: int = 32,
              apply_b_dec_to_input: bool = True, metadata: dict | None = None) -> SparseAutoencoder:
    """Our SAE from SAELens-oriented tensors (W_enc, b_enc, W_dec, b_dec[, threshold]), every shape checked."""
    cls = architecture_class(architecture)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        if name not in tensors:
            raise UserError(f"{where} has no {name} tensor; it is not a complete SAE (re-download it)")
    if cls.requires_threshold and tensors.get("threshold") is None:
        raise UserError(f"{where}: a JumpReLU SAE needs its threshold, and none was found; re-download the SAE "
                        "(Gemma Scope: `threshold` in params.npz; Llama Scope: `jump_relu_threshold` in hyperparams.json)")
    W_enc = tensors["W_enc"]
    if W_enc.ndim != 2:
        raise UserError(f"{where}: W_enc has shape {tuple(W_enc.shape)}, expected a matrix [d_in, d_sae]")
    d_in, d_sae = W_enc.shape
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if cls.requires_threshold:
        expected["threshold"] = (d_sae,)
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise UserError(f"{where}: {name} has shape {tuple(t.shape)} but W_enc {(d_in, d_sae)} implies {shape}; "
                            "the tensors come from different SAEs - re-download it")
        if not torch.isfinite(t).all():
            raise UserError(f"{where}: {name} contains NaN/inf values; the file is corrupt - re-download it")
    if cls.uses_k and not 1 <= k < d_sae:
        raise UserError(f"{where}: k = {k} must be in [1, d_sae={d_sae}) for a {architecture} SAE; fix its config")
    cfg = SAEConfig(architecture=architecture, d_in=int(d_in), d_sae=int(d_sae), k=int(k) if cls.uses_k else 32,
                    apply_b_dec_to_input=apply_b_dec_to_input, metadata=dict(metadata or {}))
    sae = create_sae(cfg, seed=0)
    with torch.no_grad():
        for name in expected:
            getattr(sae, name).copy_(tensors[name])
    return sae.eval()
