"""The run's console summary and the label-score plot show LLM, lexical, shuffled and final labels per scorer.

On the report fixture run (two models, two scorers) with lexical and final scores added to labels.parquet the
way the score stage writes them (lexical_<S>, final_<S>; one feature without a lexical score).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from helpers.report_run import FAILED_FEATURE, SCORERS, make_report_run

from autointerp.explain.labels import read_labels, write_labels
from autointerp.report.artifacts import load_run_inputs
from autointerp.report.plots import score_plot, score_plot_data
from autointerp.report.summary import summary_table
from autointerp.rundir.layout import ModelDir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLUMNS = {"llm": "score", "lexical": "lexical", "shuffled": "baseline", "final": "final"}


def _with_lexical(cfg, seed: int = 1):
    """Add lexical and final scores (final = the lexical score where label_source is lexical) to every model."""
    rng = np.random.default_rng(seed)
    for model in cfg.models:
        folder = ModelDir(cfg.run_path / model.slug)
        table = read_labels(folder.root)
        table["label_source"] = ["lexical" if f % 2 else "llm" for f in table["feature"]]
        for s in SCORERS:
            lexical = np.round(rng.uniform(0.5, 0.9, len(table)), 4)
            lexical[FAILED_FEATURE] = np.nan
            lexical[0] = np.nan  # one feature without a lexical label
            table[f"lexical_{s}"] = lexical
            table[f"final_{s}"] = np.where(table["label_source"] == "lexical", table[f"lexical_{s}"], table[f"score_{s}"])
        write_labels(folder.root, table)
    return cfg


def _expected(cfg) -> dict:
    out = {}
    for model in cfg.models:
        table = pd.read_parquet(ModelDir(cfg.run_path / model.slug).labels)
        for s in SCORERS:
            for kind, prefix in COLUMNS.items():
                column = table[f"{prefix}_{s}"] if f"{prefix}_{s}" in table.columns else pd.Series(dtype=float)
                out[(model.slug, s, kind)] = (float(column.mean()) if column.notna().any() else float("nan"), int(column.notna().sum()))
    return out


def _score_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(model, scorer) -> the cells of its row in the label-scores table (a blank model cell continues the model above)."""
    rows, model = {}, None
    section = text.split("label scores")[1].split("cross-model matching")[0]
    for line in section.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        model = cells[0] or model
        rows[(model, cells[1])] = cells[2:]
    return rows


def _render(run, width: int = 80) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(summary_table(run))
    return console.export_text()


@pytest.fixture(scope="module")
def lexical_run(tmp_path_factory):
    return _with_lexical(make_report_run(tmp_path_factory.mktemp("summary")))


def test_summary_shows_llm_lexical_shuffled_and_final_per_scorer(lexical_run):
    cfg = lexical_run
    text = _render(load_run_inputs(cfg))
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "shuffled" in line and "final*" in line)
    assert header.index("LLM") < header.index("lexical") < header.index("shuffled") < header.index("final*")
    assert "final*: per feature the LLM or the lexical label" in " ".join(text.split())
    expected, rows = _expected(cfg), _score_rows(text)
    for model in cfg.models:
        table = pd.read_parquet(ModelDir(cfg.run_path / model.slug).labels)
        for s in SCORERS:
            cells = rows[(model.slug, s)]  # every mean whole in its own cell, in column order
            assert cells[:4] == [f"{expected[(model.slug, s, kind)][0]:.3f}" for kind in COLUMNS], (cells, s)
            both = table[f"score_{s}"].notna() & table[f"lexical_{s}"].notna()
            diff = table.loc[both, f"score_{s}"] - table.loc[both, f"lexical_{s}"]
            assert cells[4] == f"{float(((diff > 0) + 0.5 * (diff == 0)).mean()):.0%}"
    assert re.search(r"alpha .* token", text)  # the level labels were scored at


def test_summary_marks_missing_kinds_and_the_sequence_level(tmp_path):
    cfg = make_report_run(tmp_path)  # scored before lexical labels existed: LLM and shuffled only
    folder = ModelDir(cfg.run_path / "beta")
    meta = json.loads(folder.labels_meta.read_text())
    folder.labels_meta.write_text(json.dumps(meta | {"score_level": "sequence"}))
    text = _render(load_run_inputs(cfg))
    assert max(len(line) for line in text.splitlines()) <= 80
    expected = _expected(cfg)
    llm, shuffled = expected[("alpha", SCORERS[0], "llm")][0], expected[("alpha", SCORERS[0], "shuffled")][0]
    assert _score_rows(text)[("alpha", SCORERS[0])] == [f"{llm:.3f}", "—", f"{shuffled:.3f}", "—", "—"]
    assert re.search(r"beta .* sequence", text) and re.search(r"alpha .* token", text)
    from autointerp.report.label_quality import label_section

    md = label_section(load_run_inputs(cfg))
    assert md.split("### `beta`")[1].count("Scored at sequence level") == 1 and "Scored at sequence level" not in md.split("### `beta`")[0]


def test_score_plot_draws_the_four_kinds_and_its_data_matches_labels(lexical_run, tmp_path):
    cfg = lexical_run
    run = load_run_inputs(cfg)
    data = score_plot_data(run)
    expected = _expected(cfg)
    assert {(d["model"], d["scorer"], d["kind"]) for d in data} == set(expected)
    for d in data:
        mean, n = expected[(d["model"], d["scorer"], d["kind"])]
        assert d["mean"] == pytest.approx(mean) and d["n"] == n
    assert [d["kind"] for d in data[:4]] == ["llm", "lexical", "shuffled", "final"]
    plot = score_plot(run, tmp_path)
    path = tmp_path / plot.path
    assert path.read_bytes()[:8] == PNG_MAGIC and "lexical" in plot.title
    import matplotlib.image as mpimg

    image = mpimg.imread(path)
    assert image.shape[0] > 150 and image[..., :3].std() > 0.05


def test_score_plot_without_lexical_scores_still_draws(tmp_path):
    cfg = make_report_run(tmp_path)
    run = load_run_inputs(cfg)
    data = score_plot_data(run)
    assert all(d["n"] == 0 and np.isnan(d["mean"]) for d in data if d["kind"] in ("lexical", "final"))
    assert (tmp_path / score_plot(run, tmp_path).path).read_bytes()[:8] == PNG_MAGIC
    assert score_plot(load_run_inputs(make_report_run(tmp_path / "bare", scores=False)), tmp_path / "bare") is None
