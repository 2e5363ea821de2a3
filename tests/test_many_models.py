"""Many models at once (issue 27): the sharing matrix and the universal features, on a synthetic family of three
models (and a random-weights stand-in) with planted universal, pairwise-only and private concepts, through the
real compare stage and report."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from autointerp.compare.config import CompareConfig
from autointerp.compare.inputs import model_inputs
from autointerp.compare.stage import compare_pair
from autointerp.compare.universal import Link, closed_chains, universal_features
from autointerp.config import ModelEntry, RunConfig
from autointerp.controls.calibration import control_summary
from autointerp.io import write_json
from autointerp.data.corpus import CorpusConfig, CorpusStats, corpus_fingerprint, save_documents
from autointerp.report.stage import report_stage
from autointerp.rundir.layout import RunDir
from synthetic_run import SyntheticSpec, _codes, _documents, _tokens, _write_model
from test_verdict import _lexical_codes

MODELS = ("fam-a", "fam-b", "fam-c")
N_UNIVERSAL, N_PAIRWISE, N_PRIVATE, N_WORDS = 16, 8, 8, 10


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """A, B, C share 16 contextual concepts; each two of them share 8 more (AB, AC, BC only); each has 8 of its
    own; all three and the random stand-in R (for C) fire on the same 10 words. Returns (run_dir, concept of
    each feature per model, the planted sets)."""
    run_dir = tmp_path_factory.mktemp("family")
    spec = SyntheticSpec(n_docs=60, k=8)
    rng = np.random.default_rng(3)
    docs, spans = _documents(spec, rng)
    save_documents(RunDir(run_dir).corpus, docs, CorpusStats(n_seen=len(docs), n_kept=len(docs)), CorpusConfig(dataset="synthetic"))
    texts = [d.text[s:e] for d, sp in zip(docs, spans) for s, e in sp]
    common = [t for t, _ in sorted(((t, texts.count(t)) for t in set(texts) if t != ","), key=lambda tc: -tc[1])[:N_WORDS]]
    ids = itertools.count()
    universal = [next(ids) for _ in range(N_UNIVERSAL)]
    pairwise = {pair: [next(ids) for _ in range(N_PAIRWISE)] for pair in itertools.combinations(MODELS, 2)}
    private = {m: [next(ids) for _ in range(N_PRIVATE)] for m in MODELS + ("random",)}
    n_ctx = next(ids)
    codes = np.concatenate([_codes(spec, [len(s) for s in spans], n_ctx, rng), _lexical_codes(texts, common, rng)], axis=1)
    words = list(n_ctx + np.arange(N_WORDS))
    concepts = {m: universal + [c for pair, cs in pairwise.items() if m in pair for c in cs] + private[m] + words for m in MODELS}
    concepts["fam-c-rand"] = private["random"] + words
    fingerprint = corpus_fingerprint(docs)
    feature_concepts = {}
    for i, (slug, cs) in enumerate(concepts.items()):
        perm = rng.permutation(np.asarray(cs))
        feature_concepts[slug] = perm
        d = len(cs) + 6
        _write_model(run_dir, slug, docs, _tokens(spans, split=i % 2 == 1), codes, perm, d, spec, spec.ctx_a, rng, fingerprint, 0)
    cfg = CompareConfig(document_level=False, representation=False, bootstrap=200, lexical_min_excess=0.05, seed=0)
    m = {slug: model_inputs(run_dir, ModelEntry(slug)) for slug in MODELS}
    for a, b in itertools.combinations(MODELS, 2):
        compare_pair(run_dir, m[a], m[b], cfg)
    control = model_inputs(run_dir, ModelEntry("fam-c-rand"), slug="fam-c@random")
    floors = []
    for other in MODELS[:2]:  # the floor: C's random-weights stand-in against every other real model
        stats = compare_pair(run_dir, m[other], control, cfg, pair=RunDir(run_dir).controls.floor_pair(other, "fam-c")).stats
        floors.append(control_summary(stats, 1.0) | {"random": "fam-c", "against": other})
    record = {"ceiling": {}, "floor": floors, "off": {"ceiling_shared_fraction": "off in this test"}}
    write_json(RunDir(run_dir).controls.record, record)  # as `autointerp controls` does: every pair's verdict reads its floor there
    return run_dir, feature_concepts, {"universal": set(universal), "pairwise": {c for cs in pairwise.values() for c in cs}, "words": set(words)}


def test_planted_universal_features_are_recovered_and_pairwise_ones_are_not(family):
    run_dir, concept, planted = family
    result = universal_features(run_dir, list(MODELS), ["fam-c"])
    found = [{m: int(concept[m][f]) for m, f in c["features"].items()} for c in result["chains"]]
    assert all(len(set(c.values())) == 1 for c in found)  # every chain listed joins one concept
    chains = closed_chains(list(MODELS), {(a, b): _link(run_dir, a, b) for a, b in itertools.combinations(MODELS, 2)})
    joined = {int(concept["fam-a"][f]) for f in chains.features[:, 0]}
    recovered = joined & planted["universal"]
    assert len(recovered) >= 0.9 * N_UNIVERSAL, (len(recovered), sorted(joined))
    assert not joined & planted["pairwise"]  # shared by two models only: never universal
    beyond = {int(concept["fam-a"][f]) for f in chains.features[chains.beyond, 0]}
    assert len(beyond & planted["universal"]) >= 0.9 * N_UNIVERSAL and not beyond & planted["words"]
    assert result["n_universal"] == len(chains.features) and result["n_beyond_words"] == int(chains.beyond.sum())
    lo, hi = result["n_beyond_words_ci"]
    assert lo <= result["n_beyond_words"] <= hi
    # the floor closure (C's random stand-in in the chain): word detectors close, nothing beyond words does
    floor = result["floor"][0]
    assert floor["random"] == "fam-c" and floor["n_beyond_words"] <= 1
    assert floor["n_universal"] >= 0.8 * N_WORDS
    assert lo > floor["n_beyond_words_ci"][1]


def _link(run_dir, a, b) -> Link:
    from autointerp.compare.universal import read_link

    return read_link(RunDir(run_dir).pair(a, b), a, b)


def test_a_chain_that_closes_inconsistently_is_never_counted():
    hit = lambda f, r=0.9: (f, r, True, True)  # noqa: E731 - (partner, corr, shared, beyond words)
    links = {("a", "b"): Link("a", "b", {1: hit(10), 2: hit(20)}, None),
             ("b", "c"): Link("b", "c", {10: hit(100), 20: hit(200)}, None),
             ("a", "c"): Link("a", "c", {1: hit(100), 2: hit(300)}, None)}  # 2 -> 300, but 20 -> 200
    chains = closed_chains(["a", "b", "c"], links)
    assert chains.features.tolist() == [[1, 10, 100]]
    links[("b", "c")].forward[10] = (100, 0.2, False, False)  # a link below its null breaks the chain
    assert closed_chains(["a", "b", "c"], links).features.shape == (0, 3)


def test_report_has_the_matrix_and_the_universal_features(family, tmp_path):
    run_dir, _, _ = family
    cfg = RunConfig(run_dir=str(run_dir), models=[ModelEntry(s) for s in MODELS])
    cfg.report.pages = False
    RunDir(run_dir).config.write_text("", encoding="utf-8")
    outcome = report_stage(cfg, tmp_path / "out", progress=False)
    text = outcome.report.read_text()
    assert "## Sharing matrix" in text and "## Features every model has" in text
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    matrix = data["extra"]["matrix"] if "extra" in data else data["matrix"]
    assert matrix["models"] == list(MODELS)
    shared = matrix["cells"]["shared"]
    for i, j in itertools.permutations(range(3), 2):
        cell = shared[i][j]
        assert cell["ci"][0] <= cell["value"] <= cell["ci"][1]
    # A shares 16 universal + 8 pairwise + 10 word concepts with B out of its 48 live features
    assert 0.6 < shared[0][1]["value"] <= 34 / 48 + 0.02
    assert all(matrix["floor"]["beyond_words"][i]["value"] < 0.05 for i in range(2))
    universal = data["extra"]["universal"] if "extra" in data else data["universal"]
    assert universal["n_beyond_words_call"] == "above_floor"
    assert (tmp_path / "out" / "plots" / "sharing_matrix.png").is_file()


def test_sharing_by_model_size_is_called_only_when_intervals_separate():
    from types import SimpleNamespace

    from autointerp.report.matrix import by_scale, scale_section

    def cell(v, lo, hi):
        return {"value": v, "ci": [lo, hi], "call": None}

    models = ["ref", "small", "mid", "large"]
    run = SimpleNamespace(models=[SimpleNamespace(slug=s, manifest={"model": {"n_params": n}}) for s, n in zip(models, [5e8, 1e8, 3e8, 9e8])])
    run.models[0].spec = "ref"
    shared = [[None, cell(0.2, 0.18, 0.22), cell(0.25, 0.2, 0.3), cell(0.3, 0.28, 0.33)]] + [[None] * 4] * 3
    beyond = [[None, cell(0.05, 0.03, 0.07), cell(0.05, 0.04, 0.06), cell(0.06, 0.05, 0.08)]] + [[None] * 4] * 3
    matrix = {"models": models, "cells": {"shared": shared, "beyond_words": beyond, "cka": [[None] * 4] * 4}}
    scale = by_scale(run, matrix)
    assert [r["model"] for r in scale["models"]] == ["small", "mid", "large"]  # ordered by parameters
    assert scale["shared_call"] == "rises" and scale["beyond_words_call"] == "no_claim"  # 0.05-0.08 overlaps 0.03-0.07
    text = "\n".join(scale_section(scale))
    assert "rises with size" in text and "no claim" in text and "| `large` | 900M |" in text
    run.models[2].spec = "ref"  # another layer of the reference model: no point on the size axis
    assert [r["model"] for r in by_scale(run, matrix)["models"]] == ["small", "large"]
    del run.models[2].spec
    run.models[2].manifest = {}  # a model of unknown size drops out; two known distinct sizes still order
    assert [r["model"] for r in by_scale(run, matrix)["models"]] == ["small", "large"]
    run.models[1].manifest = {}
    assert by_scale(run, matrix) is None  # one known size: nothing to order


def test_each_model_is_encoded_once_across_its_pairs(family, monkeypatch):
    """The pairwise work reuses each model's pooled encodings: three pairs, three encodings (not six)."""
    from autointerp.compare import activation

    run_dir, _, _ = family
    calls = []
    real = activation.pool_harvest

    def counting(sae, harvest_dir, *args, **kwargs):
        calls.append(str(harvest_dir))
        return real(sae, harvest_dir, *args, **kwargs)

    monkeypatch.setattr(activation, "pool_harvest", counting)
    monkeypatch.setattr(activation, "_POOLED", activation.OrderedDict())
    cfg = CompareConfig(document_level=False, representation=False, bootstrap=20, lexical_min_excess=0.05, seed=7)  # new settings: nothing cached
    m = {slug: model_inputs(run_dir, ModelEntry(slug)) for slug in MODELS}
    for a, b in itertools.combinations(MODELS, 2):
        compare_pair(run_dir, m[a], m[b], cfg, overwrite=True)
    assert sorted(calls) == sorted(str(RunDir(run_dir).model(s).harvest) for s in MODELS)


def test_a_two_model_report_is_unchanged(tmp_path):
    """No matrix, no universal features, no scale section for a pair: the verdict says it all."""
    import dataclasses

    from test_report_fixture import make_run

    cfg = make_run(tmp_path)
    cfg = dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, pages=False))
    outcome = report_stage(cfg, progress=False)
    text = outcome.report.read_text()
    assert "## Sharing matrix" not in text and "## Features every model has" not in text and "by model size" not in text
    record = json.loads((RunDir(cfg.run_path).report.record).read_text())
    extra = json.dumps(record)
    assert '"matrix"' not in extra and '"universal"' not in extra and '"scale"' not in extra
    assert not (RunDir(cfg.run_path).root / "plots" / "sharing_matrix.png").exists()
