"""SAE quality metrics: reconstruction (FVU, R^2, L0), feature usage (dead, density, Gini), dictionary
geometry (decoder cosines) and downstream CE loss (see ``splice.py``). Every number is reported with its
definition (``SAEMetrics.definitions``), because these names mean slightly different things across papers.

Reconstruction is one streaming pass over held-out batches with float64 sufficient statistics: the
sum of squared errors, and sum(x - c), sum ||x - c||^2 around a shift c (the first batch's mean), which
gives the centred total variance sum ||x - mean(x)||^2 = S2 - ||S1||^2 / n without a second pass and
without the cancellation an unshifted sum suffers on residual streams with large mean components.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from autointerp.errors import UserError
from autointerp.sae.base import SparseAutoencoder
from autointerp.sae.splice import ce_loss_metrics, empty_ce

__all__ = [
    "SAEMetrics",
    "ce_loss_metrics",
    "compute_metrics",
    "decoder_cosine_stats",
    "density_histogram",
    "evaluate_reconstruction",
    "gini",
]

_COS_BINS = 1 << 16  # |cos| histogram resolution for the p95 (1.5e-5, interpolated within the bin)


@dataclass
class SAEMetrics:
    n_eval_tokens: int
    fvu: float
    explained_variance: float
    r2: float
    l0: float
    dead_fraction: float
    dead_window_tokens: int
    log10_density_hist: dict
    gini: float
    decoder_cos_mean: float
    decoder_cos_p95: float
    decoder_cos_max: float
    ce_clean: float | None = None
    ce_spliced: float | None = None
    ce_zero_ablate: float | None = None
    ce_loss_recovered: float | None = None
    delta_lm_loss: float | None = None
    definitions: dict[str, str] = field(default_factory=dict)


@torch.no_grad()
def evaluate_reconstruction(sae: SparseAutoencoder, batches: Iterable[Tensor]) -> dict:
    """One pass over held-out [B, d_in] batches (any sizes).

    Returns ``{n_tokens, fvu, explained_variance, l0, fire_counts (int64 [d_sae]), sse, sst}`` with
    FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, mean over the whole eval set, and L0 the mean number
    of latents with activation > 0 per token. The SAE is run in eval mode (BatchTopK uses its threshold).
    """
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    device = next(sae.parameters()).device
    n, sse, s2, l0_sum = 0, 0.0, 0.0, 0
    shift = s1 = None
    fire = torch.zeros(d_sae, dtype=torch.int64, device=device)
    was_training = sae.training
    sae.eval()
    try:
        for x in batches:
            if x.dim() != 2 or x.shape[1] != d_in:
                raise UserError(f"eval activations have shape {tuple(x.shape)} but the SAE expects [tokens, {d_in}]; "
                                "evaluate on the harvest this SAE was trained on")
            if not len(x):
                continue
            x = x.to(device)
            acts, idx = sae.encode(x)
            x_hat = sae.decode(acts, idx)
            x64 = x.double()
            if shift is None:
                shift, s1 = x64.mean(0), torch.zeros(d_in, dtype=torch.float64, device=device)
            xc = x64 - shift
            s1 += xc.sum(0)
            s2 += float(xc.pow(2).sum())
            sse += float((x64 - x_hat.double()).pow(2).sum())
            active = acts > 0
            l0_sum += int(active.sum())
            fire += torch.bincount(idx[active].flatten(), minlength=d_sae)
            n += len(x)
    finally:
        sae.train(was_training)
    if n == 0:
        raise UserError("no evaluation activations; harvest more tokens so a held-out shard exists")
    sst = s2 - float(s1.pow(2).sum()) / n
    fvu = sse / sst if sst > 0 else math.inf
    return {"n_tokens": n, "fvu": fvu, "explained_variance": 1.0 - fvu, "l0": l0_sum / n,
            "fire_counts": fire.cpu(), "sse": sse, "sst": sst}


def gini(counts) -> float:
    """Gini coefficient of non-negative usage counts: 0 = uniform, (n-1)/n -> 1 = one feature does all.

    G = sum_i (2i - n - 1) c_(i) / (n sum c) over ascending-sorted counts c_(1..n); 0.0 if all counts are 0.
    """
    c = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if c.size == 0 or c.sum() <= 0:
        return 0.0
    if (c < 0).any():
        raise ValueError("gini needs non-negative counts")
    i = np.arange(1, c.size + 1)
    return float(((2 * i - c.size - 1) * c).sum() / (c.size * c.sum()))


@torch.no_grad()
def decoder_cosine_stats(W_dec: Tensor, chunk: int = 1024) -> tuple[float, float, float]:
    """(mean, p95, max) of |cos| between distinct decoder rows of W_dec [d_sae, d_in].

    Each unordered pair once, by row chunks against the rows after them (chunk x d_sae at most in memory);
    p95 comes from a 65536-bin histogram of |cos| in [0, 1] (linear within the bin, error < 2e-5).
    """
    W = W_dec.detach().float()
    W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)  # zero rows: cos 0 with everything
    d = W.shape[0]
    if d < 2:
        return 0.0, 0.0, 0.0
    hist = torch.zeros(_COS_BINS, dtype=torch.float64, device=W.device)
    total, mx, pairs = 0.0, 0.0, 0
    for s in range(0, d - 1, chunk):
        e = min(s + chunk, d)
        cos = (W[s:e] @ W[s:].T).abs_().clamp_(max=1.0)  # [e-s, d-s]
        keep = torch.ones_like(cos, dtype=torch.bool).triu_(1)  # strictly j > i
        vals = cos[keep]
        if not vals.numel():
            continue
        total += float(vals.double().sum())
        mx = max(mx, float(vals.max()))
        pairs += vals.numel()
        hist += torch.histc(vals, bins=_COS_BINS, min=0.0, max=1.0).double()
    cdf = hist.cumsum(0)
    target = 0.95 * pairs
    b = int(torch.searchsorted(cdf, torch.tensor([target], dtype=torch.float64, device=W.device)).clamp(max=_COS_BINS - 1))
    below = float(cdf[b - 1]) if b > 0 else 0.0
    frac = (target - below) / max(float(hist[b]), 1.0)
    p95 = min((b + min(max(frac, 0.0), 1.0)) / _COS_BINS, mx)
    return total / pairs, p95, mx


def density_histogram(fire_counts, n_tokens: float, bins: int | Sequence[float] = 40) -> dict:
    """Histogram of log10(fire_counts / n_tokens) over alive features (count > 0).

    ``fire_counts`` may be a density already (pass ``n_tokens=1``). ``bins``: a number of equal bins from
    floor(min log10 density) to 0, or explicit edges (values outside them go to the end bins), so
    ``sum(counts)`` is always the number of alive features.
    """
    c = np.asarray(fire_counts, dtype=np.float64).ravel()
    if n_tokens <= 0:
        raise ValueError(f"n_tokens={n_tokens} must be positive")
    logd = np.log10(c[c > 0] / n_tokens)
    if isinstance(bins, int):
        lo = math.floor(float(logd.min())) if logd.size else -1.0
        hi = max(0.0, math.ceil(float(logd.max()))) if logd.size else 0.0
        edges = np.linspace(lo if lo < hi else hi - 1.0, hi, bins + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or (np.diff(edges) <= 0).any():
            raise ValueError("bins must be an int or at least 2 increasing edges")
    counts, _ = np.histogram(np.clip(logd, edges[0], edges[-1]), bins=edges)
    return {"bin_edges": [round(float(e), 6) for e in edges], "counts": [int(k) for k in counts]}


def _definitions(dead_source: str, usage_source: str, ce_note: str) -> dict[str, str]:
    return {
        "n_eval_tokens": "number of held-out activation rows (tokens) used for FVU, R^2 and L0",
        "fvu": "fraction of variance unexplained: sum||x - x_hat||^2 / sum||x - mean(x)||^2 over held-out tokens, "
               "mean taken over the whole eval set",
        "explained_variance": "1 - FVU",
        "r2": "the original study's R^2 = 1 - SSE/SST, SST = sum_i sum_d (x_id - mean_d)^2 centred per "
              "dimension and pooled over dimensions; identical to explained_variance by construction",
        "l0": "mean number of latents with activation > 0 per held-out token",
        "dead_fraction": f"fraction of latents that never fired {dead_source}",
        "dead_window_tokens": f"N, the number of tokens in the dead-latent window ({dead_source})",
        "log10_density_hist": f"histogram of log10(fraction of tokens a latent fires on) over alive latents, {usage_source}",
        "gini": f"Gini coefficient of per-latent firing counts over all latents, {usage_source}: 0 = uniform use, "
                "1 = one latent does everything",
        "decoder_cos_mean": "mean |cosine| between distinct decoder rows (W_dec), over all pairs",
        "decoder_cos_p95": "95th percentile of |cosine| between distinct decoder rows (histogram, +-2e-5)",
        "decoder_cos_max": "max |cosine| between distinct decoder rows",
        "ce_clean": f"next-token cross-entropy (nats/token) of the unmodified model {ce_note}",
        "ce_spliced": "CE with the hooked output replaced by the SAE reconstruction at content positions "
                      "(special tokens such as BOS keep their original activation)",
        "ce_zero_ablate": "CE with the hooked output set to 0 at content positions (specials kept)",
        "ce_loss_recovered": "(CE_zero_ablate - CE_spliced) / (CE_zero_ablate - CE_clean); 1 = lossless",
        "delta_lm_loss": "CE_spliced - CE_clean (nats/token); 0 = lossless",
    }


def compute_metrics(sae: SparseAutoencoder, eval_batches: Iterable[Tensor], feature_density_from_training: Tensor | None = None,
                    dead_window_tokens: int | None = None, lm=None, docs=None, harvest_manifest: dict | None = None, *,
                    dead_fraction_from_training: float | None = None, train_result=None, ce_contexts: int = 64,
                    ce_batch_size: int = 8, cosine_chunk: int = 1024) -> SAEMetrics:
    """All metrics for one SAE.

    Dead fraction, in order of preference: ``dead_fraction_from_training`` (TrainResult.dead_fraction) over
    the last ``dead_window_tokens`` training tokens; else latents with zero ``feature_density_from_training``
    (fraction of training tokens fired on, over ``dead_window_tokens`` tokens); else latents that never
    fired on the eval tokens (window = n_eval_tokens). The density histogram and Gini use the training
    density when given, else eval firing counts. CE metrics need ``lm``, ``docs`` and ``harvest_manifest``
    (for layer, site, ctx_len and the held-out shard's contexts); they are None for non-causal models and
    sequence-level harvests. ``train_result`` (a ``TrainResult``) fills the three training arguments at once.
    """
    if train_result is not None:
        feature_density_from_training = train_result.feature_density
        dead_fraction_from_training = train_result.dead_fraction
        dead_window_tokens = train_result.dead_window_tokens
    rec = evaluate_reconstruction(sae, eval_batches)
    n_eval, fire = rec["n_tokens"], rec["fire_counts"]
    if feature_density_from_training is not None:
        density = torch.as_tensor(feature_density_from_training, dtype=torch.float64).flatten().cpu()
        if density.numel() != sae.cfg.d_sae:
            raise UserError(f"training feature density has {density.numel()} entries but the SAE has "
                            f"{sae.cfg.d_sae} latents; pass the density saved with this SAE")
        if (density < 0).any() or (density > 1).any():
            raise UserError("feature_density_from_training must be fractions in [0, 1]; if it came from "
                            "sparsity.safetensors (log10 density) pass 10 ** sparsity")
        usage, usage_n = density, 1.0
        usage_source = "from training-time density"
    else:
        usage, usage_n, usage_source = fire, float(n_eval), f"over the {n_eval} eval tokens"
    if dead_fraction_from_training is not None or feature_density_from_training is not None:
        if dead_window_tokens is None:
            raise UserError("dead_window_tokens is required with training-time dead statistics "
                            "(TrainResult.dead_window_tokens, or the number of training tokens)")
        if dead_fraction_from_training is not None:
            dead = float(dead_fraction_from_training)
            dead_source = f"over the last {dead_window_tokens} training tokens"
        else:
            dead = float((usage == 0).double().mean())
            dead_source = (f"during training (zero training-time density; window reported by the caller: "
                           f"{dead_window_tokens} tokens)")
        window = int(dead_window_tokens)
    else:
        dead, window = float((fire == 0).double().mean()), n_eval
        dead_source = f"on the {n_eval} held-out eval tokens"
    cos_mean, cos_p95, cos_max = decoder_cosine_stats(sae.W_dec, chunk=cosine_chunk)

    ce, ce_note = empty_ce(), "(not computed: no model/documents given)"
    if lm is not None:
        if docs is None or harvest_manifest is None:
            raise UserError("CE metrics need the corpus and the harvest manifest: pass docs=load_saved_documents(...) "
                            "and harvest_manifest=load_manifest(harvest_dir), or lm=None to skip them")
        ident = harvest_manifest.get("identity", {})
        if not lm.is_causal:
            ce_note = "(not applicable: the model is not a causal LM)"
        elif ident.get("level", "token") != "token":
            ce_note = "(not applicable: sequence-level SAEs are not trained on every position)"
        else:
            shards = harvest_manifest.get("shards") or []
            held_out = int(shards[-1]["contexts"]) if len(shards) > 1 else None
            ce = ce_loss_metrics(lm, sae, docs, int(ident["layer"]), ident.get("site", "resid"), int(ident["ctx_len"]),
                                 n_contexts=ce_contexts, batch_size=ce_batch_size, held_out_contexts=held_out)
            where = "the held-out shard's contexts" if held_out else "contexts from the start of the corpus"
            ce_note = f"over {ce['ce_n_tokens']} content next-token targets in up to {ce_contexts} of {where}"

    return SAEMetrics(
        n_eval_tokens=n_eval, fvu=rec["fvu"], explained_variance=rec["explained_variance"], r2=1.0 - rec["fvu"],
        l0=rec["l0"], dead_fraction=dead, dead_window_tokens=window,
        log10_density_hist=density_histogram(usage, usage_n), gini=gini(usage),
        decoder_cos_mean=cos_mean, decoder_cos_p95=cos_p95, decoder_cos_max=cos_max,
        **{k: ce[k] for k in ("ce_clean", "ce_spliced", "ce_zero_ablate", "ce_loss_recovered", "delta_lm_loss")},
        definitions=_definitions(dead_source, usage_source, ce_note),
    )
