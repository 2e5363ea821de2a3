"""Representation baselines on constructions with a known answer, and raw mean-pooling on a real harvest.

Identical, rotated and scaled representations score 1; independent ones sit inside their derangement
null; a partly shared one lies in between and beats the null. The pooling is checked against a brute
force that maps tokens to words by regex on the document text, independently of WordIndex.map_tokens.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autointerp.compare.representation import linear_cka, mutual_knn, pooled_word_activations, representation_baselines, svcca
from autointerp.compare.units import WORD_PATTERN, WordIndex, aligned_pairs
from autointerp.harvest.shards import read_shard
from autointerp.io import read_json
from autointerp.rundir.layout import RunDir
from helpers.runs import SyntheticSpec, make_synthetic_run

N_DOCS, PER_DOC, DIM = 40, 20, 24
OFFSETS = np.arange(N_DOCS + 1) * PER_DOC


def gaussian(seed: int, n: int = N_DOCS * PER_DOC, d: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def rotation(seed: int, d: int = DIM) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q.astype(np.float32)


def test_identical_rotated_and_scaled_inputs_score_one():
    x = gaussian(0) * np.linspace(0.5, 3.0, DIM, dtype=np.float32)  # anisotropic, so 99% needs many directions
    for y in (x, 2.5 * x @ rotation(1)):
        assert linear_cka(x, y) == pytest.approx(1.0, abs=1e-6)
        got = svcca(x, y)
        assert got["value"] == pytest.approx(1.0, abs=1e-6)
        assert got["components_a"] == got["components_b"] > 1
        assert mutual_knn(x, y, k=10) == 1.0


def test_independent_noise_sits_inside_its_null():
    out = representation_baselines(gaussian(0), gaussian(1, d=30), OFFSETS, seed=0, n_permutations=20, max_units=500)
    for name in ("cka", "svcca", "mutual_knn"):
        r = out[name]
        assert r["p_value"] > 0.05, (name, r)
        assert abs(r["value"] - r["null_mean"]) < 4 * r["null_sd"] + 1e-3, (name, r)
    assert abs(out["cka"]["value"]) < 0.02
    assert out["mutual_knn"]["n_units"] == 500 and out["mutual_knn"]["k"] == 10


def test_partly_shared_lies_between_noise_and_identity_and_beats_the_null():
    x = gaussian(0)
    w = np.random.default_rng(5).standard_normal((DIM, 30)).astype(np.float32) / np.sqrt(DIM)
    y = x @ w + 1.5 * gaussian(6, d=30)
    out = representation_baselines(x, y, OFFSETS, seed=0, n_permutations=20)
    noise = linear_cka(x, gaussian(1, d=30))
    assert noise < out["cka"]["value"] < 1.0 - 1e-3
    for name in ("cka", "svcca", "mutual_knn"):
        assert out[name]["p_value"] < 0.05, (name, out[name])
        assert out[name]["value"] > out[name]["null_mean"]
    json.dumps(out)  # plain JSON values


def test_debiasing_removes_the_dimension_bias_of_cka():
    x, y = gaussian(0, n=100, d=400), gaussian(1, n=100, d=400)  # p large relative to n
    assert linear_cka(x, y, debiased=False) > 0.5
    assert abs(linear_cka(x, y)) < 0.05


def test_debiased_cka_equals_the_gram_matrix_form_of_song_et_al():
    """The feature-space formula against the [n x n] definition, on uncentred features (HSIC_u ignores the shift)."""
    x, y = gaussian(0, n=60, d=8).astype(np.float64) + 3.0, gaussian(1, n=60, d=5).astype(np.float64)
    y[:, :3] += x[:, :3]

    def hsic(k, l):
        n, one = len(k), np.ones(len(k))
        k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
        return (np.trace(k @ l) + one @ k @ one * (one @ l @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))

    k, l = x @ x.T, y @ y.T
    assert linear_cka(x, y) == pytest.approx(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)), rel=1e-9)


def test_svcca_keeps_several_directions_and_caps_them_on_few_units():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((800, 6))
    x = (z @ rng.standard_normal((6, 40)) + 0.01 * rng.standard_normal((800, 40))).astype(np.float32)
    got = svcca(x, x @ rotation(2, 40))
    assert got["components_a"] >= 5 and got["value"] == pytest.approx(1.0, abs=1e-6)
    few = svcca(gaussian(0, n=60, d=40), gaussian(1, n=60, d=40))  # 99% of isotropic noise needs ~all 40 directions
    assert few["components_for_variance_a"] > 30 and few["components_a"] == few["max_components"] == 6
    assert few["value"] < 0.6  # uncapped, 40 + 40 directions on 60 units would be all-but-perfectly correlated


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    spec = SyntheticSpec(n_docs=16, words_per_doc=(30, 60), shard_rows=400)
    return make_synthetic_run(tmp_path_factory.mktemp("synth") / "run", spec)


def brute_force_means(harvest_dir, manifest, docs) -> pd.DataFrame:
    """Mean activation per (doc, word), tokens mapped to words by regex spans and an explicit overlap test."""
    word_spans = [[m.span() for m in WORD_PATTERN.finditer(d.text)] for d in docs]
    offset = np.concatenate([[0], np.cumsum([len(s) for s in word_spans])])
    doc_of = {d.doc_id: i for i, d in enumerate(docs)}
    rows = []
    for shard in manifest["shards"]:
        acts, index = read_shard(harvest_dir, shard["index"])
        frame = pd.DataFrame(acts.float().numpy()).add_prefix("f")
        for r, (doc_id, cs, ce) in enumerate(zip(index["doc_id"], index["char_start"], index["char_end"])):
            d = doc_of[doc_id]
            for w, (ws, we) in enumerate(word_spans[d]):
                if ws < ce and we > cs:
                    rows.append(frame.iloc[r].to_dict() | {"unit": offset[d] + w})
    return pd.DataFrame(rows).groupby("unit").mean()


def test_mean_pooling_matches_a_brute_force_groupby(synth):
    words = WordIndex.build(synth.docs)
    doc_index_of = {d.doc_id: i for i, d in enumerate(synth.docs)}
    for slug in synth.slugs:
        mdir = RunDir(synth.run_dir).model(slug)
        manifest = read_json(mdir.manifest)
        pooled = pooled_word_activations(mdir.harvest, manifest, doc_index_of, words)
        want = brute_force_means(mdir.harvest, manifest, synth.docs)
        assert pooled.matrix.dtype == np.float32 and pooled.matrix.shape[0] == words.n_units
        assert pooled.units.tolist() == want.index.tolist()
        assert np.allclose(pooled.matrix[want.index.to_numpy()], want.to_numpy(), atol=1e-5)
        assert not pooled.matrix[~pooled.covered].any()


def test_two_synthetic_models_share_representation_above_the_null(synth):
    words = WordIndex.build(synth.docs)
    doc_index_of = {d.doc_id: i for i, d in enumerate(synth.docs)}
    pooled = [pooled_word_activations(RunDir(synth.run_dir).model(s).harvest, read_json(RunDir(synth.run_dir).model(s).manifest),
                                      doc_index_of, words) for s in synth.slugs]
    ua, _ = aligned_pairs(pooled[0].covered, pooled[1].covered)
    out = representation_baselines(pooled[0].matrix, pooled[1].matrix, words.doc_offsets,
                                   covered_a=pooled[0].covered, covered_b=pooled[1].covered, n_permutations=5)
    assert out["cka"]["n_units"] == len(ua)
    for name in ("cka", "svcca", "mutual_knn"):
        r = out[name]
        assert r["p_value"] == pytest.approx(1 / 6) and r["value"] > r["null_mean"] + 3 * r["null_sd"], (name, r)


def test_word_index_subsample_takes_seeded_whole_documents_until_enough_units():
    from autointerp.compare.units import WordIndex
    from autointerp.data.corpus import Document

    docs = [Document(f"d{i}", " ".join(["word"] * (5 + i))) for i in range(20)]
    words = WordIndex.build(docs)
    keep = words.subsample(40, seed=3)
    assert keep == sorted(keep) and keep == words.subsample(40, seed=3) and keep != words.subsample(40, seed=4)
    held = words.words_per_doc[keep]
    assert 40 <= held.sum() < 40 + words.words_per_doc.max()  # stops at the first document reaching the budget
    assert words.subsample(10**6, seed=0) == list(range(20))  # fewer units than asked: every document
