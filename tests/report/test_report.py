"""The report stage on a fixture run: markdown numbers, missing-input hints, PNGs, escaping, no-op re-runs, CLI."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from helpers.report_run import EXPLAINER, HOSTILE_DOC, HOSTILE_LABEL, METRICS, SCORERS, make_report_run
from typer.testing import CliRunner

from autointerp.report.pages import shown_windows
from autointerp.report.stage import report_stage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table_row(markdown: str, first_cell: str) -> list[str]:
    """Cells of the markdown table row whose first cell is ``first_cell``."""
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if cells[0] == first_cell:
                return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report shared by the read-only tests (tests that change inputs make their own run)."""
    cfg = make_report_run(tmp_path_factory.mktemp("report"))
    outcome = report_stage(cfg, progress=False)
    return cfg, outcome, outcome.report.read_text(encoding="utf-8")


def test_metrics_table_has_each_models_numbers(report):
    _, _, md = report
    assert table_row(md, "FVU (fraction of variance unexplained)")[1:] == [f"{METRICS['alpha']['fvu']:.4f}", f"{METRICS['beta']['fvu']:.4f}"]
    assert table_row(md, "CE loss recovered")[1:] == [f"{100 * METRICS['alpha']['ce_loss_recovered']:.1f}%", "n/a"]
    assert table_row(md, "dead on the whole harvest")[1] == "1 / 12 (8.3%)"
    assert table_row(md, "activation rows (tokens)")[1] == "222"
    assert "**Corpus**: fixture-corpus, 8 documents" in md


def test_label_quality_table_matches_labels_parquet(report):
    cfg, _, md = report
    labels = pd.read_parquet(cfg.run_path / "beta" / "labels.parquet")
    section = md.split("### `beta`")[1].split("## Cross-model matching")[0]
    for scorer in SCORERS:
        score, base = labels[f"score_{scorer}"].dropna(), labels[f"baseline_{scorer}"].dropna()
        row = table_row(section, scorer)
        assert row[1:5] == [str(len(score)), f"{score.mean():.3f}", f"{base.mean():.3f}", f"{score.mean() - base.mean():.3f}"]
    assert "7 of 8 labelled features have a label (1 failed)" in section
    assert "timeout after 3 retries (1)" in section
    meta = json.loads((cfg.run_path / "beta" / "labels.json").read_text())
    assert f"score usage: {meta['usage']['score']['prompt_tokens']:,} prompt" in section and f"{2 * 8} calls" in section
    # scorer definitions from labels.json are printed; the other columns' definitions are not
    assert "*score\\_embedding*: AUROC of cosine similarity between the label's sentence embedding" in md
    assert "the explainer's full answer, before parsing" not in md


def test_matched_concepts_table_in_rank_order_with_exemplars(report):
    cfg, _, md = report
    matches = pd.read_parquet(cfg.run_path / "compare" / "alpha__beta" / "matches.parquet").sort_values("combined_rank")
    section = md.split("#### Matched concepts")[1].split("![")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == list(matches["combined_rank"])
    second = matches.iloc[1]
    cells = table_row(section, str(int(second.combined_rank)))
    assert cells[1] == f"[{second.feature_a}](pages/alpha/{second.feature_a}.html)"
    assert cells[2] == second.label_a.replace("(", r"\(").replace(")", r"\)")
    # shared word-level pairs say whether they share more than the word (the matches' ``kind``)
    assert cells[5:10] == [f"{second.label_similarity:.3f}", f"{second.activation_corr:.3f}", "<1e-4", f"yes ({second.kind})", "both"]
    assert "**" in cells[10] and "**" in cells[11]  # the max token of each exemplar is marked
    stats_shared = int(matches["shared"].sum())
    assert f"**Shared pairs: {stats_shared}**" in md
    assert "> Finding (from the comparison stage): beta's features span more documents than alpha's \\(fixture finding 42\\)" in md
    assert table_row(md, "geography")[1:] == ["4", "5", "3"]
    assert "**Same activations, different labels** (3 shown)" in md


def test_hostile_text_is_escaped_in_markdown(report):
    _, _, md = report
    assert "<script" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script&gt;" in md
    rank1 = table_row(md.split("#### Matched concepts")[1], "1")
    assert len(rank1) == 13  # the label's '|' did not split the row (12 columns + the pair-page link)


def test_caveats_use_the_runs_numbers(report):
    _, _, md = report
    caveats = md.split("## Caveats")[1]
    assert EXPLAINER in caveats
    assert "8 documents (222 `alpha` tokens" in caveats
    assert "activation correlation above the fixture null threshold 0.3" in caveats


def test_plots_are_valid_pngs_referenced_relatively(report):
    import matplotlib.image as mpimg

    cfg, outcome, md = report
    assert {p.name for p in outcome.plots} == {"density.png", "label_scores.png", "null_alpha__beta.png", "similarity_alpha__beta.png", "domains_alpha__beta.png"}
    for path in outcome.plots:
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = mpimg.imread(path)
        assert image.shape[0] > 150 and image.shape[1] > 200
        assert image[..., :3].std() > 0.05  # not a blank canvas
        assert f"](plots/{path.name})" in md
        assert (cfg.run_path / "plots" / path.name).is_file()


def test_missing_labels_and_comparison_give_the_commands(tmp_path):
    cfg = make_report_run(tmp_path, labels=False, compare=False)
    outcome = report_stage(cfg, progress=False)
    md = outcome.report.read_text(encoding="utf-8")
    assert "labels of alpha not found" in md and "run `autointerp explain` to produce it" in md
    assert "comparison alpha vs beta not found" in md and "run `autointerp compare` to produce it" in md
    assert table_row(md, "FVU (fraction of variance unexplained)")[1] == "0.1234"  # the rest is still reported
    assert {p.name for p in outcome.plots} == {"density.png"}
    assert (cfg.run_path / "pages" / "index.html").is_file()


def test_labels_without_scores_point_to_score(tmp_path):
    cfg = make_report_run(tmp_path, scores=False, compare=False)
    md = report_stage(cfg, progress=False).report.read_text(encoding="utf-8")
    assert "run `autointerp score` to score the labels of `alpha`" in md


def test_a_scorer_that_failed_everywhere_still_gets_a_report(tmp_path):
    """Every scoring call failed (scores all NaN): the report is still written, plot included."""
    cfg = make_report_run(tmp_path, compare=False)
    for model in cfg.models:
        path = cfg.run_path / model.slug / "labels.parquet"
        table = pd.read_parquet(path)
        for column in [c for c in table.columns if c.startswith(("score_", "baseline_"))]:
            table[column] = float("nan")
        table.to_parquet(path)
    outcome = report_stage(cfg, progress=False)
    assert outcome.report.is_file() and "label_scores.png" in {p.name for p in outcome.plots}


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def test_pages_escape_hostile_text_and_have_a_csp(report):
    cfg, outcome, _ = report
    pages = sorted((cfg.run_path / "pages").rglob("*.html"))
    assert len([p for p in pages if p.parent.name in outcome.pages]) == sum(outcome.pages.values())  # + index, views, pair pages
    for page in pages:
        parsed = _Collector()
        parsed.feed(page.read_text(encoding="utf-8"))
        assert not {"script", "img", "iframe", "object", "b"} & set(parsed.tags), page
        assert not [a for a, _ in parsed.attrs if a.startswith("on")], page
        assert "Content-Security-Policy" in page.read_text(encoding="utf-8")
    hostile = _Collector()
    hostile.feed((cfg.run_path / "pages" / "alpha" / "0.html").read_text(encoding="utf-8"))
    text = "".join(hostile.text)
    assert HOSTILE_LABEL in text  # the label shows verbatim, as text
    assert "<script>document.title='PWNED'" in text and "<img src=x onerror=" in text
    assert "".join(HOSTILE_DOC.split()) in "".join(text.split())  # the whole window, every character


def test_token_shading_carries_activation(report):
    cfg, _, _ = report
    html = (cfg.run_path / "pages" / "beta" / "2.html").read_text(encoding="utf-8")
    stats = pd.read_parquet(cfg.run_path / "beta" / "feature_stats.parquet").set_index("feature")
    max_act = float(stats.loc[2, "max_act"])
    shaded = re.findall(r'style="background-color: rgba\(255, 128, 0, ([0-9.]+)\)" title="([0-9.]+)"', html)
    assert shaded
    for alpha, value in shaded:
        assert float(alpha) == pytest.approx(min(1.0, float(value) / max_act), abs=2e-3)
    assert any(float(a) == pytest.approx(1.0, abs=1e-3) for a, _ in shaded)


def test_pages_selection_and_partner_links(report):
    cfg, outcome, _ = report
    run = cfg.run_path
    # alpha: its 11 live features (all matched); beta: those plus dead feature 11, a label-only partner
    assert outcome.pages == {"alpha": 11, "beta": 12}
    page = (run / "pages" / "alpha" / "1.html").read_text(encoding="utf-8")
    assert 'href="../beta/1.html"' in page and 'href="../index.html"' in page
    for href in re.findall(r'href="([^"]+)"', page):
        assert (run / "pages" / "alpha" / href).resolve().is_file(), href


def test_rerun_is_a_noop_until_an_input_changes(tmp_path):
    cfg = make_report_run(tmp_path)
    first = report_stage(cfg, progress=False)
    stamp = first.report.stat().st_mtime_ns
    second = report_stage(cfg, progress=False)
    assert second.skipped and second.report.stat().st_mtime_ns == stamp
    (cfg.run_path / "plots" / "density.png").unlink()  # a deleted output is rewritten even when inputs are unchanged
    assert not report_stage(cfg, progress=False).skipped and (cfg.run_path / "plots" / "density.png").is_file()
    labels_path = cfg.run_path / "alpha" / "labels.parquet"
    labels = pd.read_parquet(labels_path)
    labels.loc[labels["feature"] == 1, "score_detection"] = 0.0
    labels.to_parquet(labels_path, index=False)
    third = report_stage(cfg, progress=False)
    assert not third.skipped
    alpha = third.report.read_text(encoding="utf-8").split("### `alpha`")[1].split("### `beta`")[0]
    expected = labels["score_detection"].dropna().mean()
    assert table_row(alpha, "detection")[2] == f"{expected:.3f}"


def test_config_controls_pages_and_table_size(tmp_path):
    cfg = make_report_run(tmp_path)
    cfg.report = dataclasses.replace(cfg.report, pages=False, max_matches=3, plots=False)
    outcome = report_stage(cfg, progress=False)
    md = outcome.report.read_text(encoding="utf-8")
    assert outcome.pages_index is None and not (cfg.run_path / "pages").exists()
    assert "pages/" not in md and "![" not in md
    assert "best 3 of 11 pairs" in md


def test_windows_pieces_rebuild_text_and_mark_max_token(report):
    cfg, _, _ = report
    windows = shown_windows(cfg.run_path / "alpha" / "exemplars.parquet", [0, 3], n_top=2, n_quantile=1)
    assert set(windows) == {0, 3} and all(len(w) == 3 for w in windows.values())
    for w in windows[0] + windows[3]:
        assert "".join(p.text for p in w.segments()) == w.text
        _, token, _ = w.snippet(40)
        assert token == w.tokens[w.max_index]
    assert [w.kind for w in windows[3]] == ["top", "top", "quantile"]
    assert windows[3][0].max_act >= windows[3][1].max_act


def test_cli_report_out_dir_and_summary(tmp_path):
    from autointerp.cli import app

    cfg = make_report_run(tmp_path)
    out = tmp_path / "sample"
    result = CliRunner().invoke(app, ["report", "--run-dir", str(cfg.run_path), "--out", str(out), "--max-matches", "5"])
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "best 5 of 11 pairs" in md
    assert (out / "plots" / "density.png").is_file() and (out / "pages" / "index.html").is_file()
    assert not (cfg.run_path / "report.md").exists()  # the run directory is untouched
    assert "autointerp summary" in result.output and re.search(r"alpha vs beta\s*│\s*9\s*│\s*9\s*│", result.output), result.output
    assert str(out / "report.md") in result.output.replace("\n", "")


def test_cli_missing_run_dir_is_one_line_error(tmp_path):
    from autointerp.cli import app

    result = CliRunner().invoke(app, ["report", "--run-dir", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_report_all_prints_summary_and_paths(tmp_path, capsys):
    from autointerp.cli import stage


    cfg = make_report_run(tmp_path)
    stage("report").run(cfg)
    err = capsys.readouterr().err
    labels = pd.read_parquet(cfg.run_path / "alpha" / "labels.parquet")
    # LLM | lexical | shuffled | final* (this fixture has no lexical labels: "—")
    row = rf"detection\s*│\s*{labels['score_detection'].mean():.3f}\s*│\s*—\s*│\s*{labels['baseline_detection'].mean():.3f}\s*│"
    assert re.search(row, err), err
    assert re.search(r"alpha vs beta\s*│\s*9\s*│", err) and "7/8 (1 failed)" in err
    assert "report.md" in err and "index.html" in err
    stage("report").run(cfg)
    assert "unchanged" in capsys.readouterr().err


def test_bad_report_config_is_a_user_error(tmp_path):
    from autointerp.errors import UserError

    cfg = make_report_run(tmp_path, labels=False, compare=False)
    cfg.report = dataclasses.replace(cfg.report, max_matches=-1)
    with pytest.raises(UserError, match="max_matches must be >= 0"):
        report_stage(cfg, progress=False)


def test_damaged_input_fails_cleanly_and_keeps_the_previous_report(tmp_path):
    from autointerp.errors import UserError

    cfg = make_report_run(tmp_path)
    first = report_stage(cfg, progress=False)
    before = first.report.read_text(encoding="utf-8")
    pages_before = sorted(p.name for p in (cfg.run_path / "pages" / "alpha").iterdir())
    (cfg.run_path / "compare" / "alpha__beta" / "matches.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match=r"matches\.parquet is damaged \(cannot be read as parquet"):
        report_stage(cfg, progress=False)
    assert first.report.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in (cfg.run_path / "pages" / "alpha").iterdir()) == pages_before
    assert not list(cfg.run_path.glob(".pages.*")) and not list(cfg.run_path.glob(".report.md.*"))


def test_report_opens_with_the_verdict_then_what_is_shared_beyond_words_then_what_one_model_has_alone(report):
    from helpers.report_run import CALIBRATION

    cfg, _, md = report
    order = [md.index(h) for h in ("## The verdict", "## What is shared beyond words", "## What one model has alone", "## What was compared",
                                   "## Cross-model matching")]
    assert order == sorted(order)
    assert "## The answer, calibrated" not in md  # the old paragraph is gone
    verdict = md.split("## The verdict", 1)[1].split("## What is shared beyond words", 1)[0]
    lines = [line for line in verdict.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("|  | shared, % of alpha | shared, % of beta | beyond words, pairs |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert set(rows) == {"alpha vs beta", "ceiling: alpha vs alpha (other SAE seed)", "floor: random-weights control", "**call**"}
    assert "| 88.9% [77.8%, 100.0%] | 80.0% [70.0%, 90.0%] | 3 [2, 4] | 33.3% [22.2%, 44.4%] |" in rows["alpha vs beta"]
    assert "0.432 [0.412, 0.452]" in rows["alpha vs beta"] and "0.078 [0.068, 0.088]" in rows["floor: random-weights control"]
    assert "| between | not_above_floor |  | above_floor | above_floor | above_floor | above_floor | above_floor |" in rows["**call**"]
    for sentence in CALIBRATION["verdict"]["sentences"]:
        assert sentence in verdict
    assert "*Decision rule, per column*" in verdict and "document bootstrap" in verdict
    assert "2 + 1 rarer features were left out" in verdict and "Cost: representation 2 s, its intervals 0 s, controls 9 s." in verdict
    beyond = md.split("## What is shared beyond words", 1)[1].split("## What one model has alone", 1)[0]
    table = [line for line in beyond.splitlines() if line.startswith("| ") and "side by side" in line]
    assert len(table) == 3, beyond  # the fixture's three contextual pairs, each with its pair page
    assert table[0].startswith("| [0]")
    alone = md.split("## What one model has alone", 1)[1].split("## What was compared", 1)[0]
    assert "**`alpha`**" in alone and "**`beta`**" in alone
    record = json.loads((cfg.run_path / "report.json").read_text())
    assert record["verdict"] == CALIBRATION["verdict"] and record["verdicts"] == {"alpha__beta": CALIBRATION["verdict"]}
    assert set(record["verdict"]["columns"]) == {"shared_a", "shared_b", "beyond_words_a", "beyond_words_b", "cka", "svcca", "mutual_knn"}
    for col in record["verdict"]["columns"].values():
        assert {"value", "ci", "ceiling", "floor", "call"} <= set(col) and col["call"] in ("above_floor", "at_ceiling", "between", "not_above_floor")
    index = (cfg.run_path / "pages" / "index.html").read_text(encoding="utf-8")
    assert "Verdict: alpha vs beta" in index and "88.9% [77.8%, 100.0%]" in index and "not_above_floor" in index
    contextual = (cfg.run_path / "pages" / "by_contextual.html").read_text(encoding="utf-8")
    links = re.findall(r'href="(pairs/alpha__beta/[^"]+)"', contextual)
    assert len(links) == 3 and all((cfg.run_path / "pages" / link).is_file() for link in links)  # the three contextual pairs, each with its page


def test_console_verdict_shows_every_call_whole_in_80_columns(report):
    from rich.console import Console

    from autointerp.report.artifacts import load_run_inputs
    from autointerp.report.verdict import verdict_console
    from helpers.report_run import CALIBRATION

    cfg, _, _ = report
    console = Console(width=80, record=True)
    for table in verdict_console(load_run_inputs(cfg)):
        console.print(table)
    text = console.export_text()
    assert "verdict: alpha vs beta" in text and "between" in text and "not_above_floor" in text and text.count("above_floor") >= 6
    assert "88.9%" in text and "0.432" in text and "0.078" in text  # pair and floor values
    assert CALIBRATION["verdict"]["sentences"][0].split(":")[0].split()[-1] in text
    assert max(len(line) for line in text.splitlines()) <= 80
