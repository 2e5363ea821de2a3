"""JumpReLU: ReLU with a per-latent threshold (SAELens' jumprelu, Gemma Scope). Inference only."""

from __future__ import annotations

import torch
from torch import Tensor

from autointerp.sae.base import EncoderOutput, SparseAutoencoder, to_sparse
from autointerp.sae.config import SAEConfig


class JumpReLUSAE(SparseAutoencoder):
    """ReLU with a per-latent threshold: SAELens' "jumprelu" (its BatchTopK SAEs, Gemma Scope). Inference only."""
    architecture = "jumprelu"
    trainable = False  # no straight-through estimator for the threshold here: read pretrained SAEs only
    requires_threshold = True
    uses_auxk = False
    supports_sparse_backward = False

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=cfg.torch_dtype))

    def _select(self, pre: Tensor) -> EncoderOutput:
        # ``pre`` is already relu(x @ W_enc + b_enc) (base._pre_acts), so this is exactly the published
        # relu(h) * (h > threshold) (Gemma Scope, SAELens' JumpReLUSAE.encode) for any threshold sign:
        # where h <= 0 both give 0, elsewhere relu(h) = h. Tested against numpy in tests/sae/pretrained/test_pretrained_saes.py.
        return to_sparse(pre * (pre > self.threshold.to(pre.dtype)))
