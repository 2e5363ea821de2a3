"""The lexical labeller through the real explain and score stages (no LLM), and the LLM-vs-lexical statistics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from autointerp.config import ModelEntry, RunConfig
from autointerp.eval.paired import compare_kinds, rank_biserial
from autointerp.explain.labels import read_labels, write_labels
from autointerp.rundir.layout import ModelDir
from helpers.runs import FEATURES, make_exemplar_run

SLUG = "gemma-3-270m"


def _lexical_run(tmp_path, score: bool = True):
    from autointerp.cli import stage

    run = make_exemplar_run(tmp_path / "run")
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry(SLUG)])
    cfg.explain = dataclasses.replace(cfg.explain, n_features=3, select="random", labeller="lexical")
    cfg.score = dataclasses.replace(cfg.score, scorers=["embedding"], n_activating=3, n_random=2)
    assert stage("explain").run(cfg).detail == {}  # no LLM, no usage
    if score:
        stage("score").run(cfg)
    return cfg, run


def test_lexical_labels_name_the_words_and_beat_shuffled_ones(tmp_path):
    cfg, run = _lexical_run(tmp_path)
    model = ModelDir(run / SLUG)
    table = read_labels(model.root).set_index("feature")
    assert model.lexical_profile.is_file() and model.label_candidates.is_file()
    for feature, (words, _, _) in FEATURES.items():
        label = table.loc[feature, "lexical_label"]
        named = {w for w in words if f'"{w}"' in label}
        assert len(named) >= min(3, len(words)), label  # its main words, quoted
        assert table.loc[feature, "label"] == label and table.loc[feature, "label_source"] == "lexical"
    assert table["llm_label"].isna().all() and table["status"].eq("ok").all()
    # the word-only label competed on the training windows too (and lost: it says nothing about when)
    candidates = pd.read_parquet(model.label_candidates)
    words = candidates[candidates["source"] == "word"].set_index("feature")
    assert len(words) and words["train_score"].notna().all()
    assert all(words.loc[f, "candidate"] == table.loc[f, "word_label"] != table.loc[f, "lexical_label"] for f in words.index)
    # scored as a label kind of its own, next to the shuffled labels, on the held-out windows
    assert table["lexical_embedding"].notna().all() and table["baseline_embedding"].notna().all()
    assert table["score_embedding"].isna().all()  # there is no LLM label to score
    assert table["lexical_embedding"].mean() > table["baseline_embedding"].mean() + 0.2
    assert np.allclose(table["final_embedding"], table["lexical_embedding"])
    # a re-run is a no-op; other labeller settings are refused without --overwrite
    from autointerp.errors import UserError
    from autointerp.cli import stage

    assert stage("explain").run(cfg).detail == {}
    other = dataclasses.replace(cfg, explain=dataclasses.replace(cfg.explain, labeller="llm"))
    with pytest.raises(UserError, match="labeller"):
        stage("explain").run(other)


def test_report_shows_three_rows_per_scorer_and_a_verdict(tmp_path):
    from autointerp.report.artifacts import load_model_inputs
    from autointerp.report.label_quality import kind_table

    cfg, run = _lexical_run(tmp_path)
    model = ModelDir(run / SLUG)
    table = read_labels(model.root)
    # the LLM labels: weaker descriptions written into the same table (as the explain stage would)
    table["llm_label"] = ["hot things", "things people drink", "the coast"]
    write_labels(model.root, table)
    from autointerp.cli import stage

    stage("score").run(cfg, overwrite=True)
    inputs = load_model_inputs(cfg, run, cfg.models[0])
    text = "\n".join(kind_table(inputs, ["embedding"]))
    for row in ("| embedding | LLM labels |", "| embedding | lexical labels |", "| embedding | shuffled labels |", "| embedding | final labels"):
        assert row in text
    assert "embedding: the LLM labels" in text and "lexical for 3" in text


def test_paired_comparison_statistics():
    llm = np.array([0.9, 0.8, 0.7, 0.75, 0.6, 0.65])
    lexical = np.array([0.5, 0.6, 0.72, 0.5, 0.55, 0.4])
    table = pd.DataFrame({"feature": range(6), "score_embedding": llm, "lexical_embedding": lexical,
                          "baseline_embedding": np.full(6, 0.5), "final_embedding": np.maximum(llm, lexical)})
    c = compare_kinds(table, "embedding")
    diff = llm - lexical
    assert c.n == 6 and c.llm_beats_lexical == pytest.approx(5 / 6)
    assert c.p_value == pytest.approx(wilcoxon(diff).pvalue)
    ranks = pd.Series(np.abs(diff)).rank().to_numpy()
    assert c.effect_size == pytest.approx((ranks[diff > 0].sum() - ranks[diff < 0].sum()) / ranks.sum())
    assert c.means["shuffled"] == pytest.approx(0.5) and c.means["final"] == pytest.approx(np.maximum(llm, lexical).mean())
    assert "do not differ" in c.verdict() or "beat" in c.verdict()
    assert rank_biserial(np.array([0.1, 0.2, 0.3])) == 1.0 and rank_biserial(np.array([-0.1, -0.2])) == -1.0
    missing = compare_kinds(table.drop(columns=["lexical_embedding"]), "embedding")
    assert missing.n == 0 and math.isnan(missing.means["lexical"]) and "too few" in missing.verdict()


def test_export_then_import_round_trips_labels_through_the_cli(tmp_path):
    cfg, run = _lexical_run(tmp_path, score=False)
    for fmt in ("neuronpedia", "delphi"):
        _round_trip(tmp_path, run, fmt)


def _round_trip(tmp_path, run, fmt: str) -> None:
    import json

    from typer.testing import CliRunner

    from autointerp.cli import app

    out = tmp_path / (f"{fmt}-run" if fmt == "delphi" else f"{fmt}.json")  # delphi: its run folder (explanations/ inside)
    runner = CliRunner()
    hookpoint = "layers.6" if fmt == "delphi" else "6-res"  # make_exemplar_run records no hook: named by hand
    result = runner.invoke(app, ["export-labels", str(out), "--run-dir", str(run), "--model", SLUG, "--format", fmt, "--hookpoint", hookpoint])
    assert result.exit_code == 0, result.output
    exported = read_labels(run / SLUG).set_index("feature")["label"]
    if fmt == "neuronpedia":
        data = json.loads(out.read_text())
        assert {(d["index"], d["description"], d["source"]) for d in data} == {(f, l, "6-res") for f, l in exported.items()}
    else:
        data = {p.name: json.loads(p.read_text()) for p in (out / "explanations").iterdir()}
        assert data == {f"layers.6_latent{f}.txt": l for f, l in exported.items()}
    # importing over existing labels is refused with one line; with --overwrite the labels come back, ready to score
    args = ["import-labels", str(out), "--run-dir", str(run), "--model", SLUG]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert runner.invoke(app, args + ["--overwrite"]).exit_code == 0
    imported = read_labels(run / SLUG).set_index("feature")
    assert imported["label"].to_dict() == exported.to_dict() and imported["explainer_model"].eq(f"imported:{fmt}").all()
    assert imported["lexical_label"].notna().all()  # the lexical baseline is there to compare against
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"index": "99", "description": "x"}]))
    wrong = runner.invoke(app, ["import-labels", str(bad), "--run-dir", str(run), "--model", SLUG, "--overwrite"])
    assert wrong.exit_code == 2 and "another SAE" in wrong.output
