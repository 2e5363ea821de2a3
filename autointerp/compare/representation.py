"""Representation-level baselines: how alike the two models' raw activations are, with no SAE in between.

Feature matching says which *features* two models share; these say how much of the *representation* is
shared at all, so a feature-level result can be read against it. The raw harvested activations are
mean-pooled onto the same shared word units as the SAE codes (units.py, through encode.shard_units), so
the rows of the two matrices are the same pieces of text. Three standard measures:

* debiased linear CKA (Kornblith et al. 2019, with the unbiased HSIC estimator of Song et al. 2012, as
  used by Nguyen et al. 2021): invariant to rotation and isotropic scaling, ~0 for independent data;
* SVCCA (Raghu et al. 2017): each side reduced to the directions holding 99% of its variance, then the
  mean canonical correlation between the reduced sides;
* mutual k-nearest-neighbour alignment (Huh et al. 2024): the share of each unit's k cosine neighbours
  the two models agree on, on a seeded subsample (it is quadratic in units).

Each gets the same document-derangement null as activation matching (units.null_pairs): model B's units
are those of another document at the same word position, so marginals, position effects and
tokenization are kept and only the alignment is broken. With P permutations the smallest possible
p-value is 1 / (1 + P), so the default P = 5 cannot reach 0.05; ``z`` (distance from the null mean in
null standard deviations) is reported alongside.

CKA and SVCCA are computed in feature space from streamed second moments (X^T Y, X^T X, Y^T Y and the
row norms), never from [n x n] Gram matrices and never from a float64 copy of all units.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from autointerp.compare.bootstrap import block_weights, cka_blocks, document_blocks, mean_replicates, percentile_interval, svcca_replicates
from autointerp.compare.encode import harvest_shards, shard_units
from autointerp.sae.encode import read_harvest_shard
from autointerp.compare.units import WordIndex, aligned_pairs, derangement, null_pairs
from autointerp.errors import UserError
from autointerp.progress import progress_bar

SVCCA_VARIANCE = 0.99
UNITS_PER_COMPONENT = 10  # SVCCA keeps at most n / 10 directions per side: CCA on few samples per dimension is inflated
CHUNK_VALUES = 1 << 24  # float64 values per streamed chunk of rows (~128 MB)


@dataclass
class WordActivations:
    """Raw activations mean-pooled per word unit; rows of uncovered units are zero and carry no observation."""

    matrix: np.ndarray  # [n_units, d_model] float32
    covered: np.ndarray  # [n_units] bool: the unit has at least one harvested token

    @property
    def units(self) -> np.ndarray:
        """Ids of the covered units (for two models: units.aligned_pairs(a.covered, b.covered))."""
        return np.flatnonzero(self.covered)


def pooled_word_activations(harvest_dir: Path, manifest: dict, doc_index_of: dict[str, int], words: WordIndex,
                            progress: bool = False, label: str = "") -> WordActivations:
    """Mean of the harvested activations over each word unit's tokens (every token overlapping the word).

    The mean, not the max used for SAE codes: a raw activation is a signed vector, and the mean is the
    pooling under which a linear measure of the two representations is comparable across tokenizations.
    Sums accumulate per shard (a word may straddle two contexts in different shards) and are divided once.
    Memory: n_units x d_model float32.
    """
    matrix: np.ndarray | None = None
    counts = np.zeros(words.n_units, np.int64)
    shards = harvest_shards(manifest)
    with progress_bar(f"compare: pool raw {label}", len(shards), "shards", enabled=progress) as advance:
        for shard_index in shards:
            acts, index = read_harvest_shard(harvest_dir, shard_index)
            if matrix is None:
                matrix = np.zeros((words.n_units, acts.shape[1]), np.float32)
            elif acts.shape[1] != matrix.shape[1]:
                raise UserError(f"shard {shard_index} in {harvest_dir} holds d_model={acts.shape[1]}, earlier shards {matrix.shape[1]}; re-run `autointerp harvest --overwrite`")
            _doc_idx, pair_rows, pair_units = shard_units(harvest_dir, index, doc_index_of, words)
            uniq, member = word_members(pair_rows, pair_units, acts.shape[0])
            matrix[uniq] += member @ acts.float().numpy()
            counts[uniq] += np.diff(member.indptr)
            advance(1)
    if matrix is None:
        raise UserError(f"{harvest_dir} lists no shards; re-run `autointerp harvest --overwrite`")
    covered = counts > 0
    matrix[covered] /= counts[covered, None].astype(np.float32)
    return WordActivations(matrix, covered)


def word_members(pair_rows: np.ndarray, pair_units: np.ndarray, n_rows: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """The units a block of token rows touches and their membership [n_touched, n_rows] (from
    ``WordIndex.map_tokens``): ``sums[units] += member @ acts`` adds each token to every word it overlaps,
    ``counts[units] += diff(member.indptr)`` counts them. Shared by harvests on disk and in-memory rows."""
    uniq, inv = np.unique(pair_units, return_inverse=True)
    return uniq, sp.csr_matrix((np.ones(len(inv), np.float32), (inv, pair_rows)), shape=(len(uniq), n_rows))


@dataclass
class _Moments:
    """Second moments of the centred rows of X [n, p] and Y [n, q]: all CKA and SVCCA need."""

    n: int
    xty: np.ndarray  # [p, q] Xc^T Yc
    xtx: np.ndarray  # [p, p]
    yty: np.ndarray  # [q, q]
    a: np.ndarray  # [n] |xc_i|^2
    b: np.ndarray  # [n] |yc_i|^2


def _moments(x: np.ndarray, rows_x: np.ndarray, y: np.ndarray, rows_y: np.ndarray) -> _Moments:
    """Streamed over chunks of rows (two passes: means, then centred products) in float64."""
    n = len(rows_x)
    step = max(1, CHUNK_VALUES // (x.shape[1] + y.shape[1]))
    chunks = [(s, min(s + step, n)) for s in range(0, n, step)]
    mx, my = np.zeros(x.shape[1]), np.zeros(y.shape[1])
    for s, e in chunks:
        mx += x[rows_x[s:e]].sum(0, dtype=np.float64)
        my += y[rows_y[s:e]].sum(0, dtype=np.float64)
    mx, my = mx / max(n, 1), my / max(n, 1)
    xty, xtx, yty = np.zeros((x.shape[1], y.shape[1])), np.zeros((x.shape[1],) * 2), np.zeros((y.shape[1],) * 2)
    a, b = np.zeros(n), np.zeros(n)
    for s, e in chunks:
        xc, yc = x[rows_x[s:e]].astype(np.float64) - mx, y[rows_y[s:e]].astype(np.float64) - my
        xty += xc.T @ yc
        xtx += xc.T @ xc
        yty += yc.T @ yc
        a[s:e], b[s:e] = np.einsum("ij,ij->i", xc, xc), np.einsum("ij,ij->i", yc, yc)
    return _Moments(n, xty, xtx, yty, a, b)


def _all_rows(x: np.ndarray, y: np.ndarray) -> _Moments:
    if len(x) != len(y):
        raise ValueError(f"X and Y must have the same rows (units): {len(x)} vs {len(y)}")
    return _moments(x, np.arange(len(x)), y, np.arange(len(y)))


def _hsic(cross: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, debiased: bool) -> float:
    """HSIC of linear kernels on centred features, up to a factor common to numerator and denominator."""
    if not debiased:
        return float(np.sum(cross * cross))
    return float(np.sum(cross * cross) - n / (n - 2) * a.dot(b) + a.sum() * b.sum() / ((n - 1) * (n - 2)))


def _cka(m: _Moments, debiased: bool = True) -> float:
    if debiased and m.n < 4:
        return math.nan
    xy = _hsic(m.xty, m.a, m.b, m.n, debiased)
    xx, yy = _hsic(m.xtx, m.a, m.a, m.n, debiased), _hsic(m.yty, m.b, m.b, m.n, debiased)
    return xy / math.sqrt(xx * yy) if xx > 0 and yy > 0 else math.nan


def linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool = True) -> float:
    """Linear CKA of X [n, p] and Y [n, q] (rows: the same units), features centred.

    CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = Xc Xc^T, L = Yc Yc^T. Biased: HSIC = tr(KL) =
    ||Xc^T Yc||_F^2. Debiased (Song et al. 2012): with K~, L~ the kernels with zeroed diagonal,
    HSIC_u = [tr(K~L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)); for centred
    features K 1 = 0, so with a_i = |xc_i|^2, b_i = |yc_i|^2 this is
    [||Xc^T Yc||_F^2 - n/(n-2) a.b + (sum a)(sum b)/((n-1)(n-2))] / (n(n-3)) — no [n x n] matrix needed.
    The biased form is pulled up by dimension alone (high for independent data when p ~ n); the debiased
    one is ~0 there.
    """
    return _cka(_all_rows(x, y), debiased)


def _top_directions(cov: np.ndarray, variance: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Eigenvectors and eigenvalues of the directions holding ``variance`` of the total, largest first."""
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = np.clip(vals[::-1], 0.0, None), vecs[:, ::-1]
    total = vals.sum()
    if total <= 0:
        return vecs[:, :0], vals[:0], 0
    k = int(np.searchsorted(np.cumsum(vals) / total, variance * (1 - 1e-12))) + 1
    return vecs, vals, min(k, len(vals))


def _svcca(m: _Moments, variance: float = SVCCA_VARIANCE, tops: tuple | None = None) -> dict:
    """Mean canonical correlation between the top-variance subspaces, from the moments alone.

    With X' = Xc V_k (the top-k principal scores, covariance diag(lambda)) the whitened reduced side is
    X' diag(lambda)^-1/2, whose columns are orthonormal; the canonical correlations are the singular values
    of diag(lx)^-1/2 Vx^T (Xc^T Yc) Vy diag(ly)^-1/2 (cosines of the principal angles between the two
    subspaces of unit space). The mean is over min(kx, ky) correlations. ``tops``: each side's
    ``_top_directions``, when already computed.
    """
    cap = max(1, m.n // UNITS_PER_COMPONENT)
    vx, lx, kx99 = _top_directions(m.xtx, variance) if tops is None else tops[0]
    vy, ly, ky99 = _top_directions(m.yty, variance) if tops is None else tops[1]
    kx, ky = min(kx99, cap), min(ky99, cap)
    out = {"components_a": kx, "components_b": ky, "components_for_variance_a": kx99, "components_for_variance_b": ky99,
           "max_components": cap}
    if kx == 0 or ky == 0 or m.n < 2:
        return {"value": math.nan, **out}
    t = (vx[:, :kx] / np.sqrt(lx[:kx])).T @ m.xty @ (vy[:, :ky] / np.sqrt(ly[:ky]))
    rho = np.clip(np.linalg.svd(t, compute_uv=False), 0.0, 1.0)
    return {"value": float(rho.mean()), **out}


def svcca(x: np.ndarray, y: np.ndarray, variance: float = SVCCA_VARIANCE) -> dict:
    """SVCCA of X [n, p] and Y [n, q]: {"value": mean canonical correlation, components kept per side, ...}.

    Each side keeps the fewest principal directions holding ``variance`` of its variance, capped at
    n / UNITS_PER_COMPONENT (with kx + ky near n every canonical correlation tends to 1 whatever the data).
    """
    return _svcca(_all_rows(x, y), variance)


def _knn(z: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest rows by cosine. A ranking: float32 is exact enough, and torch's top-k is ~10x
    numpy's single-threaded argpartition over the [n x n] similarities (20 subsamples per pair)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
    t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-30)
    sim = t @ t.T
    sim.fill_diagonal_(-math.inf)  # a unit is not its own neighbour
    return sim.topk(k, dim=1, sorted=False).indices.numpy()


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean over units of |kNN_X(i) & kNN_Y(i)| / k, neighbours by cosine similarity among the given rows."""
    n = len(x)
    if len(y) != n:
        raise ValueError(f"X and Y must have the same rows (units): {n} vs {len(y)}")
    if n <= k:
        return math.nan
    return _mutual(_knn(x, k), _knn(y, k))


def _agreement(nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """[n] each row's share of agreed neighbours between two [n, k] neighbour lists of the same rows."""
    n, k = nx.shape
    hit = np.zeros((n, n), bool)
    hit[np.arange(n)[:, None], nx] = True
    return hit[np.arange(n)[:, None], ny].sum(axis=1) / k


def _mutual(nx: np.ndarray, ny: np.ndarray) -> float:
    """Mean share of agreed neighbours between two [n, k] neighbour lists of the same rows."""
    return float(_agreement(nx, ny).mean())


@dataclass
class _Layer:
    """One layer's centred rows and what every cell it is part of reuses."""

    zc: np.ndarray  # [n, d] float64, centred
    moments: np.ndarray  # [d, d] zc^T zc
    norms: np.ndarray  # [n] |zc_i|^2
    tops: tuple | None  # _top_directions (SVCCA)
    knn: np.ndarray | None  # [n_sub, k] neighbours among the subsample (mutual kNN)


def _layer(z: np.ndarray, metrics: tuple[str, ...], sub: np.ndarray, knn_k: int) -> _Layer:
    zc = z.astype(np.float64)
    zc -= zc.mean(0)
    moments = zc.T @ zc
    return _Layer(zc, moments, np.einsum("ij,ij->i", zc, zc),
                  _top_directions(moments, SVCCA_VARIANCE) if "svcca" in metrics else None,
                  _knn(z[sub], knn_k) if "mutual_knn" in metrics and len(sub) > knn_k else None)


def measure_grid(xs: list[np.ndarray], ys: list[np.ndarray], *, metrics: tuple[str, ...] = ("cka", "svcca", "mutual_knn"),
                 max_units: int = 4096, knn_k: int = 10, seed: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """Each metric for every pair (xs[i], ys[j]) of layers whose rows are the same units: {metric: [len(xs), len(ys)]}.

    The same measures as ``representation_baselines`` without its null: debiased CKA and SVCCA over every
    row, mutual kNN on one seeded subsample of at most ``max_units`` rows shared by all cells. Each
    layer's centring, second moments, principal directions and neighbour lists are computed once; a cell
    costs one cross product. Memory: the ys layers centred in float64, plus one xs layer.
    """
    n = len(xs[0])
    if any(len(z) != n for z in (*xs, *ys)):
        raise ValueError("every layer needs the same rows (units)")
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(n, max_units, replace=False)) if n > max_units else np.arange(n)
    out = {name: np.full((len(xs), len(ys)), np.nan) for name in metrics}
    right = [_layer(y, metrics, sub, knn_k) for y in ys]
    with progress_bar("sweep: layer pairs", len(xs) * len(ys), "cells", enabled=progress) as advance:
        for i, x in enumerate(xs):
            left = _layer(x, metrics, sub, knn_k)
            for j, r in enumerate(right):
                m = _Moments(n, left.zc.T @ r.zc, left.moments, r.moments, left.norms, r.norms)
                if "cka" in out:
                    out["cka"][i, j] = _cka(m)
                if "svcca" in out:
                    out["svcca"][i, j] = _svcca(m, tops=(left.tops, r.tops))["value"]
                if "mutual_knn" in out and left.knn is not None:
                    out["mutual_knn"][i, j] = _mutual(left.knn, r.knn)
                advance(1)
            del left
    return out


def _subsample(rows_a: np.ndarray, rows_b: np.ndarray, max_units: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if len(rows_a) <= max_units:
        return rows_a, rows_b
    pick = np.sort(rng.choice(len(rows_a), max_units, replace=False))
    return rows_a[pick], rows_b[pick]


class _Real(NamedTuple):
    """What the real alignment's measure computed and its intervals reuse."""

    moments: _Moments
    sub: np.ndarray  # the mutual-kNN subsample (unit ids)
    agreement: np.ndarray | None  # [len(sub)] each unit's share of agreed neighbours (None: too few units)


def _measure(xa, xb, rows_a, rows_b, rng, max_units: int, knn_k: int, keep: list | None = None) -> dict[str, dict]:
    m = _moments(xa, rows_a, xb, rows_b)
    sa, sb = _subsample(rows_a, rows_b, max_units, rng)
    agree = _agreement(_knn(xa[sa], knn_k), _knn(xb[sb], knn_k)) if len(sa) > knn_k else None
    if keep is not None:
        keep.append(_Real(m, sa, agree))
    return {"cka": {"value": _cka(m), "biased_value": _cka(m, debiased=False), "n_units": m.n},
            "svcca": {**_svcca(m), "n_units": m.n},
            "mutual_knn": {"value": float(agree.mean()) if agree is not None else math.nan, "n_units": len(sa), "k": knn_k,
                           "max_units": max_units}}


def _plain(v):
    """JSON-ready: numpy scalars to Python, NaN/inf to None."""
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    return v


def _with_null(real: dict, null: list[dict]) -> dict:
    value, samples = real["value"], np.array([s["value"] for s in null], np.float64)
    finite = samples[np.isfinite(samples)]
    mean = finite.mean() if len(finite) else math.nan
    sd = finite.std(ddof=1) if len(finite) > 1 else math.nan
    p = (1 + int((finite >= value).sum())) / (1 + len(finite)) if math.isfinite(value) and len(finite) else math.nan
    z = (value - mean) / sd if sd > 0 else math.nan
    out = {**real, "null_mean": mean, "null_sd": sd, "p_value": p, "z": z, "null": "document-derangement",
           "n_permutations": len(samples), "null_values": [_plain(s) for s in samples]}
    return {key: _plain(v) for key, v in out.items()}


def representation_baselines(xa: np.ndarray, xb: np.ndarray, doc_offsets: np.ndarray, *, covered_a: np.ndarray | None = None,
                             covered_b: np.ndarray | None = None, seed: int = 0, n_permutations: int = 5,
                             max_units: int = 4096, knn_k: int = 10, bootstrap: dict | None = None) -> dict[str, dict]:
    """CKA, SVCCA and mutual kNN of two models over the same units, each against its derangement null.

    ``xa`` [n_units, p] and ``xb`` [n_units, q] are indexed by global unit id (WordActivations.matrix, or
    document units with ``doc_offsets = arange(n_docs + 1)``); ``covered_*`` mark the units each side
    observed (default: all). The real alignment is every unit both cover; each permutation pairs word i of
    document d (A) with word i of document perm[d] (B). CKA and SVCCA use all pairs, mutual kNN a seeded
    subsample of at most ``max_units``. Returns {"cka" | "svcca" | "mutual_knn": {"value", "null_mean",
    "null_sd", "p_value" = (1 + #null >= value) / (1 + n_permutations), "z", extras}}, plain JSON values.
    """
    doc_offsets = np.asarray(doc_offsets, np.int64)
    n_units = int(doc_offsets[-1])
    if xa.shape[0] != n_units or xb.shape[0] != n_units:
        raise ValueError(f"xa and xb need one row per unit ({n_units}); got {xa.shape[0]} and {xb.shape[0]}")
    if len(doc_offsets) < 3:
        raise ValueError("the derangement null needs at least two documents")
    covered_a = np.ones(n_units, bool) if covered_a is None else np.asarray(covered_a, bool)
    covered_b = np.ones(n_units, bool) if covered_b is None else np.asarray(covered_b, bool)
    rng, kept = np.random.default_rng(seed), []
    real = _measure(xa, xb, *aligned_pairs(covered_a, covered_b), rng, max_units, knn_k, keep=kept)
    null = []
    for _ in range(n_permutations):
        perm = derangement(len(doc_offsets) - 1, rng)
        null.append(_measure(xa, xb, *null_pairs(doc_offsets, covered_a, covered_b, perm), rng, max_units, knn_k))
    out = {name: _with_null(real[name], [s[name] for s in null]) for name in real}
    if bootstrap:
        started = time.perf_counter()
        out["intervals"] = _intervals(xa, xb, doc_offsets, covered_a & covered_b, kept[0], seed=seed, **bootstrap)
        out["intervals"]["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _intervals(xa: np.ndarray, xb: np.ndarray, doc_offsets: np.ndarray, covered: np.ndarray, real: _Real, *, seed: int,
               n_replicates: int, svcca_replicates_n: int, max_blocks: int) -> dict:
    """Document-bootstrap 95% intervals of the three measures on the real alignment's rows and mutual-kNN
    subsample ({"cka" | "svcca" | "mutual_knn": {"ci", "n_replicates"}, "n_blocks"}); what each replicate holds
    fixed: ``compare.bootstrap``."""
    rows = np.flatnonzero(covered)
    doc_of_unit = np.repeat(np.arange(len(doc_offsets) - 1), np.diff(np.asarray(doc_offsets, np.int64)))
    groups = document_blocks(doc_of_unit[rows], max_blocks)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < 2:
        return {}
    weights = block_weights(n_groups, n_replicates, seed)
    x, y = xa[rows], xb[rows]
    out: dict[str, dict] = {"n_blocks": n_groups}
    # a resampled block's duplicated rows are off-diagonal copies the debiased HSIC does not remove: the replicates
    # sit above the estimate by that artefact, so they are median-centred on it (as SVCCA's below)
    cka = cka_blocks(x, y, groups, n_groups).cka(np.vstack([np.ones(n_groups), weights]))
    out["cka"] = {"ci": percentile_interval(cka[1:], centre=cka[0]), "n_replicates": n_replicates, "centred": True}
    m = real.moments
    (vx, _, kx), (vy, _, ky) = _top_directions(m.xtx, SVCCA_VARIANCE), _top_directions(m.yty, SVCCA_VARIANCE)
    cap = max(1, m.n // UNITS_PER_COMPONENT)
    kx, ky = min(kx, cap), min(ky, cap)
    if kx and ky and svcca_replicates_n:
        # CCA on duplicated blocks overfits (fewer distinct units): the replicates sit above the estimate by
        # that artefact alone, so they are centred on it (median shift) before the percentiles are read
        reps = svcca_replicates(x, y, groups, np.vstack([np.ones(n_groups), weights[:svcca_replicates_n]]), vx[:, :kx], vy[:, :ky])
        out["svcca"] = {"ci": percentile_interval(reps[1:], centre=reps[0]), "n_replicates": svcca_replicates_n, "centred": True}
    if real.agreement is not None:
        sub_groups = document_blocks(doc_of_unit[real.sub], max_blocks)
        sub_weights = block_weights(int(sub_groups.max()) + 1, n_replicates, seed)
        out["mutual_knn"] = {"ci": percentile_interval(mean_replicates(real.agreement, sub_groups, sub_weights)), "n_replicates": n_replicates}
    return out
