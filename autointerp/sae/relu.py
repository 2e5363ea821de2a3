"""ReLU + L1: the original study's SAE."""

from __future__ import annotations

import torch
from torch import Tensor

from autointerp.sae.base import EncoderOutput, SparseAutoencoder, to_sparse


class ReLUSAE(SparseAutoencoder):
    """ReLU encoder + L1 penalty (the original study's SAE); decoded densely during training."""
    architecture = "relu"
    saelens_name = "standard"
    default_l1 = 0.2
    uses_auxk = False
    supports_sparse_backward = False  # every positive pre-activation is a latent

    def _select(self, pre: Tensor) -> EncoderOutput:
        return to_sparse(pre)

    def _reconstruct(self, pre: Tensor) -> tuple[EncoderOutput, Tensor]:
        with torch.no_grad():  # the sparse view is only for statistics; the loss uses the dense path
            latents = to_sparse(pre)
        return latents, pre @ self.W_dec + self.b_dec

    def _l1_loss(self, x_n: Tensor, latents: EncoderOutput, pre: Tensor | None) -> Tensor:
        l1 = (pre * self.W_dec.norm(dim=1)).sum()
        return self.l1_coefficient * l1 / (x_n - x_n.mean(0)).norm(dim=-1).sum().clamp_min(1e-12)
