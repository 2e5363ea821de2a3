"""Label matching with real MiniLM embeddings on labels with known synonym pairs; agreement with activation
matching, domains, abstraction (real exemplar mining on the synthetic run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autointerp.compare.analysis import compare_abstraction
from autointerp.compare.stage import compare_models
from helpers.runs import SyntheticSpec, make_synthetic_run, write_labels
from autointerp.config import ModelEntry, RunConfig
from autointerp.data.corpus import load_saved_documents
from autointerp.exemplars.mine import ExemplarConfig, mine_exemplars
from autointerp.sae.saelens import load_sae

# (label of A, synonym for B, domain)
SYNONYMS = [
    ("mountain ranges and peaks", "high mountains and summits", "geography"),
    ("inflation and consumer prices", "rising price levels and the inflation rate", "economy"),
    ("parliamentary elections", "voting for members of the legislature", "politics/government"),
    ("army and navy personnel", "armed forces and soldiers", "military"),
    ("religious affiliation of the population", "religions practised by residents", "people/society"),
    ("crude oil production", "petroleum output in barrels per day", "energy/environment"),
    ("airports with paved runways", "airfields and landing strips", "transport/communications"),
    ("independence from colonial rule", "gaining independence from a colonial power", "history"),
    ("percentages and decimal numbers", "numeric values followed by a percent sign", "numbers/units/format"),
    ("plural noun suffixes", "word endings that mark plural nouns", "language/grammar"),
    ("exports of goods", "products sold to foreign countries", "economy"),
    ("telephone and internet subscriptions", "mobile phone and broadband users", "transport/communications"),
]
SPEC = SyntheticSpec(n_shared=16, n_a_only=16, n_b_only=20, d_a=32, d_b=40, entity_level_a_only=True)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Synthetic run; labels on 12 truly shared pairs (synonyms), two more pairs labelled inconsistently
    (a disagreement), one failed label; real exemplars for the abstraction measure."""
    run = make_synthetic_run(tmp_path_factory.mktemp("synth_labels") / "run", SPEC)
    truth = sorted(run.truth)
    labels_a, labels_b = {}, {}
    for (fa, fb), (la, lb, _) in zip(truth, SYNONYMS):
        labels_a[fa], labels_b[fb] = la, lb
    (xa, xb), (ya, yb) = truth[12], truth[13]  # swapped labels: label matching pairs xa<->yb, activation xa<->xb
    labels_a[xa], labels_b[yb] = "desert climate and arid land", "dry desert regions"
    labels_a[ya], labels_b[xb] = "national anthem lyrics", "the words of the national anthem"
    labels_a[truth[14][0]] = None  # a failed label is skipped
    write_labels(run.run_dir / run.slugs[0], labels_a)
    write_labels(run.run_dir / run.slugs[1], labels_b)
    docs = load_saved_documents(run.run_dir / "corpus")
    for slug in run.slugs:
        mine_exemplars(load_sae(run.run_dir / slug / "sae"), run.run_dir / slug / "harvest", docs, run.run_dir / slug,
                       ExemplarConfig(n_top=10, n_random=4), progress=False)
    cfg = RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    return run, truth, (xa, xb, ya, yb), compare_models(cfg, cfg.models, progress=False)[0], cfg


@pytest.mark.slow  # real MiniLM embeddings + exemplar mining: ~40 s on a busy 2-core box
def test_label_matching_recovers_synonym_pairs(labelled):
    _run, truth, _, outcome, _ = labelled
    matches = pd.read_parquet(outcome.out_dir / "matches.parquet")
    by_label = matches[matches["method"].isin(["label", "both"])]
    label_pairs = set(zip(by_label["feature_a"].tolist(), by_label["feature_b"].tolist()))
    assert len(set(truth[:12]) & label_pairs) >= 11
    assert outcome.stats["label"]["available"] and outcome.stats["label"]["n_labelled_a"] == 14
    row = matches[(matches["feature_a"] == truth[0][0]) & (matches["feature_b"] == truth[0][1])].iloc[0]
    assert row["label_a"] == SYNONYMS[0][0] and row["label_b"] == SYNONYMS[0][1]
    assert row["label_similarity"] > 0.5 and row["shared"] and row["method"] == "both"


@pytest.mark.slow  # real MiniLM embeddings + exemplar mining: ~40 s on a busy 2-core box
def test_agreement_and_disagreements_are_reported(labelled):
    _run, truth, (xa, xb, ya, yb), outcome, _ = labelled
    ag = outcome.stats["agreement"]
    assert ag["n_comparable"] == 14 and ag["n_both"] >= 11 and ag["fraction"] == pytest.approx(ag["n_both"] / 14)
    listed = {d["feature_a"] for d in ag["disagreements"]}
    assert {xa, ya} <= listed
    d = next(d for d in ag["disagreements"] if d["feature_a"] == xa)
    assert d["activation_partner"] == xb and d["label_partner"] == yb and d["shared"]
    matches = pd.read_parquet(outcome.out_dir / "matches.parquet")
    methods = matches.set_index(["feature_a", "feature_b"])["method"]
    assert methods[(xa, xb)] == "activation" and methods[(xa, yb)] == "label"
    # agreeing shared pairs rank above activation-only ones in the combined ranking
    ranks = matches.set_index(["feature_a", "feature_b"])["combined_rank"]
    assert max(ranks[p] for p in truth[:3]) < ranks[(xa, xb)]


@pytest.mark.slow  # real MiniLM embeddings + exemplar mining: ~40 s on a busy 2-core box
def test_domains_zero_shot(labelled):
    run, truth, _, outcome, _ = labelled
    feats = pd.read_parquet(outcome.out_dir / "features.parquet")
    got = feats[feats["model"] == run.slugs[0]].set_index("feature")["domain"]
    correct = sum(got[fa] == dom for (fa, _), (_, _, dom) in zip(truth, SYNONYMS))
    assert correct >= 9, [(got[fa], dom) for (fa, _), (_, _, dom) in zip(truth, SYNONYMS)]
    counts, s = outcome.stats["domains"]["counts_a"], outcome.stats
    # every live matchable feature is counted (issue 22), not only the 14 labelled ones; a label decides its domain
    assert sum(counts.values()) == s["n_features_a"] - s["n_dead_a"] - s["n_rare_a"] > 14
    assert outcome.stats["domains"]["counts_shared"]["economy"] >= 1


@pytest.mark.slow  # real MiniLM embeddings + exemplar mining: ~40 s on a busy 2-core box
def test_abstraction_detects_entity_level_model(labelled):
    """A's own concepts fire in one entity's documents only: A must come out as the more entity-level model."""
    run, _, _, outcome, _ = labelled
    ab = outcome.stats["abstraction"]
    assert ab["p_value"] < 0.01 and ab["a"]["median"] < ab["b"]["median"]
    assert ab["finding"].startswith(f"{run.slugs[1]} features span more distinct entities")
    feats = pd.read_parquet(outcome.out_dir / "features.parquet")
    assert (feats.loc[~feats["dead"], "n_docs_spanned"] > 0).all()
    spec = ab["label_specificity"]
    assert spec["a"]["n_features"] == 14 and 0 < spec["a"]["median"] < 1 and 0 <= spec["p_value"] <= 1


def test_abstraction_no_difference_is_said_plainly():
    rng = np.random.default_rng(0)
    res = compare_abstraction("x", rng.integers(1, 20, 300).astype(float), "y", rng.integers(1, 20, 300).astype(float))
    assert res.p_value > 0.01 and "do not support" in res.finding


def test_abstraction_claims_need_significance_and_a_large_effect():
    """Thousands of features make a negligible shift significant: no claim unless the common-language
    effect also leaves [0.44, 0.56]; a real shift is still called."""
    rng = np.random.default_rng(1)
    small = compare_abstraction("x", rng.poisson(10.0, 20000).astype(float) + 1, "y", rng.poisson(10.4, 20000).astype(float) + 1)
    assert small.p_value < 1e-6 and 0.44 <= small.effect <= 0.56
    assert "no meaningful difference" in small.finding and "more thematic" not in small.finding
    large = compare_abstraction("x", rng.poisson(10.0, 2000).astype(float) + 1, "y", rng.poisson(14.0, 2000).astype(float) + 1)
    assert large.p_value < 0.01 and large.effect < 0.44
    assert large.finding.startswith("y features span more distinct entities") and "y is the more thematic model" in large.finding
    strict = compare_abstraction("x", rng.poisson(10.0, 2000).astype(float) + 1, "y", rng.poisson(14.0, 2000).astype(float) + 1, min_effect=0.49)
    assert "no meaningful difference" in strict.finding


@pytest.mark.slow  # real MiniLM embeddings + exemplar mining: ~40 s on a busy 2-core box
def test_new_labels_rerun_reuses_the_activation_cache(labelled):
    run, truth, _, outcome, cfg = labelled
    cache = sorted((outcome.out_dir / "cache").glob("*.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in cache}
    again = compare_models(cfg, cfg.models, progress=False)[0]
    assert again.skipped  # unchanged inputs: a no-op
    fa, _fb = truth[15]
    labels = pd.read_parquet(run.run_dir / run.slugs[0] / "labels.parquet")
    labels.loc[len(labels)] = {**labels.iloc[0].to_dict(), "feature": fa, "label": "coastline length in kilometres"}
    labels.to_parquet(run.run_dir / run.slugs[0] / "labels.parquet", index=False)
    third = compare_models(cfg, cfg.models, progress=False)[0]
    assert not third.skipped and third.stats["label"]["n_labelled_a"] == 15
    assert {p: p.stat().st_mtime_ns for p in cache} == before  # correlation not recomputed
    assert third.stats["n_shared"] == outcome.stats["n_shared"]
