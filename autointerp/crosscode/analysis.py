"""Which latents are shared and which belong to one model: relative decoder norms + Latent Scaling.

Classes, from r_j = |d_j^B| / (|d_j^A| + |d_j^B|) (common-norm space, see ``model``) with the thresholds
of ``[crosscode]``: *shared* when |r - 0.5| <= shared_within; *A-only* when r < exclusive_below; *B-only*
when r > 1 - exclusive_below; *leaning* in between; *dead* when the latent never fires on any unit.

Latent Scaling (Minder et al. 2025, their nu^epsilon and nu^r): a small decoder norm on model B does not
prove that B cannot use the latent - another latent may carry the same information for B. So for each
latent j and model m we fit the best linear readout of j's activation f_j, v_j^m = argmin_v
sum_n ||t_m(n) - f_j(n) v||^2 (centred), on two targets: the crosscoder's error on m plus j's own
contribution (what j explains that nothing else does), and m's reconstruction by the *other* latents (what
other latents already carry). nu_j = |v_j^other| / |v_j^own| for each target; an exclusive-by-norm latent
is called exclusive only when both are below ``scaling_max``, otherwise "exclusive by norm only".
Everything is sums over units of sparse codes times dense targets: one pass, no [units x latents] matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from autointerp.crosscode.config import CrosscodeConfig
from autointerp.crosscode.data import PairedUnits
from autointerp.crosscode.model import CrossCoder

CLASSES = ("shared", "a_only", "b_only", "leaning", "norm_only", "dead")
CHUNK = 8192


@dataclass
class Encoded:
    """Every unit's latents (eval mode, thresholded) and the sums the per-model metrics need."""

    codes: sp.csr_matrix  # [n_units, d_sae] float32, rows in PairedUnits order
    error_sq: np.ndarray  # [2] sum ||x_m - x_m_hat||^2 over held-out units (common-norm space)
    total_var: np.ndarray  # [2] sum ||x_m - mean||^2 over held-out units
    readout_err: tuple[np.ndarray, np.ndarray]  # per model: F^T E_m, [d_sae, d_m]
    readout_rec: tuple[np.ndarray, np.ndarray]  # per model: F^T X_hat_m (bias removed), [d_sae, d_m]
    sum_f: np.ndarray  # [d_sae] sum_n f_j(n)
    sum_f2: np.ndarray  # [d_sae] sum_n f_j(n)^2
    sum_err: tuple[np.ndarray, np.ndarray]  # per model: sum_n e_m(n)
    sum_rec: tuple[np.ndarray, np.ndarray]
    n: int


@torch.no_grad()
def encode_units(cc: CrossCoder, data: PairedUnits) -> Encoded:
    """One pass over all units: sparse codes, held-out error sums and the Latent Scaling moments."""
    cc.eval()
    d, device = cc.cfg.d_sae, next(cc.parameters()).device
    parts, err_sq, tot = [], np.zeros(2), np.zeros(2)
    ev = data.is_eval
    means = [torch.from_numpy(x[ev].mean(0)).to(device) * s for x, s in zip((data.x_a, data.x_b), cc.scales.tolist())]
    r_err = [np.zeros((d, cc.d_a)), np.zeros((d, cc.d_b))]
    r_rec = [np.zeros((d, cc.d_a)), np.zeros((d, cc.d_b))]
    s_err, s_rec = [np.zeros(cc.d_a), np.zeros(cc.d_b)], [np.zeros(cc.d_a), np.zeros(cc.d_b)]
    sum_f, sum_f2 = np.zeros(d), np.zeros(d)
    for start in range(0, data.n, CHUNK):
        rows = slice(start, min(start + CHUNK, data.n))
        x_n = cc._scale_in(data.concat(rows).to(device))
        acts, idx = cc._select(cc._pre_acts(x_n))
        x_hat = cc._decode_n(acts, idx)
        err = x_n - x_hat
        rec = x_hat - cc.b_dec
        a_np, i_np = acts.float().cpu().numpy(), idx.cpu().numpy()
        r, c = np.nonzero(a_np > 0)
        codes = sp.csr_matrix((a_np[r, c], (r, i_np[r, c])), shape=(rows.stop - rows.start, d), dtype=np.float32)
        parts.append(codes)
        ft = codes.T.tocsr().astype(np.float64)
        sum_f += np.asarray(ft.sum(1)).ravel()
        sum_f2 += np.asarray(ft.multiply(ft).sum(1)).ravel()
        ev_rows = torch.from_numpy(ev[rows]).to(device)
        for m, (e_m, h_m, x_m) in enumerate(zip(cc.split(err), cc.split(rec), cc.split(x_n))):
            e64, h64 = e_m.double().cpu().numpy(), h_m.double().cpu().numpy()
            r_err[m] += ft @ e64
            r_rec[m] += ft @ h64
            s_err[m] += e64.sum(0)
            s_rec[m] += h64.sum(0)
            err_sq[m] += float(e_m[ev_rows].double().pow(2).sum())
            tot[m] += float((x_m[ev_rows] - means[m]).double().pow(2).sum())
    return Encoded(sp.vstack(parts).tocsr(), err_sq, tot, tuple(r_err), tuple(r_rec),
                   sum_f, sum_f2, tuple(s_err), tuple(s_rec), data.n)


def _readout_norms(enc: Encoded, numer: tuple[np.ndarray, np.ndarray], sums: tuple[np.ndarray, np.ndarray],
                   own: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """[d_sae, 2]: |v_j^m| of the centred least-squares readout of target m on f_j (+ j's own decoder part)."""
    n = max(enc.n, 1)
    var_f = enc.sum_f2 - enc.sum_f ** 2 / n
    out = np.zeros((len(var_f), 2))
    for m in range(2):
        cov = numer[m] - np.outer(enc.sum_f, sums[m]) / n
        v = cov / np.maximum(var_f, 1e-12)[:, None]
        if own is not None:
            v = v + own[m]
        out[:, m] = np.linalg.norm(v, axis=1)
    return out


def latent_table(cc: CrossCoder, enc: Encoded, cfg: CrosscodeConfig) -> dict[str, np.ndarray]:
    """Per latent: decoder norms, relative norm, firing count, Latent Scaling ratios and the class."""
    norms = cc.decoder_norms().cpu().numpy().astype(np.float64)
    rel = norms[:, 1] / np.maximum(norms.sum(1), 1e-12)
    dec = [p.detach().double().cpu().numpy() for p in cc.split(cc.W_dec)]
    # error target: e_m + f_j d_j^m  -> readout = cov(f, e_m) / var(f) + d_j^m
    v_err = _readout_norms(enc, enc.readout_err, enc.sum_err, (dec[0], dec[1]))
    # reconstruction by the other latents: x_hat_m - f_j d_j^m -> readout = cov(f, x_hat_m) / var(f) - d_j^m
    v_rec = _readout_norms(enc, enc.readout_rec, enc.sum_rec, (-dec[0], -dec[1]))
    own = (rel > 0.5).astype(int)  # the model whose decoder part is larger
    idx = np.arange(len(rel))
    nu_err = v_err[idx, 1 - own] / np.maximum(v_err[idx, own], 1e-12)
    nu_rec = v_rec[idx, 1 - own] / np.maximum(v_err[idx, own], 1e-12)
    fires = np.bincount(enc.codes.indices, minlength=len(rel))
    cls = np.full(len(rel), "leaning", dtype=object)
    cls[np.abs(rel - 0.5) <= cfg.shared_within] = "shared"
    exclusive = (rel < cfg.exclusive_below) | (rel > 1 - cfg.exclusive_below)
    confirmed = (nu_err < cfg.scaling_max) & (nu_rec < cfg.scaling_max)
    cls[exclusive & confirmed & (rel < 0.5)] = "a_only"
    cls[exclusive & confirmed & (rel > 0.5)] = "b_only"
    cls[exclusive & ~confirmed] = "norm_only"
    cls[fires == 0] = "dead"
    return {"latent": idx.astype(np.int64), "norm_a": norms[:, 0], "norm_b": norms[:, 1], "relative_norm": rel,
            "nu_error": nu_err, "nu_reconstruction": nu_rec, "n_units": fires.astype(np.int64),
            "class": cls.astype(str)}


def class_summary(table: dict[str, np.ndarray], cfg: CrosscodeConfig) -> dict:
    """Counts and fractions of the classes (fractions over live latents), with the thresholds stated."""
    cls = table["class"]
    live = int((cls != "dead").sum())
    counts = {c: int((cls == c).sum()) for c in CLASSES}
    return {"counts": counts, "n_live": live, "n_latents": len(cls),
            "fractions": {c: (counts[c] / live if live else None) for c in CLASSES if c != "dead"},
            "thresholds": {"a_only": f"r < {cfg.exclusive_below}", "b_only": f"r > {1 - cfg.exclusive_below:g}",
                           "shared": f"{0.5 - cfg.shared_within:g} <= r <= {0.5 + cfg.shared_within:g}",
                           "latent_scaling": f"exclusive only if nu_error and nu_reconstruction < {cfg.scaling_max}"},
            "relative_norm_definition": "r = |d_B| / (|d_A| + |d_B|), decoder norms in the common-norm space"}


def per_model_metrics(enc: Encoded, dead_fraction: float, names: tuple[str, str], relative: np.ndarray | None = None,
                      exclusive_below: float = 0.1) -> dict:
    """FVU per model on held-out units, L0 (active latents per unit) and dead latents, for the whole dictionary
    and per model (``relative``: each latent's r; a latent counts for model m when m's share of its decoder
    norm is at least ``exclusive_below``, i.e. it is not exclusive to the other model by norm)."""
    fvu = enc.error_sq / np.maximum(enc.total_var, 1e-12)
    n_units, d_sae = enc.codes.shape
    l0 = float(np.diff(enc.codes.indptr).mean()) if enc.n else float("nan")
    fires = np.bincount(enc.codes.indices, minlength=d_sae)
    never = float((fires == 0).mean())
    per_model = {}
    if relative is not None:
        for name, share in zip(names, (1.0 - np.asarray(relative), np.asarray(relative))):
            writes = share >= exclusive_below
            live = writes & (fires > 0)
            per_model[name] = {
                "l0": float(writes[enc.codes.indices].sum() / n_units) if n_units else float("nan"),
                "n_latents": int(writes.sum()), "n_live": int(live.sum()), "n_dead": int((writes & (fires == 0)).sum()),
                "dead_fraction": float((writes & (fires == 0)).sum() / writes.sum()) if writes.any() else None,
                "unused_fraction": float(1.0 - live.sum() / d_sae)}
    return {"fvu": {names[0]: float(fvu[0]), names[1]: float(fvu[1])}, "l0": l0,
            "dead_fraction_training": dead_fraction, "never_fired_fraction": never, "per_model": per_model,
            "definitions": {"fvu": "held-out word units: sum |x_m - x_m_hat|^2 / sum |x_m - mean|^2, per model, common-norm space",
                            "l0": "mean active latents per word unit (all units, inference threshold)",
                            "never_fired_fraction": "latents active on no word unit at all",
                            "per_model": f"a latent counts for model m when m's share of its decoder norm (|d_m| / (|d_A| + |d_B|)) is >= "
                                         f"{exclusive_below:g}; l0: mean active latents per word unit that count for m; n_dead / dead_fraction: "
                                         "those counting for m that never fire (count, share of them); unused_fraction: share of the whole "
                                         "dictionary m cannot use (never fires, or a negligible decoder norm for m)"}}
