"""JumpReLU: ReLU with a per-latent threshold (SAELens' jumprelu, Gemma Scope). Inference only."""

from __future__ import annotations

import torch
from torch import Tensor

from autointerp.sae.base import EncoderOutput, SparseAutoencoder, to_sparse
from autointerp.sae.config import SAEConfig


class JumpReLUSAE(SparseAutoencoder):
    """ReLU with a per-latent threshold: SAELens' "jumprelu" (its BatchTopK SAEs, Gemma Scope). Inference only."""
    architecture = "jumprelu"
    uses_auxk = False
    supports_sparse_backward = False

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=cfg.torch_dtype))

    def _select(self, pre: Tensor) -> EncoderOutput:
        return to_sparse(pre * (pre > self.threshold.to(pre.dtype)))
