"""Pearson correlation of every (feature of A, feature of B) pair over aligned units, by streaming sums.

corr_ij = (n S_ij - S_i S_j) / sqrt((n Q_i - S_i^2)(n Q_j - S_j^2)) with S_i = sum_u a_ui, Q_i = sum_u a_ui^2
and the cross products S_ij = sum_u a_ui b_uj. Only S_ij is a matrix: it is accumulated chunk by chunk
as the sparse product A_chunk^T B_chunk (cost: sum over units of nnz_a(u) * nnz_b(u), i.e. ~k_a * k_b per
unit instead of d_a * d_b), scattered into one dense float64 [d_a, d_b] accumulator. Chunks are cut so
each sparse product holds at most ``max_products`` terms, which bounds the transient memory whatever
the dictionary sizes. Neither model's [units x features] matrix is ever dense.

Both CPU cores work: each chunk's product is split by rows of A^T (features of A) into one slice per
thread, balanced by their exact term counts; scipy's sparse product and numpy's adds release the GIL, and
the slices write disjoint rows of the accumulator, so the result is bit-for-bit the single-thread one.
A row slice whose product is dense enough is added as a dense block (a streaming add) instead of being
scattered (random access, ~50x slower per element). On a GPU the pass is instead blocked dense products
(``autointerp.compare.dense_moments``): ``correlate(device="auto")`` picks it when CUDA is present.

A feature with zero variance over the aligned units (never fires there, or fires identically everywhere)
has no correlation: it is *dead* for the comparison, its row/column is NaN and matching excludes it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from autointerp.progress import progress_bar

MAX_PRODUCTS = 1 << 25  # ~32M terms per sparse product (~400 MB transient)
DENSE_ADD_DENSITY = 1 / 32  # a product slice at least this dense is added as a dense block, not scattered
DENSE_ADD_ROWS = 256  # rows per dense block (bounds its transient to 256 x d_b float64)
METHODS = ("auto", "sparse", "dense")


def cpu_threads() -> int:
    """Cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Correlation:
    corr: np.ndarray  # [d_a, d_b] float32, NaN where a feature is dead
    n_units: int
    dead_a: np.ndarray  # [d_a] bool
    dead_b: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.corr.shape

    def pair_values(self, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        """corr of each (fa, fb) pair, float64 (the sparse ``CandidateCorrelation`` answers the same call)."""
        return self.corr[fa, fb].astype(np.float64)


def _chunks(weights: np.ndarray, budget: int, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges whose summed weight stays under ``budget`` (at least one row each)."""
    bounds, start, n = [], 0, len(weights)
    cum = np.concatenate([[0], np.cumsum(weights, dtype=np.int64)])
    while start < n:
        stop = int(np.searchsorted(cum, cum[start] + budget, side="right")) - 1
        stop = min(max(stop, start + 1), start + max_rows, n)
        bounds.append((start, stop))
        start = stop
    return bounds


def _scatter_add(acc: np.ndarray, product: sp.spmatrix) -> None:
    coo = product.tocoo()
    flat = acc.reshape(-1)
    flat[coo.row.astype(np.int64) * acc.shape[1] + coo.col] += coo.data  # indices are unique in a CSR product


def _accumulate(acc: np.ndarray, product: sp.csr_matrix) -> None:
    """acc += product: dense blocks where the product is dense enough, else a scatter of its entries.
    Each accumulator entry receives the same single float64 addition either way (x + 0.0 == x)."""
    if product.nnz < DENSE_ADD_DENSITY * product.shape[0] * product.shape[1]:
        _scatter_add(acc, product)
        return
    for i in range(0, product.shape[0], DENSE_ADD_ROWS):
        block = product[i : i + DENSE_ADD_ROWS]
        acc[i : i + block.shape[0]] += block.toarray()


def _row_slices(cost: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split rows into at most ``parts`` consecutive slices of about equal summed cost."""
    if parts <= 1 or len(cost) < 2:
        return [(0, len(cost))]
    cum = np.cumsum(cost, dtype=np.float64)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts, side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [len(cost)]]))
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _product_into(acc: np.ndarray, at: sp.csr_matrix, b: sp.csr_matrix, lo: int, hi: int) -> None:
    """acc[lo:hi] += (A^T)[lo:hi] @ B for one thread's rows of A^T."""
    _accumulate(acc[lo:hi], at[lo:hi] @ b)


def cross_moments(a: sp.csr_matrix, b: sp.csr_matrix, rows_a: np.ndarray, rows_b: np.ndarray, *,
                  max_products: int = MAX_PRODUCTS, max_rows: int = 65_536, progress: bool = True,
                  label: str = "correlate", threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sum_a, sumsq_a, sum_b, sumsq_b, cross) over the unit pairs (rows_a[i], rows_b[i]); the sparse
    products run on ``threads`` threads (default: every core this process may use)."""
    if len(rows_a) != len(rows_b):
        raise ValueError("rows_a and rows_b must pair units one to one")
    a, b = a.tocsr(), b.tocsr()
    cost = np.diff(a.indptr)[rows_a].astype(np.int64) * np.diff(b.indptr)[rows_b]
    cross = np.zeros((a.shape[1], b.shape[1]), dtype=np.float64)
    s_a, q_a = np.zeros(a.shape[1]), np.zeros(a.shape[1])
    s_b, q_b = np.zeros(b.shape[1]), np.zeros(b.shape[1])
    chunks = _chunks(cost, max_products, max_rows)
    n_threads = max(1, threads or cpu_threads())
    with progress_bar(f"compare: {label}", len(rows_a), "units", enabled=progress) as advance, \
            ThreadPoolExecutor(max_workers=n_threads) as pool:
        for start, stop in chunks:
            ca, cb = a[rows_a[start:stop]], b[rows_b[start:stop]]
            at = ca.T.tocsr()
            # exact terms per row of A^T: sum over its units of nnz_b(unit)
            row_cost = at @ np.diff(cb.indptr).astype(np.float64) if n_threads > 1 else np.ones(at.shape[0])
            futures = [pool.submit(_product_into, cross, at, cb, lo, hi) for lo, hi in _row_slices(row_cost, n_threads)]
            for chunk, s, q in ((ca, s_a, q_a), (cb, s_b, q_b)):  # meanwhile, on this thread
                data = chunk.data.astype(np.float64)
                s += np.bincount(chunk.indices, weights=data, minlength=len(s))
                q += np.bincount(chunk.indices, weights=data * data, minlength=len(q))
            for future in futures:
                future.result()
            advance(stop - start)
    return s_a, q_a, s_b, q_b, cross


def feature_spread(n: int, s: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(standard deviation, NaN where dead; dead) per feature from its float64 sum and sum of squares."""
    mean = s / max(n, 1)
    var = np.maximum(q / max(n, 1) - mean**2, 0.0)
    # relative floor: a variance this small against its mean square is rounding, not signal
    dead = var <= 1e-12 * np.maximum(q / max(n, 1), 1e-30)
    return np.where(dead, np.nan, np.sqrt(var)), dead


def pearson_from_moments(n: int, s_a, q_a, s_b, q_b, cross: np.ndarray, block: int = 1024) -> Correlation:
    """Turn the sums into correlations in place, block by block (no [d_a, d_b] temporaries)."""
    mean_a, mean_b = s_a / max(n, 1), s_b / max(n, 1)
    std_a, dead_a = feature_spread(n, s_a, q_a)
    std_b, dead_b = feature_spread(n, s_b, q_b)
    corr = np.empty(cross.shape, dtype=np.float32)
    for i in range(0, cross.shape[0], block):
        sl = slice(i, i + block)
        cov = cross[sl] / max(n, 1) - np.outer(mean_a[sl], mean_b)
        corr[sl] = np.clip(cov / np.outer(std_a[sl], std_b), -1.0, 1.0)
    return Correlation(corr, n, dead_a, dead_b)


def resolve_method(method: str = "auto", device: str = "auto") -> tuple[str, str]:
    """(method, device): ``auto`` is the dense pass on CUDA when present, else the sparse pass on the CPU."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    if device == "auto":
        import torch

        device = "cuda" if method != "sparse" and torch.cuda.is_available() else "cpu"
    if method == "auto":
        method = "sparse" if device == "cpu" else "dense"
    if method == "sparse" and device != "cpu":
        raise ValueError("the sparse correlation pass runs on the CPU; use method='dense' on a GPU")
    return method, device


def correlate(a: sp.csr_matrix, b: sp.csr_matrix, rows_a: np.ndarray, rows_b: np.ndarray, *, method: str = "auto",
              device: str = "auto", precision: str = "tf32", **kwargs) -> Correlation:
    """Pearson correlation matrix between the columns of ``a[rows_a]`` and ``b[rows_b]`` (paired rows).

    ``method="sparse"``: the streaming sparse pass on the CPU threads (``threads``, ``max_products``,
    ``max_rows``); ``"dense"``: blocked dense products on ``device`` at ``precision`` (fp32 / tf32 / bf16);
    ``"auto"``: dense on CUDA when present, else sparse.
    """
    method, device = resolve_method(method, device)
    if method == "dense":
        from autointerp.compare.dense_moments import dense_covariance, pearson_from_covariance

        dense_kwargs = {k: v for k, v in kwargs.items() if k in ("chunk_rows", "progress", "label")}
        s_a, q_a, s_b, q_b, cov = dense_covariance(a, b, rows_a, rows_b, device=device, precision=precision, **dense_kwargs)
        (std_a, dead_a), (std_b, dead_b) = feature_spread(len(rows_a), s_a, q_a), feature_spread(len(rows_b), s_b, q_b)
        return Correlation(pearson_from_covariance(len(rows_a), cov, std_a, std_b), len(rows_a), dead_a, dead_b)
    kwargs.pop("chunk_rows", None)
    s_a, q_a, s_b, q_b, cross = cross_moments(a, b, rows_a, rows_b, **kwargs)
    return pearson_from_moments(len(rows_a), s_a, q_a, s_b, q_b, cross)
