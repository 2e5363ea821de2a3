"""Concept domains over every live matchable feature (issue 22 item 6), through the real stages on a synthetic
run (exemplars and lexical profiles mined, a few labels, compare with real MiniLM embeddings), for the pair
and for a control whose side has no exemplars; and the report's domain table showing those counts."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
from helpers.runs import SyntheticSpec, make_synthetic_run, write_labels

from autointerp.compare.domains import METHOD
from autointerp.compare.inputs import model_inputs, model_names
from autointerp.compare.stage import compare_models, compare_pair
from autointerp.compare.summary import print_summary
from autointerp.config import ModelEntry, RunConfig
from autointerp.cli import stage
from autointerp.explain.names import LEXICAL_MARKER
from autointerp.report.artifacts import load_pair_inputs
from autointerp.report.domains import domain_section
from autointerp.report.fmt import md_text
from autointerp.rundir.layout import RunDir

SPEC = SyntheticSpec(n_shared=16, n_a_only=16, n_b_only=20, d_a=36, d_b=40, n_dead_a=3)
LABELS = {0: "crude oil production", 1: "parliamentary elections", 2: "army and navy personnel"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    run = make_synthetic_run(tmp_path_factory.mktemp("domains") / "run", SPEC)
    cfg = RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    cfg.compare.document_level = False
    cfg.compare.representation = False
    stage("exemplars").run(cfg)  # exemplars and lexical profiles, by the stage itself
    write_labels(RunDir(run.run_dir).model(run.slugs[0]).root, LABELS)
    outcome = compare_models(cfg, cfg.models, progress=False)[0]
    return run, cfg, outcome


def _live(stats: dict, side: str) -> int:
    return stats[f"n_features_{side}"] - stats[f"n_dead_{side}"] - stats[f"n_rare_{side}"]


@pytest.mark.slow  # real MiniLM embeddings + exemplar mining
def test_domains_count_every_live_matchable_feature(compared):
    run, _cfg, outcome = compared
    d, stats = outcome.stats["domains"], outcome.stats
    assert d["method"] == METHOD and stats["n_dead_a"] >= SPEC.n_dead_a
    for side in ("a", "b"):
        assert d[f"n_live_{side}"] == _live(stats, side) > len(LABELS)  # all of them, not the labelled few
        assert sum(d[f"counts_{side}"].values()) == _live(stats, side) and d[f"n_unassigned_{side}"] == 0
    assert sum(d["counts_shared"].values()) == stats["n_shared"] and d["n_shared_unassigned"] == 0
    feats = pd.read_parquet(outcome.out_dir / "features.parquet")
    for slug, side in zip(run.slugs, ("a", "b")):
        mine = feats[feats["model"] == slug]
        assert mine["domain"].notna().sum() == _live(stats, side)
        assert mine.loc[mine["dead"], "domain"].isna().all()
        assert mine["domain"].value_counts().to_dict() == {k: v for k, v in d[f"counts_{side}"].items() if v}


@pytest.fixture(scope="module")
def control(compared):
    """A ceiling-like control: A's SAE against a copy of itself as the "second seed" (no exemplars of its own),
    compared into the control's own pair directory; and whether the model's embedding cache was rewritten."""
    run, cfg, _ = compared
    rundir = RunDir(run.run_dir)
    entry = cfg.models[0]
    second = rundir.controls.ceiling_sae(entry.slug)
    shutil.copytree(rundir.model(entry.slug).sae_dir, second.root)
    cache = rundir.model(entry.slug).text_embeddings
    before = cache.stat().st_mtime_ns
    a, b = model_inputs(run.run_dir, entry), model_inputs(run.run_dir, entry, sae=second, slug=f"{entry.slug}@copy")
    outcome = compare_pair(run.run_dir, a, b, cfg.compare, progress=False, pair=rundir.controls.ceiling_pair(entry.slug))
    return outcome, cache.stat().st_mtime_ns != before


@pytest.mark.slow
def test_a_control_side_without_exemplars_is_counted_by_the_real_side(compared, control):
    _run, _cfg, outcome = compared
    ceiling, cache_rewritten = control
    d = ceiling.stats["domains"]
    assert d["counts_b"] is None and d["n_unassigned_b"] == d["n_live_b"] == _live(ceiling.stats, "b")
    assert d["counts_a"] == outcome.stats["domains"]["counts_a"]  # the same features, the same texts, the same domains
    assert sum(d["counts_shared"].values()) == ceiling.stats["n_shared"] > 0 and d["n_shared_unassigned"] == 0
    assert not cache_rewritten  # every text's embedding came from the model's cache


@pytest.mark.slow
def test_report_domain_table_shows_the_counts_and_the_controls(compared, control):
    run, _cfg, outcome = compared
    ceiling = control[0].stats["domains"]
    md = domain_section(load_pair_inputs(run.run_dir, *run.slugs))
    d = outcome.stats["domains"]
    assert f"`{run.slugs[0]}` {d['n_live_a']:,}" in md and md_text(METHOD) in md
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| domain"))
    assert f"ceiling: `{run.slugs[0]}` shared with its 2nd seed" in header
    for name in d["names"]:
        row = next(line for line in lines if line.startswith(f"| {md_text(name)} |"))
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        assert cells[1:5] == [f"{d['counts_a'][name]:,}", f"{d['counts_b'][name]:,}", f"{d['counts_shared'][name]:,}",
                              f"{ceiling['counts_shared'][name]:,}"], (name, cells)


@pytest.mark.slow
def test_compare_console_names_the_top_shared_pairs(compared, capsys):
    run, cfg, outcome = compared
    a, b = (model_inputs(run.run_dir, e) for e in cfg.models)
    names = (model_names(a), model_names(b))
    assert names[0][0].source == "label" and names[0][5].source == "lexical" and len(names[1]) >= _live(outcome.stats, "b")
    print_summary(outcome.out_dir, outcome.stats, False, names=names)
    err = " ".join(capsys.readouterr().err.split())
    top = pd.read_parquet(outcome.out_dir / "matches.parquet").query("shared").sort_values("activation_corr", ascending=False)
    first = top.iloc[0]
    assert LEXICAL_MARKER.strip() in err and "not labelled" not in err
    assert names[0][int(first.feature_a)].text.split()[0] in err and "concept domains (zero-shot on every live matchable feature" in err


def test_the_embedding_cache_embeds_only_new_texts(tmp_path, monkeypatch):
    from autointerp.models import embedder

    calls: list[int] = []
    real = embedder.embed_texts
    monkeypatch.setattr(embedder, "embed_texts", lambda texts, *a, **k: calls.append(len(texts)) or real(texts, *a, **k))
    cache = tmp_path / "text_embeddings.npz"
    first = embedder.embed_texts_cached(["ports and harbours", "crude oil"], "minilm-l6", cache)
    again = embedder.embed_texts_cached(["crude oil", "army personnel", "ports and harbours"], "minilm-l6", cache)
    assert calls == [2, 1]  # only "army personnel" was new
    assert (again[[2, 0]] == first).all() and again.shape == (3, first.shape[1])
    assert abs(float(again[1] @ real(["army personnel"])[0]) - 1.0) < 1e-5
    assert embedder.embed_texts_cached(["crude oil"], "minilm-l6", cache).shape == (1, first.shape[1]) and calls == [2, 1]
