"""Extending the package from outside it (CONTRIBUTING.md): a scorer defined here, in the test, is added through
the public registry only (no package file edited), then runs through the real [score] validation, score stage
and report, like the built-in scorers."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pandas as pd
import pytest

from autointerp.config import ModelEntry, RunConfig
from autointerp.errors import UserError
from autointerp.eval.config import SCORER_REGISTRY
from autointerp.eval.scorers import LEVELS, SCORERS, ScoreResult, Scorer, register_scorer
from autointerp.explain.format import split_windows
from autointerp.explain.labels import read_labels, read_meta
from autointerp.explain.select import auroc
from autointerp.report.fmt import md_text
from autointerp.rundir.layout import ModelDir
from autointerp.rundir.windows import load_windows
from helpers.runs import FEATURES, make_exemplar_run

SLUG = "gemma-3-270m"


class WordOverlapScorer(Scorer):
    """A toy scorer without an LLM: AUROC of "how many of the label's words the window holds", activating vs random."""

    name = "word_overlap"
    needs_llm = False
    definition = "AUROC of the count of the label's words in each held-out window (activating vs random); no LLM"
    sequence_definition = definition

    def scoring_set(self, windows):
        return split_windows(windows, "test", ("quantile", "top", "random"))

    async def score(self, client, windows, label):
        words = set(re.findall(r"[a-z]+", label.lower()))
        chosen = self.scoring_set(windows)
        counts = [len(words & set(re.findall(r"[a-z]+", w.text.lower()))) for w in chosen]
        return ScoreResult(auroc([w.activating for w in chosen], counts), {"n_windows": len(chosen)})


@pytest.fixture
def toy_scorer():
    yield register_scorer(WordOverlapScorer)
    SCORER_REGISTRY.pop(WordOverlapScorer.name, None)


def test_every_registry_entry_is_a_scorer_with_its_templates():
    """The registry is the one list: each entry resolves to a Scorer named as its key, and each LLM scorer
    names a template per level whose placeholders it declares."""
    assert list(SCORERS) == ["simulation", "detection", "fuzzing", "embedding"]
    for name, cls in SCORERS.items():
        assert issubclass(cls, Scorer) and cls.name == name and cls.definition and cls.sequence_definition
        for level in LEVELS:
            template = cls.read_template(level)
            assert (template is None) == (not cls.needs_llm)
            if template is not None:
                assert template.required and set(template.required) <= template.placeholders


def test_registering_a_taken_name_or_a_non_scorer_is_refused(toy_scorer):
    assert register_scorer(WordOverlapScorer) is WordOverlapScorer  # again: the same class, a no-op
    impostor = type("Impostor", (WordOverlapScorer,), {})
    with pytest.raises(ValueError, match="word_overlap.*WordOverlapScorer"):
        register_scorer(impostor)
    with pytest.raises(TypeError):
        register_scorer(dict)


def test_a_registered_scorer_runs_through_config_score_stage_and_report(tmp_path, toy_scorer):
    from autointerp.cli import stage
    from autointerp.report.stage import report_stage

    run = make_exemplar_run(tmp_path / "run")
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry(SLUG)])
    cfg.explain = dataclasses.replace(cfg.explain, n_features=3, select="random", labeller="lexical")
    cfg.score = dataclasses.replace(cfg.score, scorers=["word_overlap"])
    cfg.score.validate()  # [score] validation reads the registry
    SCORER_REGISTRY.pop("word_overlap")
    with pytest.raises(UserError, match="'word_overlap'.*choose from simulation"):
        cfg.score.validate()
    register_scorer(WordOverlapScorer)
    stage("explain").run(cfg)
    stage("score").run(cfg)

    model = ModelDir(run / SLUG)
    table = read_labels(model.root).set_index("feature")
    assert table["status_word_overlap"].eq("ok").all()
    windows = load_windows(model.exemplars, list(FEATURES), splits=("test",))
    for feature in FEATURES:  # the stored score is the scorer's own on the feature's held-out windows
        expected = asyncio.run(WordOverlapScorer(cfg.score).score(None, windows[feature], table.loc[feature, "lexical_label"]))
        assert table.loc[feature, "lexical_word_overlap"] == pytest.approx(expected.value)
    assert table["lexical_word_overlap"].mean() > table["baseline_word_overlap"].mean() + 0.2
    assert pd.Series(table["final_word_overlap"]).equals(table["lexical_word_overlap"].astype(float))
    meta = read_meta(model.root)
    assert meta["scorers"]["word_overlap"]["definition"] == WordOverlapScorer.definition

    outcome = report_stage(cfg, tmp_path / "report", progress=False)
    section = outcome.report.read_text(encoding="utf-8").split("## Label quality")[1]
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): line for line in section.splitlines() if line.startswith("| word_overlap |")}
    lexical = rows[("word_overlap", "lexical labels", "random")]
    assert f"| {table['lexical_word_overlap'].mean():.3f} |" in lexical
    assert f"*{md_text('score_word_overlap')}*: {md_text(WordOverlapScorer.definition)}" in section
