"""The sparse autoencoder shared by every architecture: encoder, sparse decoder, losses, AuxK.

Latents are kept sparse as ``(top_acts, top_indices)`` and decoded with ``F.embedding_bag`` so the
TopK path never materialises a dense [N, d_sae] reconstruction input: at d_sae = 32k that matrix
is what dominates memory and time. Decoder rows are unit norm (the trainer re-normalises after every
step), so activations are comparable across latents and the L1 penalty needs no norm weighting.

Weights use the SAELens layout (W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec) both in memory
and on disk, so saving is a plain dump and SAELens SAEs load without transposes (``saelens``).
Architectures (one module each) only decide which latents survive (``_select``) and state their facts as
class attributes (what k means to them, their default L1, their SAELens name, ...); ``registry`` names them,
and every other module reads those facts from the class instead of comparing architecture names.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autointerp.errors import UserError
from autointerp.sae.config import SAEConfig
from autointerp.sae.sparse_ops import SparseDecode, SparseEncode, top_dead


class EncoderOutput(NamedTuple):
    """Sparse latents: row i is sum_j top_acts[i, j] * W_dec[top_indices[i, j]]. Zero acts are padding."""
    top_acts: Tensor
    top_indices: Tensor


class ForwardOutput(NamedTuple):
    x_hat: Tensor  # reconstruction in the caller's (raw) activation space
    latents: EncoderOutput
    fvu: Tensor  # sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the batch
    auxk_loss: Tensor  # Gao et al. 2024 dead-latent loss, already normalised by total variance
    l1_loss: Tensor  # sparsity penalty, already multiplied by l1_coefficient (0 for TopK variants)


def to_sparse(acts: Tensor) -> EncoderOutput:
    """Dense non-negative codes -> (values, indices) with as many columns as the busiest row needs."""
    kmax = int((acts > 0).sum(-1).max()) if acts.numel() else 0
    vals, idx = acts.topk(max(kmax, 1), dim=-1, sorted=False)
    return EncoderOutput(vals, idx)


class SparseAutoencoder(nn.Module):
    """Shared encoder/decoder; subclasses only decide which latents survive (``_select``)."""
    architecture = ""  # its name in [sae] architecture and cfg.json (``registry.ARCHITECTURES``)
    uses_k = False  # cfg.k sets the sparsity: checked against d_sae, shown next to the width
    default_l1 = 0.0  # the L1 coefficient when [sae] l1_coefficient is unset
    trainable = True  # False: inference only (pretrained SAEs are read into it, the train stage refuses it)
    saelens_name = ""  # cfg.json "architecture" as SAELens spells it ("": the same as ``architecture``)
    requires_threshold = False  # a per-latent ``threshold`` tensor [d_sae] is part of the weights
    uses_auxk = True  # AuxK only makes sense when a selection rule (not a penalty) starves latents
    supports_sparse_backward = True  # selection keeps few latents per token: see sparse_ops
    sparse_backward = True  # per instance; the trainer turns it off where the dense path is faster (GPU)

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, dtype=torch.float32)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        # Encoder = decoder transpose: each latent starts out detecting its own direction, which
        # shortens the early phase where most latents fire on nothing (Conerly et al. 2024).
        self.W_enc = nn.Parameter(W_dec.T.clone().to(cfg.torch_dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=cfg.torch_dtype))
        self.W_dec = nn.Parameter(W_dec.to(cfg.torch_dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=cfg.torch_dtype))
        # Multiplies raw inputs so their mean norm is sqrt(d_in); stays 1 unless normalize_activations.
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float32))

    def _scale_in(self, x: Tensor) -> Tensor:
        x = x.to(self.W_enc.dtype)
        return x * self.input_scale.to(x.dtype) if self.cfg.normalize_activations else x

    def _pre_acts(self, x_n: Tensor) -> Tensor:
        if self.cfg.apply_b_dec_to_input:
            x_n = x_n - self.b_dec
        return F.relu(x_n @ self.W_enc + self.b_enc)

    def _select(self, pre: Tensor) -> EncoderOutput:  # which latents survive: the architecture
        raise NotImplementedError

    def _decode_n(self, top_acts: Tensor, top_indices: Tensor, bias: bool = True) -> Tensor:
        y = F.embedding_bag(top_indices, self.W_dec, per_sample_weights=top_acts.to(self.W_dec.dtype), mode="sum")
        return y + self.b_dec if bias else y

    def encode(self, x: Tensor) -> EncoderOutput:
        """Raw activations [..., d_in] -> sparse latents [..., n_active]."""
        lead = x.shape[:-1]
        acts, idx = self._select(self._pre_acts(self._scale_in(x.reshape(-1, self.cfg.d_in))))
        return EncoderOutput(acts.reshape(*lead, -1), idx.reshape(*lead, -1))

    def decode(self, top_acts: Tensor, top_indices: Tensor) -> Tensor:
        """Sparse latents [..., n] -> reconstruction in raw activation space [..., d_in]."""
        lead = top_acts.shape[:-1]
        y = self._decode_n(top_acts.reshape(-1, top_acts.shape[-1]), top_indices.reshape(-1, top_indices.shape[-1]))
        if self.cfg.normalize_activations:
            y = y / self.input_scale.to(y.dtype)
        return y.reshape(*lead, self.cfg.d_in)

    def _reconstruct(self, pre: Tensor) -> tuple[EncoderOutput, Tensor]:
        latents = self._select(pre)
        return latents, self._decode_n(*latents)

    @property
    def l1_coefficient(self) -> float:
        """The L1 penalty's weight: [sae] l1_coefficient, else the architecture's default."""
        return float(self.cfg.l1_coefficient) if self.cfg.l1_coefficient is not None else self.default_l1

    def saelens_architecture(self) -> str:
        """cfg.json "architecture" for SAELens' loaders (an instance method: BatchTopK's depends on its state)."""
        return self.saelens_name or self.architecture

    def saved_to_state(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """The inverse of ``folded_state``'s per-architecture part: saved tensors -> this module's state."""
        return tensors

    def _l1_loss(self, x_n: Tensor, latents: EncoderOutput, pre: Tensor | None) -> Tensor:
        """TopK variants: L1 of the selected activations, only when l1_coefficient is set. ``pre`` (the
        dense codes) is None on the sparse-backward path, which only TopK variants take."""
        if self.l1_coefficient == 0:
            return x_n.new_zeros(())
        l1 = (latents.top_acts * self.W_dec.norm(dim=1)[latents.top_indices]).sum()
        return self.l1_coefficient * l1 / (x_n - x_n.mean(0)).norm(dim=-1).sum().clamp_min(1e-12)

    def total_variance(self, x: Tensor) -> Tensor:
        """Centred sum of squares of a batch in the normalised space (the FVU denominator)."""
        x_n = self._scale_in(x)
        return (x_n - x_n.mean(0)).pow(2).sum().clamp_min(1e-12)

    def _decode_aux(self, acts: Tensor, indices: Tensor, sparse: bool) -> Tensor:
        """AuxK's reconstruction (no bias); 1-D ``indices`` is top_dead's dense block of every dead latent."""
        if indices.ndim == 1:
            return acts @ self.W_dec.index_select(0, indices)
        return SparseDecode.apply(acts, indices, self.W_dec) if sparse else self._decode_n(acts, indices, bias=False)

    def forward(self, x: Tensor, dead_mask: Tensor | None = None, total_variance: Tensor | None = None) -> ForwardOutput:
        """Losses are computed in the normalised space; FVU and AuxK are scale-invariant ratios.

        ``total_variance`` overrides the denominator: data-parallel ranks pass the global batch's, so
        the per-rank losses sum to the single-process loss. With gradients on and ``sparse_backward`` set,
        TopK variants back-propagate through the kept latents only (``sparse_ops``); same values, less work.
        """
        x_n = self._scale_in(x)
        if total_variance is None:
            total_variance = (x_n - x_n.mean(0)).pow(2).sum().clamp_min(1e-12)
        num_dead = int(dead_mask.sum()) if dead_mask is not None and self.uses_auxk else 0
        k_aux_max = max(self.cfg.d_in // 2, 1)
        k_aux = min(k_aux_max, num_dead)
        if self.sparse_backward and self.supports_sparse_backward and torch.is_grad_enabled():
            b_dec = self.b_dec if self.cfg.apply_b_dec_to_input else None
            acts, idx, aux_acts, aux_idx = SparseEncode.apply(x_n, b_dec, self.W_enc, self.b_enc, self._select,
                                                              dead_mask if num_dead else None, k_aux)
            latents = EncoderOutput(acts, idx)
            e = x_n - (SparseDecode.apply(acts, idx, self.W_dec) + self.b_dec)
            aux_hat = self._decode_aux(aux_acts, aux_idx, sparse=True) if num_dead else None
            pre = None
        else:
            pre = self._pre_acts(x_n)
            latents, x_hat_n = self._reconstruct(pre)
            e = x_n - x_hat_n
            aux_hat = None
            if num_dead:
                aux_hat = self._decode_aux(*top_dead(pre, dead_mask, k_aux), sparse=False)
        fvu = e.pow(2).sum() / total_variance
        # AuxK (Gao et al. 2024): reconstruct the residual with the top-k_aux dead latents so they get gradient
        # again; k_aux = d_in / 2, scaled by min(num_dead / k_aux, 1) as in sparsify so a handful of dead
        # latents cannot dominate. The residual is target-only (detached).
        if aux_hat is None:
            auxk = x_n.new_zeros(())
        else:
            scale = min(num_dead / k_aux_max, 1.0)
            auxk = scale * (aux_hat - e.detach()).pow(2).sum() / total_variance
        x_hat_n = x_n - e
        x_hat = x_hat_n / self.input_scale.to(x_hat_n.dtype) if self.cfg.normalize_activations else x_hat_n
        return ForwardOutput(x_hat, latents, fvu, auxk, self._l1_loss(x_n, latents, pre))

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Adam would otherwise spend its step growing norms that the next renormalisation undoes."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True) / self.W_dec.pow(2).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def fit_input_scale(self, sample: Tensor) -> None:
        """Set the scale so the sample's mean norm becomes sqrt(d_in) (no-op unless normalize_activations)."""
        if self.cfg.normalize_activations:
            mean_norm = sample.float().norm(dim=-1).mean().clamp_min(1e-12)
            self.input_scale.fill_(math.sqrt(self.cfg.d_in) / float(mean_norm))

    @torch.no_grad()
    def init_b_dec(self, sample: Tensor, method: str = "mean") -> None:
        """Start b_dec at the data's centre so latents model deviations, not the (large) mean."""
        x = self._scale_in(sample.reshape(-1, self.cfg.d_in)).float()
        if method == "mean":
            centre = x.mean(0)
        elif method == "geometric_median":
            centre = geometric_median(x)
        else:
            raise UserError(f"unknown b_dec init {method!r}; use 'mean' or 'geometric_median'")
        self.b_dec.copy_(centre.to(self.b_dec.dtype))

    @torch.no_grad()
    def folded_state(self) -> dict[str, Tensor]:
        """Weights that act on raw activations: W_enc*s, W_dec/s, b_dec/s give identical latents."""
        s = float(self.input_scale) if self.cfg.normalize_activations else 1.0
        out = {"W_enc": self.W_enc * s, "b_enc": self.b_enc.clone(), "W_dec": self.W_dec / s, "b_dec": self.b_dec / s}
        out.update({n: b.clone() for n, b in self.named_buffers() if n != "input_scale"})
        return {n: t.detach().contiguous().cpu() for n, t in out.items()}


def geometric_median(x: Tensor, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of distances; robust to outlier tokens."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=-1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() <= tol * y.norm().clamp_min(1e-8):
            return y_new
        y = y_new
    return y
