"""Activation matching on two synthetic models with a known answer, plus the pieces it is built from.

The synthetic run (helpers.runs.make_synthetic_run) shares half of a ground-truth sparse dictionary between
two "models" seen through different random rotations, widths (72 vs 85 latents, with dead ones) and
tokenizations (B splits every word in two), written as real harvest shards / SAE files / corpus.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from autointerp.compare.stage import compare_models
from autointerp.compare.correlation import correlate
from autointerp.compare.matching import hungarian, null_model
from helpers.runs import SyntheticSpec, make_synthetic_run
from autointerp.compare.units import WordIndex, derangement, null_pairs
from autointerp.config import ModelEntry, RunConfig
from autointerp.errors import UserError
from autointerp.data.corpus import Document

SPEC = SyntheticSpec(n_dead_a=3, n_dead_b=5, d_a=72, d_b=96, entity_level_a_only=True)


def run_config(run) -> RunConfig:
    return RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    run = make_synthetic_run(tmp_path_factory.mktemp("synth") / "run", SPEC)
    cfg = run_config(run)
    outcome = compare_models(cfg, cfg.models, progress=False)[0]
    return run, outcome


def test_recovers_shared_pairs_above_null_and_almost_none_unshared(compared):
    run, outcome = compared
    matches = pd.read_parquet(outcome.out_dir / "matches.parquet")
    found = {(int(a), int(b)) for a, b in zip(matches.loc[matches["shared"], "feature_a"], matches.loc[matches["shared"], "feature_b"])}
    recall = len(found & run.truth) / len(run.truth)
    precision = len(found & run.truth) / max(len(found), 1)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    shared_concepts = set(range(SPEC.n_shared))
    unshared_a = {j for j, c in enumerate(run.concept_of_a) if c not in shared_concepts}
    false_unshared = [p for p in found if p[0] in unshared_a]
    assert len(false_unshared) <= 1, false_unshared  # the unshared half: (almost) none above the null
    # the truly shared pairs correlate far above the threshold, the rest of the matching does not
    stats = outcome.stats
    assert stats["n_shared"] == len(found)
    assert 0 < stats["null"]["threshold"] < 0.3
    true_corr = matches.set_index(["feature_a", "feature_b"])["activation_corr"]
    assert min(true_corr[p] for p in run.truth) > 0.8


def test_dead_features_excluded_and_rectangular(compared):
    _run, outcome = compared
    stats = outcome.stats
    assert (stats["n_features_a"], stats["n_features_b"]) == (67, 85)
    assert (stats["n_dead_a"], stats["n_dead_b"]) == (3, 5)
    matches = pd.read_parquet(outcome.out_dir / "matches.parquet")
    assert matches["feature_a"].max() < 64 and matches["feature_b"].max() < 80  # dead latents are never matched
    assert stats["activation"]["n_pairs"] == 64  # min(live A, live B)
    feats = pd.read_parquet(outcome.out_dir / "features.parquet")
    assert len(feats) == 67 + 85
    dead = feats[feats["dead"]]
    assert sorted(dead.loc[dead["model"] == "synth-a", "feature"]) == [64, 65, 66]
    assert (dead["activation_partner"] == -1).all()


def test_outputs_follow_the_contract(compared):
    run, outcome = compared
    out = outcome.out_dir
    assert out == run.run_dir / "compare" / "synth-a__synth-b"
    matches = pd.read_parquet(out / "matches.parquet")
    expected = {"feature_a": "int32", "feature_b": "int32", "activation_corr": "float32", "label_similarity": "float32",
                "p_value": "float64", "shared": "bool", "combined_score": "float32", "combined_rank": "int32"}
    for col, dtype in expected.items():
        assert str(matches[col].dtype) == dtype, col
    assert set(matches["method"]) == {"activation"}  # no labels yet
    assert matches["label_similarity"].isna().all() and matches["label_a"].isna().all()
    assert list(matches["combined_rank"]) == list(range(1, len(matches) + 1))
    assert matches["combined_score"].is_monotonic_decreasing
    assert ((matches["p_value"] > 0) & (matches["p_value"] <= 1)).all()
    null = pd.read_parquet(out / "null.parquet")
    assert str(null["corr"].dtype) == "float32" and len(null) == outcome.stats["null"]["n_samples"] >= 4000
    feats = pd.read_parquet(out / "features.parquet")
    for col in ("model", "feature", "dead", "domain", "n_docs_spanned", "label_specificity"):
        assert col in feats.columns
    s = outcome.stats
    for key in ("model_a", "model_b", "unit", "n_units", "n_features_a", "n_features_b", "n_dead_a", "n_dead_b", "null",
                "n_shared", "activation", "label", "agreement", "domains", "abstraction", "levels", "definitions"):
        assert key in s, key
    assert s["unit"] == "word" and s["n_units"] == run.n_units  # every word unit is covered by both tokenizations
    assert set(s["levels"]) == {"word", "document"}
    doc = s["levels"]["document"]
    assert doc["n_units"] == SPEC.n_docs and doc["n_shared"] >= 28  # documents are a coarser but valid unit here
    assert s["label"]["available"] is False and "autointerp explain" in s["label"]["reason"]


def test_correlation_matches_numpy_including_dead_columns():
    rng = np.random.default_rng(1)
    a = sp.random(500, 30, density=0.1, format="csr", random_state=1, dtype=np.float32)
    b = sp.random(400, 20, density=0.2, format="csr", random_state=2, dtype=np.float32)
    a = (a @ sp.diags((np.arange(30) != 7).astype(np.float32))).tocsr()  # column 7 dead
    a.eliminate_zeros()
    rows_a, rows_b = rng.choice(500, 300, replace=False), rng.choice(400, 300, replace=False)
    got = correlate(a, b, rows_a, rows_b, max_products=50, max_rows=17, progress=False)  # many tiny chunks
    da, db = a[rows_a].toarray(), b[rows_b].toarray()
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.corrcoef(np.hstack([da, db]).T)[:30, 30:]
    live = ~np.isnan(want)
    assert np.allclose(got.corr[live], want[live], atol=1e-5)
    assert got.dead_a[7] and np.isnan(got.corr[7]).all() and got.dead_a.sum() == np.isnan(want).all(1).sum()


def test_word_units_from_char_offsets():
    docs = [Document("d0", "Hello, world (ok)."), Document("d1", "Second doc")]
    words = WordIndex.build(docs)
    assert words.n_units == 8 and list(words.words_per_doc) == [6, 2]  # Hello , world ( ok ). | Second doc
    # tokens: "Hello" ; ", w" spans the comma and the next word ; " world" (leading space) ; "" whitespace only ; "doc"
    doc = np.array([0, 0, 0, 0, 1])
    start, end = np.array([0, 5, 6, 12, 7]), np.array([5, 8, 12, 13, 10])
    rows, units = words.map_tokens(doc, start, end)
    assert list(zip(rows.tolist(), units.tolist())) == [(0, 0), (1, 1), (1, 2), (2, 2), (4, 7)]


def test_null_pairs_never_align_a_document_with_itself():
    rng = np.random.default_rng(0)
    offsets = np.array([0, 5, 9, 20, 22])
    perm = derangement(4, rng)
    assert (perm != np.arange(4)).all() and sorted(perm) == [0, 1, 2, 3]
    covered = np.ones(22, bool)
    ua, ub = null_pairs(offsets, covered, covered, perm)
    doc_of = np.searchsorted(offsets, np.arange(22), side="right") - 1
    assert (doc_of[ua] != doc_of[ub]).all()
    assert len(ua) == sum(min(n, np.diff(offsets)[perm][i]) for i, n in enumerate(np.diff(offsets)))


def test_hungarian_skips_invalid_rows_and_null_p_values():
    m = np.array([[0.9, 0.1, 0.0], [0.8, 0.85, 0.1], [np.nan, np.nan, np.nan]])
    a = hungarian(m, valid_rows=np.array([True, True, False]))
    assert sorted(zip(a.rows.tolist(), a.cols.tolist())) == [(0, 0), (1, 1)]
    null = null_model([np.linspace(0, 0.1, 99)], alpha=0.05)
    assert null.threshold == pytest.approx(np.quantile(np.linspace(0, 0.1, 99), 0.95))
    assert null.p_values(np.array([0.5, -1.0])).tolist() == [pytest.approx(0.01), 1.0]


def test_calibration_names_what_sharing_is_measured_against(compared):
    """calibration.json: the shared fraction next to sharing beyond word identity and the raw-activation
    baselines with their nulls; the controls not built yet are named, not filled with numbers."""
    _run, outcome = compared
    cal = json.loads((outcome.out_dir / "calibration.json").read_text())
    stats = outcome.stats
    assert cal["shared_fraction"] == stats["activation"]["fraction_shared"] and cal["n_shared"] == stats["n_shared"]
    assert cal["ceiling_shared_fraction"] is None and "ceiling_shared_fraction" in cal["not_measured"]
    matches = pd.read_parquet(outcome.out_dir / "matches.parquet")
    act = matches[matches["method"] != "label"]
    assert set(act.loc[act["shared"], "kind"]) <= {"lexical", "contextual"}
    assert (act.loc[~act["shared"], "kind"] == "unshared").all()
    # the synthetic codes do not depend on which word a unit is: what the models share is contextual
    assert cal["n_contextual"] == stats["n_shared"] and cal["beyond_lexical_fraction"] == 1.0
    assert (act.loc[act["shared"], "word_share_a"] < 0.5).all()
    for name in ("cka", "svcca", "mutual_knn"):  # half a dictionary shared: far above the derangement null
        assert cal[name]["value"] > cal[name]["null_mean"] + 10 * cal[name]["null_sd"] and cal[name]["p_value"] <= 0.05


def test_support_counts_active_units_per_feature():
    from autointerp.compare.activation import support

    m = sp.csr_matrix(np.array([[0, 1.0, 0], [2.0, 3.0, 0], [0, 0.5, 0], [4.0, 0, 0]], np.float32))
    assert support(m, np.array([0, 1, 2, 3])).tolist() == [2, 3, 0]
    assert support(m, np.array([1, 3])).tolist() == [2, 1, 0]


def test_rare_features_are_left_out_of_matching_and_counted(tmp_path):
    run = make_synthetic_run(tmp_path / "run", SPEC)
    cfg = run_config(run)
    cfg.compare = dataclasses.replace(cfg.compare, representation=False)
    base = compare_models(cfg, cfg.models, progress=False)[0]
    assert (base.stats["n_rare_a"], base.stats["n_rare_b"]) == (0, 0) and base.stats["activation"]["n_pairs"] == 64
    cfg.compare = dataclasses.replace(cfg.compare, min_support=10**9)
    with pytest.raises(UserError, match="min_support"):
        compare_models(cfg, cfg.models, progress=False)  # other settings: refused, naming them, without --overwrite
    strict = compare_models(cfg, cfg.models, progress=False, overwrite=True)[0]
    live_a = strict.stats["n_features_a"] - strict.stats["n_dead_a"]
    live_b = strict.stats["n_features_b"] - strict.stats["n_dead_b"]
    assert (strict.stats["n_rare_a"], strict.stats["n_rare_b"]) == (live_a, live_b)  # every live feature is too rare
    assert strict.stats["activation"]["n_pairs"] == 0 and strict.stats["n_shared"] == 0
