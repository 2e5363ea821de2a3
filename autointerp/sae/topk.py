"""TopK (Gao et al. 2024) and BatchTopK (Bussmann et al. 2024): sparsity set by selection, not a penalty."""

from __future__ import annotations

import torch
from torch import Tensor

from autointerp.sae.base import EncoderOutput, SparseAutoencoder, to_sparse
from autointerp.sae.config import SAEConfig


class TopKSAE(SparseAutoencoder):
    """Exactly k latents per token (Gao et al. 2024): L0 is set, not tuned through a penalty."""
    architecture = "topk"
    uses_k = True

    def _select(self, pre: Tensor) -> EncoderOutput:
        return EncoderOutput(*pre.topk(self.cfg.k, dim=-1, sorted=False))


class BatchTopKSAE(SparseAutoencoder):
    """Top k*batch activations over the whole batch in training (Bussmann et al. 2024).

    Per-token L0 varies, which lets easy tokens use fewer latents. Batch composition must not matter at
    inference, so eval mode uses a global threshold: an EMA of the smallest activation kept in each
    training batch. Latents stay sparse, padded with zero acts to the busiest row.
    """
    architecture = "batchtopk"
    uses_k = True
    threshold_momentum = 0.99

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not estimated yet

    @torch.no_grad()
    def folded_state(self) -> dict[str, Tensor]:
        out = super().folded_state()
        if self.threshold >= 0:  # saved as SAELens' JumpReLU: one threshold per latent
            out["threshold"] = out["threshold"].to(self.b_enc.dtype).expand(self.cfg.d_sae).contiguous()
        else:
            del out["threshold"]
        return out

    def saelens_architecture(self) -> str:
        """Evaluates as SAELens' JumpReLU at its global threshold once estimated, as TopK before."""
        return "jumprelu" if self.threshold >= 0 else "topk"

    def saved_to_state(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Undo ``folded_state``: a per-latent threshold is our one global value; none means never estimated."""
        if "threshold" in tensors and tensors["threshold"].ndim == 1:
            return {**tensors, "threshold": tensors["threshold"][0]}
        return tensors if "threshold" in tensors else {**tensors, "threshold": torch.tensor(-1.0)}

    def _select(self, pre: Tensor) -> EncoderOutput:
        if not self.training and self.threshold >= 0:
            return to_sparse(pre * (pre > self.threshold.to(pre.dtype)))
        if not self.training:  # never trained: per-token TopK is the closest well-defined rule
            return EncoderOutput(*pre.topk(self.cfg.k, dim=-1, sorted=False))
        flat = pre.flatten()
        vals, idx = flat.topk(min(self.cfg.k * pre.shape[0], flat.numel()), sorted=False)
        with torch.no_grad():
            kept = vals[vals > 0]
            if kept.numel():
                m = self.threshold_momentum if self.threshold >= 0 else 0.0
                self.threshold.copy_(m * self.threshold + (1 - m) * kept.min().float())
        return to_sparse(torch.zeros_like(flat).scatter(0, idx, vals).view_as(pre))
