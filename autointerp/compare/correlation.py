"""Pearson correlation of every (feature of A, feature of B) pair over aligned units, by streaming sums.

corr_ij = (n S_ij - S_i S_j) / sqrt((n Q_i - S_i^2)(n Q_j - S_j^2)) with S_i = sum_u a_ui, Q_i = sum_u a_ui^2
and the cross products S_ij = sum_u a_ui b_uj. Only S_ij is a matrix: it is accumulated chunk by chunk
as the sparse product A_chunk^T B_chunk (cost: sum over units of nnz_a(u) * nnz_b(u), i.e. ~k_a * k_b per
unit instead of d_a * d_b), scattered into one dense float64 [d_a, d_b] accumulator. Chunks are cut so
each sparse product holds at most ``max_products`` terms, which bounds the transient memory whatever
the dictionary sizes. Neither model's [units x features] matrix is ever dense.

A feature with zero variance over the aligned units (never fires there, or fires identically everywhere)
has no correlation: it is *dead* for the comparison, its row/column is NaN and matching excludes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from autointerp.progress import progress_bar

MAX_PRODUCTS = 1 << 25  # ~32M terms per sparse product (~400 MB transient)


@dataclass
class Correlation:
    corr: np.ndarray  # [d_a, d_b] float32, NaN where a feature is dead
    n_units: int
    dead_a: np.ndarray  # [d_a] bool
    dead_b: np.ndarray


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


def cross_moments(a: sp.csr_matrix, b: sp.csr_matrix, rows_a: np.ndarray, rows_b: np.ndarray, *,
                  max_products: int = MAX_PRODUCTS, max_rows: int = 65_536, progress: bool = True,
                  label: str = "correlate") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sum_a, sumsq_a, sum_b, sumsq_b, cross) over the unit pairs (rows_a[i], rows_b[i])."""
    if len(rows_a) != len(rows_b):
        raise ValueError("rows_a and rows_b must pair units one to one")
    a, b = a.tocsr(), b.tocsr()
    cost = np.diff(a.indptr)[rows_a].astype(np.int64) * np.diff(b.indptr)[rows_b]
    cross = np.zeros((a.shape[1], b.shape[1]), dtype=np.float64)
    s_a, q_a = np.zeros(a.shape[1]), np.zeros(a.shape[1])
    s_b, q_b = np.zeros(b.shape[1]), np.zeros(b.shape[1])
    chunks = _chunks(cost, max_products, max_rows)
    with progress_bar(f"compare: {label}", len(rows_a), "units", enabled=progress) as advance:
        for start, stop in chunks:
            ca, cb = a[rows_a[start:stop]], b[rows_b[start:stop]]
            for chunk, s, q in ((ca, s_a, q_a), (cb, s_b, q_b)):
                data = chunk.data.astype(np.float64)
                s += np.bincount(chunk.indices, weights=data, minlength=len(s))
                q += np.bincount(chunk.indices, weights=data * data, minlength=len(q))
            _scatter_add(cross, ca.T.tocsr() @ cb)
            advance(stop - start)
    return s_a, q_a, s_b, q_b, cross


def pearson_from_moments(n: int, s_a, q_a, s_b, q_b, cross: np.ndarray, block: int = 1024) -> Correlation:
    """Turn the sums into correlations in place, block by block (no [d_a, d_b] temporaries)."""
    mean_a, mean_b = s_a / max(n, 1), s_b / max(n, 1)
    var_a = np.maximum(q_a / max(n, 1) - mean_a**2, 0.0)
    var_b = np.maximum(q_b / max(n, 1) - mean_b**2, 0.0)
    # relative floor: a variance this small against its mean square is rounding, not signal
    dead_a = var_a <= 1e-12 * np.maximum(q_a / max(n, 1), 1e-30)
    dead_b = var_b <= 1e-12 * np.maximum(q_b / max(n, 1), 1e-30)
    std_a = np.where(dead_a, np.nan, np.sqrt(var_a))
    std_b = np.where(dead_b, np.nan, np.sqrt(var_b))
    corr = np.empty(cross.shape, dtype=np.float32)
    for i in range(0, cross.shape[0], block):
        sl = slice(i, i + block)
        cov = cross[sl] / max(n, 1) - np.outer(mean_a[sl], mean_b)
        corr[sl] = np.clip(cov / np.outer(std_a[sl], std_b), -1.0, 1.0)
    return Correlation(corr, n, dead_a, dead_b)


def correlate(a: sp.csr_matrix, b: sp.csr_matrix, rows_a: np.ndarray, rows_b: np.ndarray, **kwargs) -> Correlation:
    """Pearson correlation matrix between the columns of ``a[rows_a]`` and ``b[rows_b]`` (paired rows)."""
    s_a, q_a, s_b, q_b, cross = cross_moments(a, b, rows_a, rows_b, **kwargs)
    return pearson_from_moments(len(rows_a), s_a, q_a, s_b, q_b, cross)
