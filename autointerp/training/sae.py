"""Sparse autoencoders: one small base class, a registry keyed by ``architecture``.

Latents are kept sparse as ``(top_acts, top_indices)`` and decoded with ``F.embedding_bag`` so the
TopK path never materialises a dense [N, d_sae] reconstruction input: at d_sae = 32k that matrix
is what dominates memory and time. Decoder rows are unit norm (the trainer re-normalises after every
step), so activations are comparable across latents and the L1 penalty needs no norm weighting.

Weights use the SAELens layout (W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec) both in memory
and on disk, so saving is a plain dump and SAELens SAEs load without transposes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from autointerp.errors import UserError
from autointerp.io import atomic_path
from autointerp.training.sparse_ops import SparseDecode, SparseEncode, top_dead

WEIGHTS_FILE = "sae_weights.safetensors"
CFG_FILE = "cfg.json"
SPARSITY_FILE = "sparsity.safetensors"
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
# SAELens spells ReLU+L1 "standard"; older SAELens TopK SAEs are "standard" + activation_fn_str "topk".
_ALIASES = {"standard": "relu", "batch_topk": "batchtopk"}
# cfg.json "architecture" as SAELens spells it; our own name goes in "autointerp_architecture". SAELens stores
# BatchTopK SAEs for inference as JumpReLU with a threshold per latent (here one global value).
_SAELENS_ARCH = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}
_SAELENS_META = ("model_name", "hook_name", "hook_layer", "context_size", "dataset_path")  # top-level in cfg.json


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


@dataclass
class SAEConfig:
    d_in: int
    d_sae: int
    architecture: str = "topk"  # "topk" | "batchtopk" | "relu"
    k: int = 32  # actives per token (TopK) or mean actives per token (BatchTopK); unused by relu
    # L1 penalty = l1_coefficient * sum_n sum_i f_ni ||d_i|| / sum_n ||x_n - mean(x)||, i.e. the L1 of
    # the code in units of the mean centred token norm, so it is invariant to input scale.
    # None: 0.2 for relu, no penalty for TopK variants (set it for the original study's TopK + L1).
    l1_coefficient: float | None = None
    normalize_activations: bool = False  # scale inputs to mean norm sqrt(d_in); folded back at save
    apply_b_dec_to_input: bool = True  # SAELens: encode(x - b_dec); some SAELens SAEs set False
    dtype: str = "float32"
    metadata: dict[str, Any] = field(default_factory=dict)  # model_name, hook_name, context_size, ...

    def __post_init__(self) -> None:
        self.architecture = _ALIASES.get(self.architecture, self.architecture)
        self.dtype = str(self.dtype).removeprefix("torch.")
        if self.architecture not in ARCHITECTURES:
            raise UserError(f"unknown SAE architecture {self.architecture!r}; use one of {sorted(ARCHITECTURES)}")
        if self.d_in < 1 or self.d_sae < 1:
            raise UserError(f"SAE sizes must be positive (d_in={self.d_in}, d_sae={self.d_sae}); fix the SAE config")
        if self.architecture not in ("relu", "jumprelu") and not 0 < self.k < self.d_sae:
            raise UserError(f"k={self.k} must be in [1, d_sae={self.d_sae}); lower k or raise d_sae")
        if self.dtype not in _DTYPES:
            raise UserError(f"unsupported SAE dtype {self.dtype!r}; use one of {sorted(_DTYPES)}")

    torch_dtype = property(lambda self: _DTYPES[self.dtype])

    @property
    def resolved_l1(self) -> float:
        if self.l1_coefficient is not None:
            return float(self.l1_coefficient)
        return 0.2 if self.architecture == "relu" else 0.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SAEConfig:
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
            return cls(d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), architecture=arch, k=int(k),
                       l1_coefficient=None if raw.get("l1_coefficient") is None else float(raw["l1_coefficient"]),
                       normalize_activations=False,
                       apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
                       dtype=raw.get("dtype", "float32"), metadata=metadata)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"SAE cfg.json is missing or has a bad field ({e!r}); re-save the SAE") from e


ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {}


def register(name: str) -> Callable[[type[SparseAutoencoder]], type[SparseAutoencoder]]:
    """Class decorator: make an architecture available to ``create_sae`` / ``load_sae`` by name."""

    def deco(cls: type[SparseAutoencoder]) -> type[SparseAutoencoder]:
        cls.architecture, ARCHITECTURES[name] = name, cls
        return cls
    return deco


def create_sae(cfg: SAEConfig, seed: int | None = None) -> SparseAutoencoder:
    """Instantiate ``cfg.architecture``; ``seed`` makes the random decoder init reproducible."""
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return ARCHITECTURES[cfg.architecture](cfg)


def _to_sparse(acts: Tensor) -> EncoderOutput:
    """Dense non-negative codes -> (values, indices) with as many columns as the busiest row needs."""
    kmax = int((acts > 0).sum(-1).max()) if acts.numel() else 0
    vals, idx = acts.topk(max(kmax, 1), dim=-1, sorted=False)
    return EncoderOutput(vals, idx)


class SparseAutoencoder(nn.Module):
    """Shared encoder/decoder; subclasses only decide which latents survive (``_select``)."""
    architecture = ""
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

    def _l1_loss(self, x_n: Tensor, latents: EncoderOutput, pre: Tensor | None) -> Tensor:
        """TopK variants: L1 of the selected activations, only when l1_coefficient is set. ``pre`` (the
        dense codes) is None on the sparse-backward path, which only TopK variants take."""
        if self.cfg.resolved_l1 == 0:
            return x_n.new_zeros(())
        l1 = (latents.top_acts * self.W_dec.norm(dim=1)[latents.top_indices]).sum()
        return self.cfg.resolved_l1 * l1 / (x_n - x_n.mean(0)).norm(dim=-1).sum().clamp_min(1e-12)

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

    def saelens_architecture(self) -> str:
        return _SAELENS_ARCH[self.cfg.architecture]

    def save(self, directory: str | Path, log_feature_density: Tensor | None = None) -> Path:
        """Write the SAELens layout (weights, cfg.json, optional sparsity) atomically per file."""
        (directory := Path(directory)).mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(self.folded_state(), str(tmp))
        if log_feature_density is not None:
            sparsity = {"sparsity": log_feature_density.detach().float().contiguous().cpu()}
            with atomic_path(directory / SPARSITY_FILE) as tmp:
                save_file(sparsity, str(tmp))
        cfg, md = self.cfg, self.cfg.metadata
        sl_arch = self.saelens_architecture()
        raw = {  # ours + the keys SAELens' loaders read
            **{k: v for k, v in asdict(cfg).items() if k != "normalize_activations"},
            "architecture": sl_arch, "autointerp_architecture": cfg.architecture,
            "normalize_activations": "none",  # folded into the weights above (SAELens spelling)
            "folded_input_scale": float(self.input_scale) if cfg.normalize_activations else None,
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


@register("topk")
class TopKSAE(SparseAutoencoder):
    """Exactly k latents per token (Gao et al. 2024): L0 is set, not tuned through a penalty."""
    def _select(self, pre: Tensor) -> EncoderOutput:
        return EncoderOutput(*pre.topk(self.cfg.k, dim=-1, sorted=False))


@register("batchtopk")
class BatchTopKSAE(SparseAutoencoder):
    """Top k*batch activations over the whole batch in training (Bussmann et al. 2024).

    Per-token L0 varies, which lets easy tokens use fewer latents. Batch composition must not matter at
    inference, so eval mode uses a global threshold: an EMA of the smallest activation kept in each
    training batch. Latents stay sparse, padded with zero acts to the busiest row.
    """
    threshold_momentum = 0.99

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not estimated yet

    def saelens_architecture(self) -> str:  # eval = JumpReLU at the global threshold; TopK until estimated
        return "jumprelu" if self.threshold >= 0 else "topk"

    @torch.no_grad()
    def folded_state(self) -> dict[str, Tensor]:
        out = super().folded_state()
        if self.saelens_architecture() == "jumprelu":  # SAELens' JumpReLU: one threshold per latent
            out["threshold"] = out["threshold"].to(self.b_enc.dtype).expand(self.cfg.d_sae).contiguous()
        else:
            del out["threshold"]
        return out

    def _select(self, pre: Tensor) -> EncoderOutput:
        if not self.training and self.threshold >= 0:
            return _to_sparse(pre * (pre > self.threshold.to(pre.dtype)))
        if not self.training:  # never trained: per-token TopK is the closest well-defined rule
            return EncoderOutput(*pre.topk(self.cfg.k, dim=-1, sorted=False))
        flat = pre.flatten()
        vals, idx = flat.topk(min(self.cfg.k * pre.shape[0], flat.numel()), sorted=False)
        with torch.no_grad():
            kept = vals[vals > 0]
            if kept.numel():
                m = self.threshold_momentum if self.threshold >= 0 else 0.0
                self.threshold.copy_(m * self.threshold + (1 - m) * kept.min().float())
        return _to_sparse(torch.zeros_like(flat).scatter(0, idx, vals).view_as(pre))


@register("jumprelu")
class JumpReLUSAE(SparseAutoencoder):
    """ReLU with a per-latent threshold: SAELens' "jumprelu" (its BatchTopK SAEs, Gemma Scope). Inference only."""
    uses_auxk = False
    supports_sparse_backward = False

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=cfg.torch_dtype))

    def _select(self, pre: Tensor) -> EncoderOutput:
        return _to_sparse(pre * (pre > self.threshold.to(pre.dtype)))


@register("relu")
class ReLUSAE(SparseAutoencoder):
    """ReLU encoder + L1 penalty (the original study's SAE); decoded densely during training."""
    uses_auxk = False
    supports_sparse_backward = False  # every positive pre-activation is a latent

    def _select(self, pre: Tensor) -> EncoderOutput:
        return _to_sparse(pre)

    def _reconstruct(self, pre: Tensor) -> tuple[EncoderOutput, Tensor]:
        with torch.no_grad():  # the sparse view is only for statistics; the loss uses the dense path
            latents = _to_sparse(pre)
        return latents, pre @ self.W_dec + self.b_dec

    def _l1_loss(self, x_n: Tensor, latents: EncoderOutput, pre: Tensor | None) -> Tensor:
        l1 = (pre * self.W_dec.norm(dim=1)).sum()
        return self.cfg.resolved_l1 * l1 / (x_n - x_n.mean(0)).norm(dim=-1).sum().clamp_min(1e-12)


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
