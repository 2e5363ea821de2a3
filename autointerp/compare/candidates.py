"""Each feature's best partners on the other side, from the sparse cross-product: matching at pretrained widths.

The dense pass (``compare.correlation``) fills a float64 [d_a, d_b] matrix; at Gemma Scope / Llama Scope widths
(65,536 x 131,072) that is 64 GiB per copy. Here the same Pearson correlations are computed only where they can
matter and only the best are kept:

* SAE codes are non-negative, so corr_ij = (S_ij / n - m_i m_j) / (s_i s_j) with S_ij = 0 (the two features never
  fire on the same unit) is <= 0. A positive correlation needs co-firing, and the co-firing pairs are exactly
  the stored entries of the sparse product A^T B: nothing positive is missed by skipping the rest.
* The product is formed in blocks of A's features (rows of A^T), each block cut so its product holds at most
  ``block_entries`` entries: the transient is O(block x d_b) whatever the widths. Each entry becomes a
  correlation from the per-feature moments (float64, as the dense pass) and is dropped unless positive.
* Every live feature keeps its ``k`` most correlated partners: per row of A within the block, per column of B
  by a running top-k merged block after block. Keeping both sides' lists matters: a B feature whose best A
  partner prefers others is still in the graph. The union of those pairs is the candidate graph the
  one-to-one assignment runs on (``compare.sparse_assignment``); memory O((d_a + d_b) x k). Each feature's k-th
  best (``row_floor`` / ``col_floor``) bounds every pair left out, which lets ``compare.sparse_matching`` prove
  the assignment optimal over all pairs, or compute the few pairs that could change it (``PartnerScan.pairs_of``).

A live feature left without any candidate (no positive correlation with a live feature of the other side)
cannot be matched; it is counted (``no_candidate_a`` / ``_b``). Features outside ``valid_a`` / ``valid_b`` (rare
ones) and dead ones (zero variance) get no candidates, as the dense matching leaves them out.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from autointerp.compare.correlation import _chunks, cpu_threads, feature_spread
from autointerp.progress import progress_bar

DEFAULT_K = 32
BLOCK_ENTRIES = 1 << 22  # product entries per block: ~4M x ~60 B of transients per thread


@dataclass
class CandidateCorrelation:
    """The candidate pairs' correlations (the sparse stand-in for ``Correlation``'s dense matrix)."""

    rows: np.ndarray  # [m] int64 feature of A, sorted by (row, col)
    cols: np.ndarray  # [m] int64 feature of B
    values: np.ndarray  # [m] float32 Pearson correlation (> 0)
    n_units: int
    dead_a: np.ndarray  # [d_a] bool: zero variance over the aligned units
    dead_b: np.ndarray
    k: int  # partners kept per feature and side
    row_floor: np.ndarray | None = None  # [d_a] float32: the k-th best partner's corr where a feature of A had k or more, else 0
    col_floor: np.ndarray | None = None  # [d_b] the same for B: a pair outside the candidates has corr <= both floors
    check: dict | None = None  # the exact check's record (compare.sparse_matching): rounds, pairs checked and added

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.dead_a), len(self.dead_b)

    def pair_values(self, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        """corr of each (fa, fb) pair; NaN where the pair is not a candidate (not among either feature's top k)."""
        d_b = self.shape[1]
        keys = self.rows * d_b + self.cols
        want = np.asarray(fa, np.int64) * d_b + np.asarray(fb, np.int64)
        pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        out = np.full(len(want), np.nan)
        if len(keys):
            hit = keys[pos] == want
            out[hit] = self.values[pos[hit]]
        return out

    def with_pairs(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> CandidateCorrelation:
        """A copy holding these extra pairs too (the exact check's additions, ``compare.sparse_matching``)."""
        d_b = self.shape[1]
        keys, first = np.unique(np.r_[self.rows * d_b + self.cols, rows * d_b + cols], return_index=True)
        vals = np.r_[self.values, values.astype(np.float32)][first]
        return CandidateCorrelation(keys // d_b, keys % d_b, vals, self.n_units, self.dead_a, self.dead_b, self.k, self.row_floor,
                                    self.col_floor)

    def no_candidate(self, valid_a: np.ndarray, valid_b: np.ndarray) -> tuple[int, int]:
        """Live features (valid, not dead) without any candidate partner, per side."""
        has_a, has_b = np.zeros(self.shape[0], bool), np.zeros(self.shape[1], bool)
        has_a[self.rows], has_b[self.cols] = True, True
        return int((valid_a & ~self.dead_a & ~has_a).sum()), int((valid_b & ~self.dead_b & ~has_b).sum())


def _moments(m: sp.csr_matrix, d: int) -> tuple[np.ndarray, np.ndarray]:
    data = m.data.astype(np.float64)
    return np.bincount(m.indices, weights=data, minlength=d), np.bincount(m.indices, weights=data * data, minlength=d)


def _top_k_sorted(group: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``values`` within each ``group`` (one stable sort on a composite key:
    group x 4 + (1 - value) orders groups, then values descending, as values lie in [-1, 1])."""
    if not len(group):
        return np.zeros(0, np.int64)
    order = np.argsort(group.astype(np.float64) * 4.0 + (1.0 - values.astype(np.float64)), kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    return order[rank < k]


def _top_k_runs(counts: np.ndarray, values: np.ndarray, k: int, cells: int = 1 << 22) -> np.ndarray:
    """Indices of the ``k`` largest ``values`` within each consecutive run (run lengths ``counts``).

    Sorting every entry is the cost here, so each run longer than k is first cut at a lower bound of its k-th
    largest value: the k-th largest of an evenly strided sample of the run (a subset's k-th largest never
    exceeds the whole run's), found with one ``np.partition`` over a padded [runs, width] array of at most
    about ``cells`` entries. Only the entries at or above it are sorted: ~k x run / width per run."""
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    floor = np.full(len(counts), -np.inf, np.float32)
    big = np.flatnonzero(counts > k)
    if len(big):
        width = int(min(counts[big].max(), max(2 * k, cells // len(big))))
        n, m = counts[big].astype(np.int64)[:, None], np.minimum(counts[big], width).astype(np.int64)[:, None]
        j = np.arange(width, dtype=np.int64)[None, :]
        sample = values[np.minimum(starts[big, None] + (j * n) // m, len(values) - 1)]
        sample[j >= m] = -np.inf
        floor[big] = np.partition(sample, width - k, axis=1)[:, width - k]
    group = np.repeat(np.arange(len(counts)), counts)
    keep = np.flatnonzero(values >= floor[group])
    return keep[_top_k_sorted(group[keep], values[keep], k)]


class _ColumnTopK:
    """Running top-k rows per column of B over the blocks (vals 0 = empty slot: only positive pairs compete; the
    slots of a column are not ordered)."""

    def __init__(self, d_b: int, k: int):
        self.k = k
        self.vals = np.zeros((d_b, k), np.float32)
        self.rows = np.full((d_b, k), -1, np.int64)
        self.floor = np.zeros(d_b, np.float32)  # the k-th best so far (0 until k are found): no entry at or below it enters

    def merge(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """The new entries' top k per column (one sort of the new entries only), then per touched column the top
        k of its [k old | k new] slots (one ``argpartition`` along rows): the kept lists are never re-sorted."""
        keep = vals > self.floor[cols]
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        if not len(cols):
            return
        best = _top_k_sorted(cols, vals, self.k)  # grouped by column, ascending
        c = cols[best]
        touched, first = np.unique(c, return_index=True)
        slot = np.arange(len(c)) - np.repeat(first, np.diff(np.r_[first, len(c)]))
        at = np.searchsorted(touched, c)
        both_v = np.concatenate([self.vals[touched], np.zeros((len(touched), self.k), np.float32)], axis=1)
        both_r = np.concatenate([self.rows[touched], np.full((len(touched), self.k), -1, np.int64)], axis=1)
        both_v[at, self.k + slot], both_r[at, self.k + slot] = vals[best], rows[best]
        pick = np.argpartition(-both_v, self.k - 1, axis=1)[:, : self.k]
        kept_v = np.take_along_axis(both_v, pick, axis=1)
        self.vals[touched], self.rows[touched] = kept_v, np.take_along_axis(both_r, pick, axis=1)
        self.floor[touched] = np.where((kept_v > 0).all(axis=1), kept_v.min(axis=1), 0.0)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, slot = np.nonzero(self.rows >= 0)
        return self.rows[c, slot], c.astype(np.int64), self.vals[c, slot]


def _positive(prod: sp.csr_matrix, lo: int, n: int, mean_a, std_a, mean_b, std_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A feature, B feature, corr) of the positive correlations among a product block's entries (rows lo..)."""
    per_row = np.diff(prod.indptr)
    hi = lo + len(per_row)
    rows, cols = np.repeat(np.arange(lo, hi, dtype=np.int32), per_row), prod.indices
    # corr = (S / n - m_a m_b) / (s_a s_b) = S u_a v_b - z_a w_b: row factors repeated (a stream), column ones gathered
    r = prod.data * np.repeat(1.0 / (n * std_a[lo:hi]), per_row)
    r *= (1.0 / std_b)[cols]
    r -= np.repeat(mean_a[lo:hi] / std_a[lo:hi], per_row) * (mean_b / std_b)[cols]
    pos = r > 0  # only positive correlations can be partners
    return rows[pos].astype(np.int64), cols[pos].astype(np.int64), np.minimum(r[pos], 1.0).astype(np.float32)


def _block(scan: PartnerScan, lo: int, hi: int, k: int, floor: np.ndarray):
    """One block of A features: its co-firing products -> positive correlations -> the block's per-row top k (and
    each row's k-th best) and the entries that may enter a column's top k (above that column's floor as last seen)."""
    rows, cols, r = _positive(scan.at[lo:hi] @ scan.cb, lo, scan.n, *scan.moments)
    counts = np.bincount(rows - lo, minlength=hi - lo)
    best = _top_k_runs(counts, r, k)  # rows are grouped (CSR order)
    row_floor = np.zeros(hi - lo, np.float32)  # the k-th best where a row has k positive partners: bounds the rest
    kth = np.full(hi - lo, np.inf, np.float32)
    np.minimum.at(kth, rows[best] - lo, r[best])
    full = counts >= k
    row_floor[full] = kth[full]
    col_keep = r > floor[cols]
    return (rows[best], cols[best], r[best], row_floor), (rows[col_keep], cols[col_keep], r[col_keep])


class PartnerScan:
    """The paired activations prepared for products (float64 copies: A^T by feature, B by unit, live features
    only) and the per-feature moments: the top-k pass (``top_k``) and exact rows on demand (``rows_of``)."""

    def __init__(self, a: sp.csr_matrix, b: sp.csr_matrix, rows_a: np.ndarray, rows_b: np.ndarray,
                 valid_a: np.ndarray | None = None, valid_b: np.ndarray | None = None):
        if len(rows_a) != len(rows_b):
            raise ValueError("rows_a and rows_b must pair units one to one")
        self.d_a, self.d_b, self.n = a.shape[1], b.shape[1], len(rows_a)
        ca, cb = a.tocsr()[rows_a].astype(np.float64), b.tocsr()[rows_b].astype(np.float64)
        (s_a, q_a), (s_b, q_b) = _moments(ca, self.d_a), _moments(cb, self.d_b)
        (std_a, self.dead_a), (std_b, self.dead_b) = feature_spread(self.n, s_a, q_a), feature_spread(self.n, s_b, q_b)
        mean_a, mean_b = s_a / max(self.n, 1), s_b / max(self.n, 1)
        self.ia = np.flatnonzero(~self.dead_a & (valid_a if valid_a is not None else True))
        self.ib = np.flatnonzero(~self.dead_b & (valid_b if valid_b is not None else True))
        self.at = ca.T.tocsr()[self.ia]  # live A features x units
        self.cb = cb[:, self.ib].tocsr()  # units x live B features
        self.moments = (mean_a[self.ia], std_a[self.ia], mean_b[self.ib], std_b[self.ib])

    def pairs_of(self, features_a: np.ndarray, features_b: np.ndarray, keep=None,
                 block_entries: int = BLOCK_ENTRIES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The positive correlations between these A features and these B features (ids; dead or invalid ones have
        none): exact, no top k, in blocks of at most ``block_entries`` product entries, each block filtered by
        ``keep(a_ids, b_ids, corr) -> mask or indices`` when given (so only what passes is ever held; a block holds
        whole rows, so ``keep`` may select per row)."""
        la, lb = np.flatnonzero(np.isin(self.ia, features_a)), np.flatnonzero(np.isin(self.ib, features_b))
        cb = self.cb[:, lb].tocsr()
        step = max(1, block_entries // max(len(lb), 1))
        mean_a, std_a, mean_b, std_b = self.moments
        parts = [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))]
        for lo in range(0, len(la), step):
            idx = la[lo: lo + step]
            r, c, v = _positive(self.at[idx] @ cb, 0, self.n, mean_a[idx], std_a[idx], mean_b[lb], std_b[lb])
            r, c = self.ia[idx[r]], self.ib[lb[c]]
            mask = keep(r, c, v) if keep is not None else slice(None)
            parts.append((r[mask], c[mask], v[mask]))
        return tuple(np.concatenate(x) for x in zip(*parts))

    def top_k(self, k: int = DEFAULT_K, *, block_entries: int = BLOCK_ENTRIES, threads: int | None = None, progress: bool = True,
              label: str = "candidates") -> CandidateCorrelation:
        """Each live feature's ``k`` best positive partners, both sides (see the module docstring)."""
        empty = np.zeros(0, np.int64)
        if not len(self.ia) or not len(self.ib):
            return CandidateCorrelation(empty, empty, np.zeros(0, np.float32), self.n, self.dead_a, self.dead_b, k,
                                        np.zeros(self.d_a, np.float32), np.zeros(self.d_b, np.float32))
        # exact products per A feature bound its product row's entries (never more than the live B width)
        row_cost = np.minimum(self.at @ np.diff(self.cb.indptr).astype(np.float64), len(self.ib)).astype(np.int64)
        n_threads = max(1, threads or cpu_threads())
        # at least 4 blocks per thread, so that both cores work and the last block does not run alone
        blocks = _chunks(row_cost, max(1, min(block_entries, -(-int(row_cost.sum()) // (4 * n_threads)))), len(self.ia))
        columns = _ColumnTopK(len(self.ib), k)
        row_parts, buffered, n_buffered = [], [], 0
        with progress_bar(f"compare: {label}", len(self.ia), "features", enabled=progress) as advance, \
                ThreadPoolExecutor(max_workers=n_threads) as pool:
            pending = []
            for i, (lo, hi) in enumerate(blocks):
                pending.append((lo, hi, pool.submit(_block, self, lo, hi, k, columns.floor)))
                last = i == len(blocks) - 1
                while pending and (len(pending) > n_threads or last):  # results taken in block order: deterministic
                    b_lo, b_hi, fut = pending.pop(0)
                    best, col_part = fut.result()
                    row_parts.append(best)
                    # re-filtered here against the floors as of the last merge (a worker may have seen older, lower
                    # ones), so what is buffered, when merges happen and the result do not depend on thread timing;
                    # merged once as many entries wait as the lists hold (each merge touches up to d_b x 2k slots)
                    passing = col_part[2] > columns.floor[col_part[1]]
                    buffered.append(tuple(x[passing] for x in col_part))
                    n_buffered += int(passing.sum())
                    if n_buffered >= columns.vals.size or (last and not pending):
                        columns.merge(*(np.concatenate(part) for part in zip(*buffered)))
                        buffered, n_buffered = [], 0
                    advance(b_hi - b_lo)
        col_rows, col_cols, col_vals = columns.pairs()
        rows = np.concatenate([p[0] for p in row_parts] + [col_rows])
        cols = np.concatenate([p[1] for p in row_parts] + [col_cols])
        vals = np.concatenate([p[2] for p in row_parts] + [col_vals])
        keys, first = np.unique(self.ia[rows] * self.d_b + self.ib[cols], return_index=True)
        row_floor, col_floor = np.zeros(self.d_a, np.float32), np.zeros(self.d_b, np.float32)
        row_floor[self.ia], col_floor[self.ib] = np.concatenate([p[3] for p in row_parts]), columns.floor
        return CandidateCorrelation(keys // self.d_b, keys % self.d_b, vals[first], self.n, self.dead_a, self.dead_b, k, row_floor, col_floor)


def candidate_correlations(a: sp.csr_matrix, b: sp.csr_matrix, rows_a: np.ndarray, rows_b: np.ndarray, *, k: int = DEFAULT_K,
                           valid_a: np.ndarray | None = None, valid_b: np.ndarray | None = None, **kwargs) -> CandidateCorrelation:
    """Top-``k`` positively correlated partners of every valid live feature of ``a[rows_a]`` among those of
    ``b[rows_b]`` (paired rows) and vice versa, without a dense [d_a, d_b] matrix (``PartnerScan.top_k``)."""
    return PartnerScan(a, b, rows_a, rows_b, valid_a, valid_b).top_k(k, **kwargs)
