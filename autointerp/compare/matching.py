"""One-to-one matching (Hungarian) and its null: which matched correlations beat chance.

The assignment maximises the summed similarity over a rectangular matrix (``linear_sum_assignment``
handles d_a != d_b: min(d_a, d_b) pairs). Rows/columns that are undefined (dead features, features
without a label) are removed first and the indices mapped back.

Significance: the same correlation + assignment is run on deliberately misaligned units (documents
deranged between the models). Every matched correlation there is chance, and chance after picking the
best partner — exactly what a real matched pair has to beat. The threshold is the (1 - alpha) quantile
of the null's matched correlations; a real pair above it is "shared"; its empirical p-value is
(1 + #null >= r) / (1 + #null).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class Assignment:
    rows: np.ndarray  # feature ids of model A (int64)
    cols: np.ndarray  # feature ids of model B
    values: np.ndarray  # matrix[rows, cols] (float64)


def hungarian(matrix: np.ndarray, valid_rows: np.ndarray | None = None, valid_cols: np.ndarray | None = None) -> Assignment:
    """Maximum-weight one-to-one assignment restricted to valid rows/columns (NaN entries count as -1)."""
    rows = np.flatnonzero(valid_rows) if valid_rows is not None else np.arange(matrix.shape[0])
    cols = np.flatnonzero(valid_cols) if valid_cols is not None else np.arange(matrix.shape[1])
    if len(rows) == 0 or len(cols) == 0:
        empty = np.zeros(0, np.int64)
        return Assignment(empty, empty, np.zeros(0))
    sub = matrix[np.ix_(rows, cols)] if (len(rows), len(cols)) != matrix.shape else matrix
    sub = np.nan_to_num(np.asarray(sub, dtype=np.float64), nan=-1.0)
    r, c = linear_sum_assignment(sub, maximize=True)
    return Assignment(rows[r], cols[c], sub[r, c])


@dataclass
class NullModel:
    samples: np.ndarray  # matched correlations under misalignment (float64, sorted)
    alpha: float
    threshold: float
    n_unmatched: int = 0  # sparse matching: null features left without a partner, counted below every sample

    def p_values(self, values: np.ndarray) -> np.ndarray:
        greater = len(self.samples) - np.searchsorted(self.samples, values, side="left")
        return (1.0 + greater) / (1.0 + len(self.samples) + self.n_unmatched)


def null_model(samples: list[np.ndarray], alpha: float, n_unmatched: int = 0) -> NullModel:
    """``n_unmatched``: the sparse assignment leaves a feature unmatched where the dense Hungarian pairs it at a
    correlation near or below 0 (``compare.sparse_assignment``); counting those slots at the floor (-1) keeps the
    null's size, hence its (1 - alpha) quantile and p-values, what the dense null gives."""
    pooled = np.sort(np.concatenate(samples)) if samples else np.zeros(0)
    full = np.concatenate([np.full(n_unmatched, -1.0), pooled]) if n_unmatched else pooled
    threshold = float(np.quantile(full, 1.0 - alpha)) if len(full) else float("nan")
    return NullModel(pooled, alpha, threshold, int(n_unmatched))
