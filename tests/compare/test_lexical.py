"""Lexical vs contextual sharing on synthetic word-pooled activations with a known answer, plus its parts.

The synthetic "models" are built directly at the word-unit level (no SAE): documents with hidden topics,
words drawn from a Zipf vocabulary (written in random case: the type is the casefolded text), and
features of known kinds — shared lexical (both models fire on one word type wherever it occurs),
shared contextual (both fire on any word of documents of one topic), unshared (random, or a word
detector the other model lacks). The ordinary pipeline (correlate, Hungarian, document-derangement
null) picks the matched pairs; classify_pairs must then say which shared pairs are which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from autointerp.compare.correlation import correlate
from autointerp.compare.lexical import (
    COLUMNS,
    WordTypes,
    classify_pairs,
    column_correlation,
    contextual_correlation,
    lexical_null,
    lexical_pairs,
    paired_columns,
    word_share,
)
from autointerp.compare.matching import hungarian, null_model
from autointerp.compare.units import WordIndex, derangement, null_pairs, WORD_PATTERN
from autointerp.data.corpus import Document

N_LEX, N_CTX = 10, 10  # shared pairs of each kind


@dataclass
class Synthetic:
    a: sp.csr_matrix
    b: sp.csr_matrix
    types: WordTypes
    offsets: np.ndarray
    covered_a: np.ndarray
    covered_b: np.ndarray
    truth: dict  # (feature_a, feature_b) -> "lexical" | "contextual"
    unshared_a: set


def _synthetic(seed: int = 0, n_docs: int = 300, n_topics: int = N_CTX, vocab: int = 1000, topical: float = 0.0) -> Synthetic:
    """``topical``: the share of words drawn from their document topic's own 20 words (ids 100 + 20 z ...)."""
    rng = np.random.default_rng(seed)
    topic_of_doc = rng.integers(0, n_topics, n_docs)
    lengths = rng.integers(40, 80, n_docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = int(offsets[-1])
    p = 1.0 / (np.arange(vocab) + 2.0)
    word = rng.choice(vocab, n, p=p / p.sum())
    unit_topic = np.repeat(topic_of_doc, lengths)
    word = np.where(rng.random(n) < topical, 100 + 20 * unit_topic + rng.integers(0, 20, n), word)
    texts = [f"W{w}" if c else f"w{w}" for w, c in zip(word, rng.random(n) < 0.2)]
    types = WordTypes.from_texts(texts, offsets)
    topic = topic_of_doc[types.docs]

    def lexical(w):
        return (word == w) * rng.uniform(0.5, 1.5, n)

    def contextual(z):
        return (topic == z) * (rng.random(n) < 0.6) * rng.uniform(0.5, 1.5, n)

    def random_feature():
        return (rng.random(n) < 0.05) * rng.uniform(0.5, 1.5, n)

    lex_words = np.arange(5, 5 + N_LEX)
    cols_a = [lexical(w) for w in lex_words] + [contextual(z) for z in range(N_CTX)]
    cols_a += [random_feature() for _ in range(10)] + [lexical(w) for w in range(20, 25)]
    cols_b = [lexical(w) for w in lex_words] + [contextual(z) for z in range(N_CTX)]
    cols_b += [random_feature() for _ in range(15)] + [lexical(w) for w in range(25, 30)]
    dense_a, dense_b = np.stack(cols_a, 1), np.stack(cols_b, 1)
    for dense in (dense_a, dense_b):  # sparse background firing, independent between the models
        dense += (rng.random(dense.shape) < 0.005) * rng.uniform(0.1, 0.3, dense.shape)
    order_b = rng.permutation(dense_b.shape[1])  # B's feature ids are not A's
    dense_b = dense_b[:, order_b]
    where_b = np.argsort(order_b)
    truth = {(i, int(where_b[i])): "lexical" for i in range(N_LEX)}
    truth |= {(N_LEX + z, int(where_b[N_LEX + z])): "contextual" for z in range(N_CTX)}
    covered_b = rng.random(n) > 0.01
    return Synthetic(sp.csr_matrix(dense_a, dtype=np.float32), sp.csr_matrix(dense_b, dtype=np.float32), types, offsets,
                     np.ones(n, bool), covered_b, truth, set(range(N_LEX + N_CTX, dense_a.shape[1])))


def _classify(s: Synthetic):
    """The compare stage's matching and document-derangement null, then the lexical decomposition."""
    both = np.flatnonzero(s.covered_a & s.covered_b)
    corr = correlate(s.a, s.b, both, both, progress=False)
    assign = hungarian(corr.corr, ~corr.dead_a, ~corr.dead_b)
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(5):
        na, nb = null_pairs(s.offsets, s.covered_a, s.covered_b, derangement(len(s.offsets) - 1, rng))
        nc = correlate(s.a, s.b, na, nb, progress=False)
        samples.append(hungarian(nc.corr, ~nc.dead_a, ~nc.dead_b).values)
    null = null_model(samples, 0.05)
    frame, summary = classify_pairs(s.a, s.b, assign.rows, assign.cols, s.types, null_threshold=null.threshold,
                                    covered=s.covered_a & s.covered_b, n_permutations=8, seed=0)
    return s, assign, frame, summary


@pytest.fixture(scope="module")
def classified():
    return _classify(_synthetic())


def _accuracy(s: Synthetic, frame) -> float:
    found = frame.set_index(["feature_a", "feature_b"])["kind"]
    return sum(found.get(pair) == kind for pair, kind in s.truth.items()) / len(s.truth)


def test_labels_shared_pairs_lexical_or_contextual(classified):
    s, assign, frame, summary = classified
    found = frame.set_index(["feature_a", "feature_b"])
    assert set(s.truth) <= set(found.index), "the Hungarian matching should recover every shared pair"
    np.testing.assert_allclose(frame["corr"], assign.values, atol=1e-5)  # the compare stage's correlation
    assert _accuracy(s, frame) >= 0.9, frame
    lex = found.loc[[p for p, k in s.truth.items() if k == "lexical"]]
    ctx = found.loc[[p for p, k in s.truth.items() if k == "contextual"]]
    assert (lex["word_share_a"] > 0.8).all() and (lex["word_share_b"] > 0.8).all(), lex
    assert (ctx["word_share_a"] < 0.1).all() and (ctx["word_share_b"] < 0.1).all(), ctx
    # word identity carries the lexical pairs' whole correlation and none of the contextual pairs'
    assert (lex["lexical_null_corr"] > 0.8 * lex["corr"]).all() and (lex["contextual_corr"].abs() < 0.2).all()
    assert (ctx["lexical_null_corr"].abs() < 0.1).all() and (ctx["contextual_corr"] > 0.8 * ctx["corr"]).all()


def test_topical_words_leave_the_decision_intact():
    """Words that come with a topic carry some of a topic feature's variance (and lexical-null correlation),
    but not its correlation with the other model beyond the word."""
    s, _assign, frame, _summary = _classify(_synthetic(seed=1, topical=0.4))
    assert _accuracy(s, frame) >= 0.9, frame
    ctx = frame.set_index(["feature_a", "feature_b"]).loc[[p for p, k in s.truth.items() if k == "contextual"]]
    assert (ctx["lexical_null_corr"] > 0.05).all()  # the topic leaks through its words...
    assert (ctx["corr"] - ctx["lexical_null_corr"] > 0.2).all()  # ...but most of the sharing is beyond them
    assert not (frame[frame["feature_a"].isin(s.unshared_a)]["kind"] == "contextual").any()


def test_unshared_pairs_are_never_contextual(classified):
    s, _assign, frame, summary = classified
    unshared = frame[frame["feature_a"].isin(s.unshared_a)]
    assert len(unshared) == len(s.unshared_a)
    assert not (unshared["kind"] == "contextual").any(), unshared
    assert list(frame.columns) == list(COLUMNS)
    assert summary["n_shared"] == int((frame["kind"] != "unshared").sum()) >= len(s.truth)
    assert summary["n_contextual"] == int((frame["kind"] == "contextual").sum())
    assert summary["beyond_lexical_fraction"] == pytest.approx(summary["n_contextual"] / summary["n_shared"])
    assert 0 < summary["lexical_null_threshold"] < 0.2
    assert (summary["alpha"], summary["n_permutations"]) == (0.05, 8)
    assert 0 < summary["n_recurring_units"] < summary["n_units"] == int((s.covered_a & s.covered_b).sum())


def test_lexical_pairs_stay_within_type_and_leave_the_document():
    ids = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0, 3, 3, 0, 2, 1])
    docs = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2])
    types = WordTypes(ids, docs, np.array(["a", "b", "c", "d"], dtype=object))
    covered = np.ones(len(ids), bool)
    covered[14] = False  # type 1 then occurs in document 0 only
    recurring = types.recurring(covered)
    assert recurring.tolist() == [True] * 3 + [False] * 2 + [True] * 5 + [False] * 2 + [True, True, False]
    seen = set()
    for seed in range(20):
        ua, ub = lexical_pairs(types, covered, np.random.default_rng(seed))
        assert ua.tolist() == np.flatnonzero(recurring).tolist()  # every recurring unit once, the rest never
        assert covered[ub].all() and (ids[ua] == ids[ub]).all() and (docs[ua] != docs[ub]).all()
        again = lexical_pairs(types, covered, np.random.default_rng(seed))
        assert all(np.array_equal(x, y) for x, y in zip((ua, ub), again))
        seen.add(tuple(ub.tolist()))
    assert len(seen) > 5  # the pairing is random, not a fixed assignment
    ua, ub = lexical_pairs(types, np.flatnonzero(covered), np.random.default_rng(0))  # index arrays work too
    assert np.array_equal(ua, np.flatnonzero(recurring))


def test_types_come_from_the_casefolded_word_units():
    docs = [Document("d0", "Per cent, per capita."), Document("d1", "PER  hour (per)")]
    words = WordIndex.build(docs)
    assert words.texts(docs) == [m.group() for d in docs for m in WORD_PATTERN.finditer(d.text)]
    types = WordTypes.build(words, docs)
    vocab = types.vocab[types.ids].tolist()
    assert vocab == ["per", "cent", ",", "per", "capita", ".", "per", "hour", "(", "per", ")"]
    assert types.docs.tolist() == [0] * 6 + [1] * 5
    assert types.recurring().tolist() == [True, False, False, True, False, False, True, False, False, True, False]
    with pytest.raises(ValueError):
        words.texts(docs[:1])


def _dense_eta2(x, ids, adjusted=False):
    groups = np.unique(ids)
    total = ((x - x.mean()) ** 2).sum()
    within = sum(((x[ids == g] - x[ids == g].mean()) ** 2).sum() for g in groups)
    between = total - within
    if adjusted:
        between = max(between - (len(groups) - 1) * within / (len(x) - len(groups)), 0.0)
    return between / total


def _residual(x, ids):
    means = {g: x[ids == g].mean() for g in np.unique(ids)}
    return x - np.array([means[g] for g in ids])


def test_sparse_computations_equal_a_dense_reference():
    rng = np.random.default_rng(3)
    n, d = 80, 6
    docs = np.repeat(np.arange(6), [10, 15, 12, 18, 10, 15])
    ids = rng.integers(0, 7, n)
    types = WordTypes(ids, docs, np.array([str(i) for i in range(7)], dtype=object))
    dense_a = rng.random((n, d)) * (rng.random((n, d)) < 0.4)
    dense_b = rng.random((n, d + 2)) * (rng.random((n, d + 2)) < 0.4)
    dense_a[:, 5] = 0.0  # a dead feature
    a, b = sp.csr_matrix(dense_a), sp.csr_matrix(dense_b)
    units = np.flatnonzero(rng.random(n) < 0.8)
    share, adjusted = word_share(a, ids, units), word_share(a, ids, units, adjusted=True)
    for j in range(5):
        assert share[j] == pytest.approx(_dense_eta2(dense_a[units, j], ids[units]), abs=1e-10)
        assert adjusted[j] == pytest.approx(_dense_eta2(dense_a[units, j], ids[units], adjusted=True), abs=1e-10)
    assert np.isnan(share[5])
    rows, cols = np.array([0, 1, 2, 3, 4, 5]), np.array([7, 0, 3, 1, 2, 4])
    am, bm = paired_columns(a, b, rows, cols)
    corr = column_correlation(am[units], bm[units])
    ctx = contextual_correlation(am, bm, ids, units)
    for i, (r, c) in enumerate(zip(rows[:5], cols[:5])):
        x, y = dense_a[units, r], dense_b[units, c]
        assert corr[i] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-10)
        assert ctx[i] == pytest.approx(np.corrcoef(_residual(x, ids[units]), _residual(y, ids[units]))[0, 1], abs=1e-10)
    assert np.isnan(corr[5]) and np.isnan(ctx[5])
    null = lexical_null(am, bm, types, units, 3, seed=7)
    rng = np.random.default_rng(7)
    for p in range(3):
        ua, ub = lexical_pairs(types, units, rng)
        for i, (r, c) in enumerate(zip(rows[:5], cols[:5])):
            assert null[p, i] == pytest.approx(np.corrcoef(dense_a[ua, r], dense_b[ub, c])[0, 1], abs=1e-10)


def test_wide_dictionaries_stay_sparse():
    """200k features x 2000 units would be 3.2 GB dense: the per-feature sums must never densify it."""
    rng = np.random.default_rng(0)
    n, d, nnz = 2000, 200_000, 20_000
    m = sp.csr_matrix((rng.random(nnz), (rng.integers(0, n, nnz), rng.integers(0, d, nnz))), shape=(n, d))
    ids = rng.integers(0, 50, n)
    share = word_share(m, ids)
    assert share.shape == (d,) and np.isfinite(share).sum() > 0.9 * len(np.unique(m.indices))
    types = WordTypes(ids, np.repeat(np.arange(20), 100), np.array([str(i) for i in range(50)], dtype=object))
    pairs = np.arange(0, d, 1000)
    frame, summary = classify_pairs(m, m, pairs, pairs, types, null_threshold=0.5, n_permutations=2)
    assert len(frame) == len(pairs) and summary["n_pairs"] == len(pairs)
    assert set(frame["kind"]) <= {"lexical", "contextual", "unshared"}


def test_rejects_a_null_without_spread():
    s = _synthetic(n_docs=20)
    with pytest.raises(ValueError):
        classify_pairs(s.a, s.b, np.arange(3), np.arange(3), s.types, null_threshold=0.1, n_permutations=1)
