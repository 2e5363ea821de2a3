"""Lexical or contextual? How much of a matched pair's sharing is word identity alone.

Two models that both have a feature for the word "per" share a word, not a concept; the document
derangement null (units.null_pairs) breaks word identity along with context, so it cannot tell the two
apart. This module decomposes each matched pair on word units:

* *word type*: a unit's casefolded text (``WordTypes``). Word identity can only be told apart from
  context where a type recurs across documents, so everything below runs on the *recurring* units:
  units both harvests cover whose type occurs (among covered units) in at least two documents.
* *word share* of a feature (``word_share``): between-type variance / total variance of its activation
  over units (eta-squared of the one-way decomposition by word type). A token detector is near 1, a
  feature that fires by topic on any word near 0 (eta-squared is biased up by about
  (n_types - 1) / n_units; ``adjusted=True`` gives the bias-corrected epsilon-squared).
* *contextual correlation* (``contextual_correlation``): the correlation of the two features' residuals
  after removing each word type's mean from both, i.e. their co-variation among occurrences of the same
  word.
* *lexical null* (``lexical_pairs``, ``lexical_null``): each unit of model A is paired with a random unit
  of the same type in another document for model B. Word identity survives that pairing, context does
  not, so a pair's correlation under it is what its correlation would be if the word were all it shared.

Decision rule (``classify_pairs``): a pair is *shared* when its correlation over the aligned units (the
compare stage's ``activation_corr``) is above the ordinary null threshold. Its *excess* is its real
correlation over the recurring units minus its mean correlation over ``n_permutations`` lexical pairings.
The threshold on the excess is the (1 - alpha) quantile, pooled over all matched pairs and permutations,
of one lexical pairing's correlation minus the mean of the other pairings' (what the excess of a pair that
shares nothing but the word looks like), floored at ``min_excess``. A shared pair whose excess is above it
is *contextual*, any other shared pair *lexical* (including pairs with no recurring-unit correlation, whose
word cannot be told apart from their document); a pair that is not shared is *unshared*. A quantile of the
lexical-null correlations themselves would not do: lexical pairs keep their full correlation under the
lexical pairing, so that threshold would ask a contextual pair to beat the strongest word detectors.

Everything is sparse: per-type sums are products with a one-hot [units, types] matrix, matched pairs are
column pairs of the two activation matrices; no [units, d_sae] matrix is ever dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from autointerp.compare.units import WordIndex
from autointerp.data.corpus import Document

KINDS = ("lexical", "contextual", "unshared")
COLUMNS = ("feature_a", "feature_b", "corr", "contextual_corr", "lexical_null_corr", "word_share_a", "word_share_b", "kind")


@dataclass
class WordTypes:
    """Per word unit: its type id (casefolded text) and its document; ``vocab[id]`` is the type's text."""

    ids: np.ndarray  # [n_units] int64
    docs: np.ndarray  # [n_units] int64
    vocab: np.ndarray  # [n_types] object (str)

    @property
    def n_units(self) -> int:
        return len(self.ids)

    @classmethod
    def from_texts(cls, texts: list[str], doc_offsets: np.ndarray) -> WordTypes:
        """From each unit's text and ``doc_offsets`` ([n_docs + 1], as in WordIndex)."""
        if len(texts) != int(doc_offsets[-1]):
            raise ValueError(f"{len(texts)} unit texts but doc_offsets cover {int(doc_offsets[-1])} units")
        ids, vocab = pd.factorize(pd.Series([t.casefold() for t in texts], dtype=object), sort=False)
        docs = np.repeat(np.arange(len(doc_offsets) - 1, dtype=np.int64), np.diff(doc_offsets))
        return cls(np.asarray(ids, np.int64), docs, np.asarray(vocab, dtype=object))

    @classmethod
    def build(cls, words: WordIndex, docs: list[Document]) -> WordTypes:
        return cls.from_texts(words.texts(docs), words.doc_offsets)

    def recurring(self, covered: np.ndarray | None = None) -> np.ndarray:
        """[n_units] bool: covered units whose type occurs, among covered units, in two or more documents."""
        covered = np.ones(self.n_units, bool) if covered is None else np.asarray(covered, bool)
        idx = np.flatnonzero(covered)
        if len(idx) == 0:
            return covered.copy()
        n_docs = int(self.docs.max()) + 1
        keys = np.unique(self.ids[idx] * n_docs + self.docs[idx])  # distinct (type, document) among covered
        n_docs_of_type = np.bincount(keys // n_docs, minlength=int(self.ids.max()) + 1)
        return covered & (n_docs_of_type[self.ids] >= 2)


def _mask(n: int, units: np.ndarray | None) -> np.ndarray:
    """Row indices from None (all), a bool mask or an index array."""
    if units is None:
        return np.arange(n)
    units = np.asarray(units)
    return np.flatnonzero(units) if units.dtype == bool else units.astype(np.int64)


def _f64(x: sp.spmatrix) -> sp.csr_matrix:
    return sp.csr_matrix(x, dtype=np.float64)


def _colsum(x: sp.spmatrix) -> np.ndarray:
    return np.asarray(x.sum(axis=0), dtype=np.float64).ravel()


def _type_sums(x: sp.csr_matrix, type_ids: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """(per-type column sums [n_present_types, d] via the one-hot product, units per type)."""
    _, inv = np.unique(type_ids, return_inverse=True)
    k = int(inv.max()) + 1 if len(inv) else 0
    onehot_t = sp.csr_matrix((np.ones(len(inv)), (inv, np.arange(len(inv)))), shape=(k, len(inv)))
    return (onehot_t @ x).tocsr(), np.bincount(inv, minlength=k).astype(np.float64)


def _fit(s1: sp.csr_matrix, s2: sp.csr_matrix, counts: np.ndarray) -> np.ndarray:
    """sum over types of s1[t, j] * s2[t, j] / counts[t], per column j."""
    return _colsum(sp.diags(1.0 / counts) @ s1.multiply(s2))


def _dead(var: np.ndarray, sumsq: np.ndarray, n: int) -> np.ndarray:
    """The relative floor correlation.py uses: a variance this small against its mean square is rounding."""
    return ~(var > 1e-12 * np.maximum(sumsq / max(n, 1), 1e-30))


def word_share(matrix: sp.spmatrix, type_ids: np.ndarray, units: np.ndarray | None = None,
               adjusted: bool = False) -> np.ndarray:
    """[d] share of each feature's variance over ``units`` explained by word type (NaN for a constant feature).

    Eta-squared: (total SS - within-type SS) / total SS, where within-type SS = sum x^2 - sum_t S_t^2 / n_t.
    ``adjusted``: epsilon-squared, (between SS - (k - 1) within SS / (n - k)) / total SS, clipped at 0.
    """
    rows = _mask(matrix.shape[0], units)
    x = _f64(matrix.tocsr()[rows])
    n = x.shape[0]
    s, counts = _type_sums(x, type_ids[rows])
    total_s, sumsq = _colsum(x), _colsum(x.multiply(x))
    total = np.maximum(sumsq - total_s**2 / max(n, 1), 0.0)
    within = np.clip(sumsq - _fit(s, s, counts), 0.0, total)
    between = total - within
    if adjusted:
        k = len(counts)
        between = np.maximum(between - (k - 1) * within / max(n - k, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip(between / total, 0.0, 1.0)
    return np.where(_dead(total / max(n, 1), sumsq, n), np.nan, share)


def _pearson(n: int, sx, qx, sy, qy, cxy) -> np.ndarray:
    vx, vy = qx / max(n, 1) - (sx / max(n, 1)) ** 2, qy / max(n, 1) - (sy / max(n, 1)) ** 2
    cov = cxy / max(n, 1) - sx * sy / max(n, 1) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip(cov / np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0)), -1.0, 1.0)
    return np.where(_dead(vx, qx, n) | _dead(vy, qy, n), np.nan, corr)


def column_correlation(x: sp.spmatrix, y: sp.spmatrix) -> np.ndarray:
    """[p] Pearson correlation of column j of ``x`` with column j of ``y`` over their (paired) rows."""
    x, y = _f64(x), _f64(y)
    if x.shape != y.shape:
        raise ValueError(f"paired columns need equal shapes, got {x.shape} and {y.shape}")
    return _pearson(x.shape[0], _colsum(x), _colsum(x.multiply(x)), _colsum(y), _colsum(y.multiply(y)), _colsum(x.multiply(y)))


def paired_columns(a: sp.spmatrix, b: sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The matched features side by side: column i of the results is feature rows[i] of A / cols[i] of B."""
    if len(rows) != len(cols):
        raise ValueError("rows and cols must pair features one to one")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"both models must be pooled onto the same units, got {a.shape[0]} and {b.shape[0]}")
    return _f64(a.tocsr()[:, np.asarray(rows, np.int64)]), _f64(b.tocsr()[:, np.asarray(cols, np.int64)])


def contextual_correlation(am: sp.spmatrix, bm: sp.spmatrix, type_ids: np.ndarray, units: np.ndarray | None = None) -> np.ndarray:
    """[p] correlation of paired columns after removing each word type's mean from both (over ``units``).

    Residual cross product = sum x y - sum_t Sx_t Sy_t / n_t; residual SS = sum x^2 - sum_t Sx_t^2 / n_t.
    NaN where either residual is constant (e.g. a feature that is a pure function of the word).
    """
    rows = _mask(am.shape[0], units)
    x, y = _f64(am.tocsr()[rows]), _f64(bm.tocsr()[rows])
    sx, counts = _type_sums(x, type_ids[rows])
    sy, _ = _type_sums(y, type_ids[rows])
    qx, qy = _colsum(x.multiply(x)), _colsum(y.multiply(y))
    wx, wy = np.maximum(qx - _fit(sx, sx, counts), 0.0), np.maximum(qy - _fit(sy, sy, counts), 0.0)
    cross = _colsum(x.multiply(y)) - _fit(sx, sy, counts)
    n = len(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip(cross / np.sqrt(wx * wy), -1.0, 1.0)
    return np.where(_dead(wx / max(n, 1), qx, n) | _dead(wy / max(n, 1), qy, n), np.nan, corr)


def lexical_pairs(types: WordTypes, units: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(units of A, units of B): each unit of ``units`` (bool mask or ids) paired with a uniformly drawn unit
    of ``units`` of the same type in another document. Units whose type occurs in one document only are left
    out. Draws are independent (a B unit can serve several A units), so types one document dominates keep
    all their units, which a permutation could not. Sorted by A unit; reproducible for a seeded ``rng``."""
    idx = _mask(types.n_units, units)
    t, d = types.ids[idx], types.docs[idx]
    order = np.lexsort((d, t))  # by type, then document
    idx, t, d = idx[order], t[order], d[order]
    n = len(idx)
    if n == 0:
        return idx, idx
    new_type = np.r_[True, t[1:] != t[:-1]]
    new_block = new_type | np.r_[True, d[1:] != d[:-1]]
    type_starts, block_starts = np.flatnonzero(new_type), np.flatnonzero(new_block)
    g, b = np.cumsum(new_type) - 1, np.cumsum(new_block) - 1
    gs, ge = type_starts[g], np.r_[type_starts[1:], n][g]
    bs, be = block_starts[b], np.r_[block_starts[1:], n][b]
    candidates = (ge - gs) - (be - bs)  # same type, other documents
    k = rng.integers(0, np.maximum(candidates, 1))
    partner = gs + k
    partner = np.where(partner >= bs, partner + (be - bs), partner)  # skip the unit's own document block
    keep = candidates > 0
    ua, ub = idx[keep], idx[partner[keep]]
    back = np.argsort(ua, kind="stable")
    return ua[back], ub[back]


def lexical_null(am: sp.spmatrix, bm: sp.spmatrix, types: WordTypes, units: np.ndarray, n_permutations: int,
                 seed: int = 0) -> np.ndarray:
    """[n_permutations, p] paired-column correlations under ``n_permutations`` seeded lexical pairings."""
    rng = np.random.default_rng(seed)
    am, bm = am.tocsr(), bm.tocsr()
    out = np.empty((n_permutations, am.shape[1]))
    for p in range(n_permutations):
        ua, ub = lexical_pairs(types, units, rng)
        out[p] = column_correlation(am[ua], bm[ub])
    return out


def classify_pairs(a: sp.spmatrix, b: sp.spmatrix, rows: np.ndarray, cols: np.ndarray, types: WordTypes, *,
                   null_threshold: float, covered: np.ndarray | None = None, alpha: float = 0.05,
                   n_permutations: int = 8, seed: int = 0, min_excess: float = 0.0) -> tuple[pd.DataFrame, dict]:
    """Label each matched pair (rows[i] of A, cols[i] of B) lexical / contextual / unshared (rule: module doc).

    ``a``/``b``: word-pooled activations [n_units, d] (PooledActivations.matrix); ``covered``: units both
    harvests cover (default all); ``null_threshold``: the ordinary (document-derangement) null threshold.
    Returns the per-pair frame (COLUMNS, in the order of ``rows``; ``corr`` over the covered units as in
    the compare stage, the other correlations and word shares over the recurring units) and a summary dict.
    """
    if n_permutations < 2:
        raise ValueError("the lexical null needs n_permutations >= 2 (its spread is estimated across them)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if types.n_units != a.shape[0]:
        raise ValueError(f"{types.n_units} word types for {a.shape[0]} units")
    covered = np.ones(a.shape[0], bool) if covered is None else np.asarray(covered, bool)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    am, bm = paired_columns(a, b, rows, cols)
    aligned, recurring = np.flatnonzero(covered), np.flatnonzero(types.recurring(covered))
    corr = column_correlation(am[aligned], bm[aligned])
    corr_recurring = column_correlation(am[recurring], bm[recurring])
    null = lexical_null(am, bm, types, recurring, n_permutations, seed)
    with np.errstate(invalid="ignore"):
        null_mean = null.mean(axis=0)
        spread = null - (null.sum(axis=0) - null) / (n_permutations - 1)  # one pairing minus the others' mean
    finite = spread[np.isfinite(spread)]
    quantile = float(np.quantile(finite, 1.0 - alpha)) if len(finite) else float("nan")
    threshold = max(quantile, min_excess) if np.isfinite(quantile) else float("nan")
    shared = np.nan_to_num(corr, nan=-np.inf) > null_threshold
    excess = np.nan_to_num(corr_recurring - null_mean, nan=-np.inf)
    contextual = shared & (excess > threshold) if np.isfinite(threshold) else np.zeros(len(rows), bool)
    kind = np.where(~shared, "unshared", np.where(contextual, "contextual", "lexical"))
    frame = pd.DataFrame({
        "feature_a": rows.astype(np.int32), "feature_b": cols.astype(np.int32),
        "corr": corr.astype(np.float32), "contextual_corr": contextual_correlation(am, bm, types.ids, recurring).astype(np.float32),
        "lexical_null_corr": null_mean.astype(np.float32),
        "word_share_a": word_share(am, types.ids, recurring).astype(np.float32),
        "word_share_b": word_share(bm, types.ids, recurring).astype(np.float32),
        "kind": pd.Categorical(kind, categories=KINDS),
    })
    n_shared, n_contextual = int(shared.sum()), int(contextual.sum())
    summary = {
        "n_pairs": len(rows), "n_shared": n_shared, "n_contextual": n_contextual, "n_lexical": n_shared - n_contextual,
        "beyond_lexical_fraction": n_contextual / n_shared if n_shared else None,
        "lexical_null_threshold": threshold, "null_threshold": float(null_threshold), "alpha": alpha,
        "n_permutations": n_permutations, "min_excess": min_excess, "seed": seed,
        "n_units": len(aligned), "n_recurring_units": len(recurring),
        "n_recurring_types": int(len(np.unique(types.ids[recurring]))),
    }
    return frame, summary
