"""The verdict: document-bootstrap intervals (exactness and coverage where the population value is known),
the decision rule, and the calls on synthetic model pairs with a known answer through the real compare stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from autointerp.compare import bootstrap as bs
from autointerp.compare.activation import pair_replicates
from autointerp.compare.config import CompareConfig
from autointerp.compare.inputs import model_inputs
from autointerp.compare.lexical import column_correlation
from autointerp.compare.representation import linear_cka, representation_baselines, svcca
from autointerp.compare.stage import compare_pair
from autointerp.compare.verdict import call
from autointerp.config import ModelEntry
from autointerp.controls.calibration import control_summary, with_controls
from autointerp.data.corpus import corpus_fingerprint
from autointerp.report.class_sharing import class_section, class_sharing
from autointerp.rundir.layout import RunDir
from helpers.runs import SyntheticSpec, lexical_codes, synthetic_codes, synthetic_documents, token_table, write_documents, write_synthetic_model


def _cell(lo, hi):
    return {"value": (lo + hi) / 2, "ci": [lo, hi]}


def test_decision_rule_covers_the_four_calls_and_makes_no_claim_without_a_floor():
    floor, ceiling = _cell(0.30, 0.34), _cell(0.50, 0.56)
    assert call(_cell(0.40, 0.45), floor, ceiling) == "above_floor"
    assert call(_cell(0.40, 0.45), floor, None) == "above_floor"
    assert call(_cell(0.40, 0.52), floor, ceiling) == "at_ceiling"
    assert call(_cell(0.58, 0.60), floor, ceiling) == "at_ceiling"  # above the ceiling counts as reaching it
    assert call(_cell(0.31, 0.36), floor, ceiling) == "not_above_floor"
    assert call(_cell(0.20, 0.25), floor, ceiling) == "not_above_floor"
    assert call(_cell(0.32, 0.52), floor, ceiling) == "between"
    assert call(_cell(0.40, 0.45), None, ceiling) is None
    assert call({"value": 0.4, "ci": None}, floor, ceiling) is None


def _clustered(seed: int, k: int = 200, docs: int = 60, per_doc: int = 50):
    """Pairs (x_i, y_i) with a known population correlation: a shared document effect plus correlated noise."""
    rng = np.random.default_rng(seed)
    rho_e, sd = np.linspace(-0.2, 0.8, k), 0.5
    population = (sd**2 + rho_e) / (sd**2 + 1.0)
    u = np.repeat(rng.normal(size=(docs, k)) * sd, per_doc, axis=0)
    e1 = rng.normal(size=(docs * per_doc, k))
    e2 = rho_e * e1 + np.sqrt(1 - rho_e**2) * rng.normal(size=e1.shape)
    return u + e1, u + e2, np.repeat(np.arange(docs), per_doc), population


def test_pair_moments_reproduce_the_correlations_of_a_resampled_corpus():
    x, y, docs, _ = _clustered(0, k=6)
    groups = bs.document_blocks(docs, max_groups=20)  # 60 documents in 20 blocks of 3
    assert groups.max() == 19 and all(len(np.unique(groups[docs == d])) == 1 for d in range(60))
    m = bs.PairMoments.of(sp.csr_matrix(x), sp.csr_matrix(y), groups, 20)
    w = bs.block_weights(20, 2, seed=3)
    rows = np.concatenate([np.flatnonzero(groups == g) for g in range(20) for _ in range(int(w[1, g]))])
    np.testing.assert_allclose(m.correlations(np.ones((1, 20)))[0], column_correlation(sp.csr_matrix(x), sp.csr_matrix(y)), atol=1e-12)
    np.testing.assert_allclose(m.correlations(w[1:])[0], column_correlation(sp.csr_matrix(x[rows]), sp.csr_matrix(y[rows])), atol=1e-10)


def test_shared_count_interval_covers_the_population_count():
    threshold, covered, n = 0.3, 0, 24
    for seed in range(n):
        x, y, docs, population = _clustered(seed)
        groups = bs.document_blocks(docs)
        reps = bs.matching_replicates(sp.csr_matrix(x), sp.csr_matrix(y), groups, bs.block_weights(groups.max() + 1, 400, seed), threshold)
        estimate = int((column_correlation(sp.csr_matrix(x), sp.csr_matrix(y)) > threshold).sum())
        lo, hi = bs.percentile_interval(reps["shared"], centre=estimate)  # as LevelResult.intervals reports it
        covered += lo <= int((population > threshold).sum()) <= hi
    assert covered >= 0.9 * n, covered


def representation_intervals(x, y, offsets, *, seed: int = 0, n_replicates: int, svcca_replicates_n: int, max_units: int) -> dict:
    """The intervals as compare makes them (representation_baselines with a bootstrap; one derangement)."""
    boot = {"n_replicates": n_replicates, "svcca_replicates_n": svcca_replicates_n, "max_blocks": 256}
    return representation_baselines(x, y, offsets, seed=seed, n_permutations=1, max_units=max_units, bootstrap=boot)["intervals"]


def _representations(seed: int, docs: int = 40, per_doc: int = 40):
    """Two views of one latent with a document effect: CKA well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    n = docs * per_doc
    z = rng.normal(size=(n, 6)) + np.repeat(rng.normal(size=(docs, 6)), per_doc, axis=0)
    mix_x, mix_y = np.random.default_rng(99).normal(size=(6, 20)), np.random.default_rng(98).normal(size=(6, 12))
    x, y = z @ mix_x + 2 * rng.normal(size=(n, 20)), z[:, :4] @ mix_y[:4] + 2 * rng.normal(size=(n, 12))
    return x, y, np.arange(0, n + 1, per_doc)


def test_cka_interval_covers_the_population_value_and_blocks_are_exact():
    big_x, big_y, _ = _representations(1000, docs=2000)
    population = linear_cka(big_x, big_y)  # 80,000 units: the population value to within ~0.002
    x, y, offsets = _representations(0)
    groups = bs.document_blocks(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
    blocks = bs.cka_blocks(x, y, groups, int(groups.max()) + 1)
    assert blocks.cka(np.ones((1, groups.max() + 1)))[0] == pytest.approx(linear_cka(x, y), abs=1e-9)
    covered, n = 0, 20
    for seed in range(n):
        x, y, offsets = _representations(seed)
        ci = representation_intervals(x, y, offsets, seed=seed, n_replicates=400, svcca_replicates_n=0, max_units=200)["cka"]["ci"]
        covered += ci[0] <= population <= ci[1]
    assert covered >= 0.9 * n, (covered, population)


def test_svcca_interval_is_centred_on_the_estimate():
    x, y, offsets = _representations(0)
    out = representation_intervals(x, y, offsets, n_replicates=200, svcca_replicates_n=30, max_units=300)
    value = svcca(x, y)["value"]
    assert out["svcca"]["ci"][0] <= value <= out["svcca"]["ci"][1] and out["svcca"]["centred"]
    assert 0 < out["mutual_knn"]["ci"][0] <= out["mutual_knn"]["ci"][1] < 1


# ---- ground truth through the real compare stage -------------------------------------------------------


@pytest.fixture(scope="module")
def verdict_world(tmp_path_factory):
    """One corpus, four synthetic models: A and B share 24 contextual concepts and 12 word detectors; C (the
    floor, standing in for random weights) and D share only the 12 word detectors with A."""
    run_dir = tmp_path_factory.mktemp("verdict")
    spec = SyntheticSpec(n_docs=60, k=8, n_shared=24, n_a_only=16, n_b_only=16)
    rng = np.random.default_rng(0)
    docs, spans = synthetic_documents(spec, rng)
    write_documents(run_dir, docs, "synthetic")
    texts = [d.text[s:e] for d, sp_ in zip(docs, spans) for s, e in sp_]
    common = [t for t, _ in sorted(((t, texts.count(t)) for t in set(texts) if t != ","), key=lambda tc: -tc[1])[:12]]
    n_ctx = 24 + 16 + 16 + 40 + 40  # shared, A-only, B-only, C-only, D-only contextual concepts
    codes = np.concatenate([synthetic_codes(spec, [len(s) for s in spans], n_ctx, rng), lexical_codes(texts, common, rng)], axis=1)
    lexical = n_ctx + np.arange(12)
    concepts = {"synth-a": np.r_[np.arange(24), 24 + np.arange(16), lexical], "synth-b": np.r_[np.arange(24), 40 + np.arange(16), lexical],
                "synth-c": np.r_[56 + np.arange(40), lexical], "synth-d": np.r_[96 + np.arange(40), lexical]}
    fingerprint = corpus_fingerprint(docs)
    for slug, cs in concepts.items():
        spec.d_a = spec.d_b = len(cs) + 8
        write_synthetic_model(run_dir, slug, docs, token_table(spans, split=slug != "synth-a"), codes, rng.permutation(cs), len(cs) + 8, spec,
                     spec.ctx_a, rng, fingerprint, 0)
    cfg = CompareConfig(document_level=False, representation=False, bootstrap=300, lexical_min_excess=0.05, seed=0)
    m = {slug: model_inputs(run_dir, ModelEntry(slug)) for slug in concepts}
    real = compare_pair(run_dir, m["synth-a"], m["synth-b"], cfg).stats
    lexical_only = compare_pair(run_dir, m["synth-a"], m["synth-d"], cfg).stats
    floor_stats = compare_pair(run_dir, m["synth-a"], model_inputs(run_dir, ModelEntry("synth-c"), slug="synth-b@random"), cfg,
                               pair=RunDir(run_dir).controls.floor_pair("synth-a", "synth-b")).stats
    floor = control_summary(floor_stats, 1.0) | {"random": "synth-b", "against": "synth-a"}
    controls = {"ceiling": {}, "floor": [floor], "off": {"ceiling_shared_fraction": "off in this test"}}
    return (with_controls(real["calibration"], controls, real), with_controls(lexical_only["calibration"], controls, lexical_only | {"model_b": "synth-b"}),
            run_dir)


def test_contextual_sharing_is_above_the_floor_and_word_identity_is_not(verdict_world):
    real, lexical_only, _ = verdict_world
    cols = real["verdict"]["columns"]
    assert cols["beyond_words_a"]["call"] == "above_floor" and cols["beyond_words_b"]["call"] == "above_floor", cols["beyond_words_a"]
    assert cols["shared_a"]["call"] == "above_floor"
    assert cols["beyond_words_a"]["count"]["value"] >= 20  # most of the 24 planted contextual concepts
    lo, hi = cols["beyond_words_a"]["count"]["ci"]
    assert lo <= cols["beyond_words_a"]["count"]["value"] <= hi
    lex = lexical_only["verdict"]["columns"]
    assert lex["beyond_words_a"]["call"] == "not_above_floor", lex["beyond_words_a"]
    assert lex["shared_a"]["call"] == "not_above_floor", lex["shared_a"]
    text = " ".join(real["verdict"]["sentences"])
    assert "Word-level sharing is above a random network's" in text and "Beyond word identity the models share" in text
    assert "Word-level sharing is no more than a random network's" in " ".join(lexical_only["verdict"]["sentences"])


def test_per_class_intervals_from_the_per_pair_replicates(verdict_world):
    """The compare stage keeps each matched pair's replicate bits: any subset's count has replicates (the classes'
    intervals in the report), the subsets add up to the whole count, and per class the pair's interval clears
    the floor's where the planted concepts are shared beyond words."""
    real, _, run_dir = verdict_world
    run = RunDir(run_dir)
    pair, floor = run.pair("synth-a", "synth-b"), run.controls.floor_pair("synth-a", "synth-b")
    reps = pair_replicates(pair)
    assert reps is not None and reps.contextual_bits is not None
    n_pairs = len(reps.rows)
    whole = bs.subset_counts(reps.shared_bits, n_pairs)
    half = np.arange(n_pairs) % 2 == 0
    np.testing.assert_array_equal(bs.subset_counts(reps.shared_bits, n_pairs, half) + bs.subset_counts(reps.shared_bits, n_pairs, ~half), whole)
    # all pairs together are the verdict's own count replicates
    count = real["verdict"]["columns"]["shared_a"]["count"]
    np.testing.assert_allclose(bs.percentile_interval(whole, centre=count["value"]), count["ci"])
    # classes by what the comparison found: features of pairs shared beyond words are "contextual", the rest "token"
    m = pd.read_parquet(pair.matches)
    m = m[m["method"].isin(["activation", "both"])]
    beyond = set(m.loc[m["shared"] & (m["kind"] == "contextual"), "feature_a"].astype(int))
    features = sorted(set(m["feature_a"].astype(int)))
    pd.DataFrame({"feature": features, "feature_class": ["contextual" if f in beyond else "token" for f in features]}).to_parquet(run.model("synth-a").feature_stats)
    frame = class_sharing(run_dir, "synth-a").set_index("class")
    ctx, tok = frame.loc["contextual"], frame.loc["token"]
    assert ctx["pair_beyond"] == 1.0 and tok["pair_beyond"] == 0.0
    for row, key in ((ctx, "pair_beyond"), (ctx, "pair_shared"), (tok, "pair_shared"), (ctx, "floor_beyond")):
        lo, hi = row[f"{key}_ci"]
        assert lo <= row[key] <= hi, (key, row[key], lo, hi)
    assert ctx["pair_beyond_ci"][0] > ctx["floor_beyond_ci"][1]  # the planted contextual concepts: the pair clears the floor
    assert tok["pair_shared_ci"][1] - tok["pair_shared_ci"][0] > 0  # the word detectors sit near the threshold: a real spread
    assert tok["pair_beyond_ci"][0] == 0.0 and tok["pair_beyond_ci"][1] < ctx["pair_beyond_ci"][0]
    assert floor.matches.is_file()
    text = "\n".join(class_section(run_dir, ["synth-a"]))
    assert "100.0% [" in text and "95% document-bootstrap intervals" in text
