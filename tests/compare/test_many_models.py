"""Many models at once (issue 27): the sharing matrix, the universal features and their pages, on synthetic
families of three and four models (and a random-weights stand-in) with planted universal, partly shared (pairs,
triples) and private concepts, through the real compare stage and report."""

from __future__ import annotations

import itertools
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from autointerp.compare.config import CompareConfig
from autointerp.compare.inputs import model_inputs
from autointerp.compare.stage import compare_pair
from autointerp.compare.universal import Link, closed_chains, universal_features
from autointerp.config import ModelEntry, RunConfig
from autointerp.controls.calibration import control_summary
from autointerp.io import write_json
from autointerp.data.corpus import corpus_fingerprint
from autointerp.report.stage import report_stage
from autointerp.rundir.layout import RunDir
from helpers.runs import SyntheticSpec, lexical_codes, synthetic_codes, synthetic_documents, token_table, write_documents, write_synthetic_model

MODELS = ("fam-a", "fam-b", "fam-c")
MODELS4 = MODELS + ("fam-d",)
N_UNIVERSAL, N_PRIVATE, N_WORDS = 16, 8, 10
N_PARTIAL = {3: 8, 4: 4}  # concepts of each proper subset of two or more models (three models: the pairwise-only ones)
COMPARE = CompareConfig(document_level=False, representation=False, bootstrap=200, lexical_min_excess=0.05, seed=0)


def _build_family(run_dir, models: tuple[str, ...]):
    """Every model of ``models`` has the same 16 contextual concepts; each proper subset of two or more of them
    (pairs; with four models triples too) shares ``N_PARTIAL`` more; each model has 8 of its own; all of them and
    the random stand-in R for the last model fire on the same 10 words. Through the real compare stage and the
    controls' merge. Returns (run_dir, concept of each feature per model, the planted sets)."""
    spec = SyntheticSpec(n_docs=60, k=8)
    rng = np.random.default_rng(3)
    docs, spans = synthetic_documents(spec, rng)
    write_documents(run_dir, docs, "synthetic")
    texts = [d.text[s:e] for d, sp in zip(docs, spans) for s, e in sp]
    common = [t for t, _ in sorted(((t, texts.count(t)) for t in set(texts) if t != ","), key=lambda tc: -tc[1])[:N_WORDS]]
    ids = itertools.count()
    universal = [next(ids) for _ in range(N_UNIVERSAL)]
    partial = {sub: [next(ids) for _ in range(N_PARTIAL[len(models)])]
               for size in range(2, len(models)) for sub in itertools.combinations(models, size)}
    private = {m: [next(ids) for _ in range(N_PRIVATE)] for m in models + ("random",)}
    n_ctx = next(ids)
    codes = np.concatenate([synthetic_codes(spec, [len(s) for s in spans], n_ctx, rng), lexical_codes(texts, common, rng)], axis=1)
    words = list(n_ctx + np.arange(N_WORDS))
    concepts = {m: universal + [c for sub, cs in partial.items() if m in sub for c in cs] + private[m] + words for m in models}
    real = models[-1]  # the model with a random-weights stand-in
    concepts[f"{real}-rand"] = private["random"] + words
    fingerprint = corpus_fingerprint(docs)
    feature_concepts = {}
    for i, (slug, cs) in enumerate(concepts.items()):
        perm = rng.permutation(np.asarray(cs))
        feature_concepts[slug] = perm
        d = len(cs) + 6
        write_synthetic_model(run_dir, slug, docs, token_table(spans, split=i % 2 == 1), codes, perm, d, spec, spec.ctx_a, rng, fingerprint, 0)
    cfg = COMPARE
    m = {slug: model_inputs(run_dir, ModelEntry(slug)) for slug in models}
    for a, b in itertools.combinations(models, 2):
        compare_pair(run_dir, m[a], m[b], cfg)
    control = model_inputs(run_dir, ModelEntry(f"{real}-rand"), slug=f"{real}@random")
    floors = []
    for other in models[:-1]:  # the floor: the random stand-in against every other real model
        stats = compare_pair(run_dir, m[other], control, cfg, pair=RunDir(run_dir).controls.floor_pair(other, real)).stats
        floors.append(control_summary(stats, 1.0) | {"random": real, "against": other})
    record = {"ceiling": {}, "floor": floors, "off": {"ceiling_shared_fraction": "off in this test"}}
    write_json(RunDir(run_dir).controls.record, record)  # as `autointerp controls` does: every pair's verdict reads its floor there
    planted = {"universal": set(universal), "words": set(words), "partial": {c for cs in partial.values() for c in cs},
               "pairwise": {c for sub, cs in partial.items() if len(sub) == 2 for c in cs}}
    return run_dir, feature_concepts, planted


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """Three models: A, B, C share 16 contextual concepts; each two of them 8 more (AB, AC, BC only)."""
    return _build_family(tmp_path_factory.mktemp("family"), MODELS)


@pytest.fixture(scope="module")
def family4(tmp_path_factory):
    """Four models: 16 concepts in all four, 4 in each pair only and 4 in each triple only."""
    return _build_family(tmp_path_factory.mktemp("family4"), MODELS4)


@pytest.mark.parametrize("which", ["family", "family4"])
def test_planted_universal_features_are_recovered_and_partly_shared_ones_are_not(which, request):
    run_dir, concept, planted = request.getfixturevalue(which)
    models = list(concept)[:-1]  # the last entry is the random stand-in
    result = universal_features(run_dir, models, [models[-1]])
    found = [{m: int(concept[m][f]) for m, f in c["features"].items()} for c in result["chains"]]
    assert all(len(set(c.values())) == 1 for c in found)  # every chain listed joins one concept
    chains = closed_chains(models, {(a, b): _link(run_dir, a, b) for a, b in itertools.combinations(models, 2)})
    joined = {int(concept[models[0]][f]) for f in chains.features[:, 0]}
    recovered = joined & planted["universal"]
    assert len(recovered) >= 0.9 * N_UNIVERSAL, (len(recovered), sorted(joined))
    assert planted["pairwise"] and not joined & planted["partial"]  # shared by some models only: never universal
    beyond = {int(concept[models[0]][f]) for f in chains.features[chains.beyond, 0]}
    assert len(beyond & planted["universal"]) >= 0.9 * N_UNIVERSAL and not beyond & planted["words"]
    assert result["n_universal"] == len(chains.features) and result["n_beyond_words"] == int(chains.beyond.sum())
    lo, hi = result["n_beyond_words_ci"]
    assert lo <= result["n_beyond_words"] <= hi
    # the floor closure (the random stand-in in the chain): word detectors close, nothing beyond words does
    floor = result["floor"][0]
    assert floor["random"] == models[-1] and floor["n_beyond_words"] <= 1
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
    m = {slug: model_inputs(run_dir, ModelEntry(slug)) for slug in MODELS}
    for a, b in itertools.combinations(MODELS, 2):  # overwrite drops the caches; the family's own settings leave it as it was
        compare_pair(run_dir, m[a], m[b], COMPARE, overwrite=True)
    assert sorted(calls) == sorted(str(RunDir(run_dir).model(s).harvest) for s in MODELS)


def test_a_two_model_report_is_unchanged(tmp_path):
    """No matrix, no universal features, no scale section for a pair: the verdict says it all."""
    import dataclasses

    from helpers.report_run import make_report_run

    cfg = make_report_run(tmp_path)
    cfg = dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, pages=False))
    outcome = report_stage(cfg, progress=False)
    text = outcome.report.read_text()
    assert "## Sharing matrix" not in text and "## Features every model has" not in text and "by model size" not in text
    record = json.loads((RunDir(cfg.run_path).report.record).read_text())
    extra = json.dumps(record)
    assert '"matrix"' not in extra and '"universal"' not in extra and '"scale"' not in extra
    assert not (RunDir(cfg.run_path).root / "plots" / "sharing_matrix.png").exists()


class _Windows(HTMLParser):
    """The windows of a page: per ``div.window``, the doc id of the meta line before it and its rows (who, then
    every word span as (text, title, outlined))."""

    def __init__(self):
        super().__init__()
        self.windows, self.meta, self._open, self._span, self._in_who, self._in_meta = [], "", [], None, False, False

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag == "div":
            self._open.append(cls)
            if cls == "window pair":
                self.windows.append({"doc_id": self.meta.split(" · ")[0], "rows": []})
            elif cls == "side":
                self.windows[-1]["rows"].append({"who": "", "words": []})
            self._in_meta = cls == "meta"
            if self._in_meta:
                self.meta = ""
        elif tag == "span" and self._open and self._open[-1] == "side":
            if cls == "who":
                self._in_who = True
            elif cls.startswith("tok"):
                self._span = [dict(attrs)["title"], cls == "tok max", ""]

    def handle_endtag(self, tag):
        if tag == "div" and self._open:
            self._open.pop()
            self._in_meta = False
        elif tag == "span":
            if self._span is not None:
                title, outlined, text = self._span
                self.windows[-1]["rows"][-1]["words"].append((text, title, outlined))
            self._span, self._in_who = None, False

    def handle_data(self, data):
        if self._span is not None:
            self._span[2] += data
        elif self._in_who:
            self.windows[-1]["rows"][-1]["who"] += data
        elif self._in_meta:
            self.meta += data


def test_every_listed_universal_chain_has_a_page_of_every_models_activations(family, tmp_path):
    """Through the real report: each listed chain's page, linked from report.md and the index, shows every
    window once per model on the same words, each word carrying that model's word-pooled activation, checked
    against the compare stage's own pooling (``pool_harvest``)."""
    from autointerp.compare.encode import pool_harvest
    from autointerp.compare.units import WordIndex
    from autointerp.data.corpus import load_saved_documents
    from autointerp.report.universal import MAX_ROWS
    from autointerp.rundir.layout import universal_page_name
    from autointerp.sae.saelens import load_sae

    run_dir, concept, _ = family
    cfg = RunConfig(run_dir=str(run_dir), models=[ModelEntry(s) for s in MODELS])
    RunDir(run_dir).config.write_text("", encoding="utf-8")
    outcome = report_stage(cfg, tmp_path / "out", progress=False)
    text, index = outcome.report.read_text(), outcome.pages_index.read_text()
    chains = json.loads((tmp_path / "out" / "report.json").read_text())["universal"]["chains"][:MAX_ROWS]
    assert len(chains) == MAX_ROWS
    docs = load_saved_documents(RunDir(run_dir).corpus)
    words = WordIndex.build(docs)
    units = words.texts(docs)
    doc_of = {d.doc_id: i for i, d in enumerate(docs)}
    pooled = {}
    for m in MODELS:
        inputs = model_inputs(run_dir, ModelEntry(m))
        pooled[m] = pool_harvest(load_sae(inputs.sae_dir), inputs.harvest_dir, inputs.manifest, doc_of, words, progress=False)["word"].matrix.tocsc()
    for chain in chains:
        name = universal_page_name(chain["features"].values())
        assert f"(pages/universal/{name})" in text and f'href="universal/{name}"' in index
        page = (tmp_path / "out" / "pages" / "universal" / name).read_text()
        for m, f in chain["features"].items():
            assert f"{m} {f}" in page
        parser = _Windows()
        parser.feed(page)
        assert parser.windows, name
        for w in parser.windows:
            assert [r["who"] for r in w["rows"]] == list(MODELS)  # one row per model, in run order
            texts = [t for t, _, _ in w["rows"][0]["words"]]
            assert all([t for t, _, _ in r["words"]] == texts for r in w["rows"])  # the same words in every row
            d = doc_of[w["doc_id"]]
            starts = [k for k in range(int(words.doc_offsets[d]), int(words.doc_offsets[d + 1]) - len(texts) + 1)
                      if units[k:k + len(texts)] == texts]
            assert starts, w["doc_id"]
            values = {r["who"]: [float(title.split(": ")[1]) for _, title, _ in r["words"]] for r in w["rows"]}
            assert all(title.startswith(f"{r['who']}: ") for r in w["rows"] for _, title, _ in r["words"])
            truth = lambda k, m: pooled[m][k:k + len(texts), chain["features"][m]].toarray().ravel()  # noqa: E731
            assert any(all(np.allclose(values[m], truth(k, m), atol=1e-3) for m in MODELS) for k in starts)
            centre = [i for i, (_, _, outlined) in enumerate(w["rows"][0]["words"]) if outlined]
            assert len(centre) == 1 and all(values[m][centre[0]] > 0 for m in MODELS)  # every model fires on the outlined word
        assert len({tuple(v) for v in values.values()}) == len(MODELS)  # each row its own model's activations


def test_universal_windows_are_stored_once_and_then_only_read(family, monkeypatch):
    """Written into the run, a report stores the chains' windows; the next one reads them and encodes nothing."""
    from autointerp.report import encode_pass, page_data
    from autointerp.report.artifacts import load_run_inputs

    run_dir, _, _ = family
    run = load_run_inputs(RunConfig(run_dir=str(run_dir), models=[ModelEntry(s) for s in MODELS]))
    chains = [c["features"] for c in universal_features(run_dir, list(MODELS), [])["chains"][:3]]
    RunDir(run_dir).universal_windows.unlink(missing_ok=True)
    first = page_data.collect(run, {}, {}, True, chains).universal
    assert RunDir(run_dir).universal_windows.is_file() and first.models == list(MODELS)

    def refuse(*args, **kwargs):
        raise AssertionError("encoded a harvest although the windows were stored")

    monkeypatch.setattr(encode_pass, "encode_for_pages", refuse)
    again = page_data.collect(run, {}, {}, True, chains).universal
    acts = lambda w: [np.vstack(list(r.acts)).astype(np.float32).tolist() for c in chains for r in w.of(c)]  # noqa: E731
    assert acts(first) and acts(again) == acts(first)
    assert again.summary == first.summary
    with pytest.raises(AssertionError, match="encoded a harvest"):  # a chain the file lacks: computed again
        page_data.collect(run, {}, {}, False, chains + [{m: 0 for m in MODELS}])
