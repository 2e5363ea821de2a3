"""Best-of-n labels: candidates from the LLM and the lexical label compete on TRAINING windows only.

The LLM is a tiny random-weight GPT-2 on the local backend (real generation, sampled candidates); the
exemplars are the real files of ``helpers.runs.make_exemplar_run``. The leak test corrupts the held-out windows
and checks that nothing the stage chose or recorded changes; corrupting the training windows instead must
change the training scores, so the test can fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autointerp.config import ModelEntry, RunConfig
from autointerp.exemplars.mine import EXEMPLAR_SCHEMA
from autointerp.explain.candidates import WORD_LEAD, Candidate, FeatureLabels, final_choice
from autointerp.explain.lexical import copies_template, restates_window
from autointerp.explain.prompts import load_template
from autointerp.explain.select import auroc, best_index
from autointerp.rundir.layout import ModelDir
from helpers.runs import make_exemplar_run

SLUG = "gemma-3-270m"


def _config(run, tiny_model_dirs) -> RunConfig:
    prompts = run / "prompts"  # short templates: the tiny model has 256 positions
    prompts.mkdir(exist_ok=True)
    (prompts / "explainer.txt").write_text("{{examples}}\nIt detects:")
    (prompts / "explainer_profile.txt").write_text("{{examples}}\nWords: {{profile}}\nIt detects:")
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry(SLUG)])
    cfg.llm = dataclasses.replace(cfg.llm, backend="local", model=str(tiny_model_dirs["gpt2"]), concurrency=1)
    cfg.explain = dataclasses.replace(cfg.explain, n_features=3, select="random", n_candidates=4, max_tokens=8, n_top=2,
                                      n_quantile=0, window_before=4, window_after=1, prompts_dir=str(prompts))
    return cfg


def _corrupt(path, split: str) -> None:
    """Replace the text, tokens and activations of every window of ``split`` (schema kept)."""
    table = pq.read_table(path).to_pylist()
    for row in table:
        if row["split"] == split:
            n = len(row["tokens"])
            row["tokens"] = [" zz"] * n
            row["acts"] = list(np.linspace(1.0, 0.0, n))
            row["text"] = "zz" * n
            row["char_start"] = [2 * i for i in range(n)]
            row["char_end"] = [2 * i + 2 for i in range(n)]
    pq.write_table(pa.Table.from_pylist(table, schema=EXEMPLAR_SCHEMA), path)


def _explain(cfg):
    from autointerp.cli import stage

    stage("explain").run(cfg, overwrite=True)
    model = ModelDir(cfg.run_path / SLUG)
    labels = pd.read_parquet(model.labels).set_index("feature")
    candidates = pd.read_parquet(model.label_candidates)
    return labels, candidates


def test_selection_never_reads_held_out_windows(tmp_path, tiny_model_dirs):
    run = make_exemplar_run(tmp_path / "run")
    cfg = _config(run, tiny_model_dirs)
    labels, candidates = _explain(cfg)
    cols = ["label", "label_source", "llm_label", "lexical_label", "train_score_llm", "train_score_lexical"]
    assert set(candidates["source"]) == {"llm", "lexical", "word"} and candidates.groupby("feature")["kept"].sum().ge(1).all()
    assert labels["train_score_lexical"].notna().all()
    # every kept candidate is the best of its source on training windows, and the final label the better of the two
    for feature, group in candidates.groupby("feature"):
        for source, part in group.groupby("source"):
            kept = part[part["kept"]]
            assert len(kept) == 1 and kept["train_score"].iloc[0] == part["train_score"].max()
        row = labels.loc[feature]
        expected = "lexical" if pd.isna(row["train_score_llm"]) or row["train_score_lexical"] > row["train_score_llm"] else "llm"
        words = group.loc[group["source"] == "word", "train_score"]
        if len(words) and words.iloc[0] > max(row["train_score_lexical"], np.nan_to_num(row["train_score_llm"], nan=-1)) + WORD_LEAD:
            expected = "word"
        assert row["label_source"] == expected
        assert row["label"] == {"lexical": row["lexical_label"], "llm": row["llm_label"], "word": row["word_label"]}[expected]

    exemplars = ModelDir(run / SLUG).exemplars
    _corrupt(exemplars, "test")
    after_test, cands_test = _explain(cfg)
    pd.testing.assert_frame_equal(labels[cols], after_test[cols])
    # the re-run was served from the response cache: each row keeps the tokens its original calls consumed, flagged as cached
    assert (labels["cached_calls"] == 0).all() and (after_test["cached_calls"] == cfg.explain.n_candidates).all()
    assert (after_test["prompt_tokens"] == labels["prompt_tokens"]).all() and (labels["prompt_tokens"] > 0).all()
    pd.testing.assert_frame_equal(candidates.reset_index(drop=True), cands_test.reset_index(drop=True))

    _corrupt(exemplars, "train")  # the check can fail: training windows do drive the choice
    after_train, _ = _explain(cfg)
    assert not np.allclose(labels["train_score_lexical"].to_numpy(float), after_train["train_score_lexical"].to_numpy(float))


def test_final_choice_and_best_index():
    assert best_index([0.2, float("nan"), 0.9, 0.9]) == 2 and best_index([]) is None
    llm = Candidate("volcanoes", "llm", train_score=0.7, kept=True)
    lexical = Candidate('the word "lava"', "lexical", train_score=0.8, kept=True)
    assert final_choice(FeatureLabels(0, [llm, lexical])) is lexical
    lexical.train_score = 0.7  # a tie goes to the LLM label
    assert final_choice(FeatureLabels(0, [llm, lexical])) is llm
    copied = Candidate("names of European cities", "llm", train_score=0.99, template_copy=True)
    assert final_choice(FeatureLabels(0, [copied, lexical])) is lexical  # template copies never win
    # the word-only label (nothing about when its word fires) wins only when it leads the choice by more than WORD_LEAD
    words = Candidate('the word "lava"', "word", train_score=0.7 + WORD_LEAD)
    assert final_choice(FeatureLabels(0, [llm, lexical, words])) is llm
    words.train_score = 0.7 + WORD_LEAD + 0.01
    assert final_choice(FeatureLabels(0, [llm, lexical, words])) is words
    assert final_choice(FeatureLabels(0, [Candidate("x", "llm", train_score=float("nan")), words])) is words
    assert final_choice(FeatureLabels(0, [words])) is words  # no other label: the word label
    assert auroc([True, True, False, False], np.array([0.9, 0.8, 0.1, 0.2])) == 1.0
    assert auroc([True, False], np.array([0.5, 0.5])) == 0.5


def test_template_copies_and_restatements_are_detected():
    template = load_template("explainer").text
    assert copies_template("she broke her left arm in the", template)  # a worked example's window
    assert copies_template("Contrast  words", template)  # a worked example's label (case and spacing ignored)
    assert not copies_template("names of African rivers", template)
    assert not copies_template("city", template)  # a single word is not a copy
    windows = ["Population growth rate: 1.5 years (2024 est.)", "the <<lava>>(10) flowed"]
    assert restates_window("5 years (2024 est", windows)
    assert restates_window("the lava flowed", windows)  # marks are ignored
    assert not restates_window("population estimates by year", windows)


def test_usage_of_an_interrupted_run_is_counted_exactly_once(tmp_path, tiny_model_dirs):
    """A run killed (kill -9) after paying for its calls but before storing its usage: the re-run's cache hits
    bring those tokens into the totals once; a further re-run served from the same cache adds nothing."""
    import asyncio
    import json

    from autointerp.llm.factory import open_client
    from autointerp.cli import stage
    from autointerp.explain.stage import explain_identity, explain_todo, run_explain, select_features

    run = make_exemplar_run(tmp_path / "run")
    cfg = _config(run, tiny_model_dirs)
    model = ModelDir(run / SLUG)

    async def killed_run() -> int:
        async with open_client(cfg.llm, cfg.run_path) as client:
            features = select_features(model.root, cfg.explain)
            identity = explain_identity(cfg.explain, cfg.llm.backend, cfg.llm.model, model.root)
            table, todo = explain_todo(model.root, features, identity, overwrite=False)
            await run_explain(client, model.root, cfg.explain, table, todo, identity, concurrency=1, label=SLUG)
            return client.usage.prompt_tokens  # paid, but never stored: the process "dies" here

    paid = asyncio.run(killed_run())
    assert paid > 0 and "usage" not in json.loads(model.labels_meta.read_text())

    def rerun_from_cache() -> dict:
        model.labels.unlink()  # the rows had not been flushed when the process died
        summary = stage("explain").run(cfg).detail[SLUG]
        assert summary["calls"] == 0 and summary["cached_calls"] > 0
        return json.loads(model.labels_meta.read_text())["usage"]["explain"]

    assert rerun_from_cache()["prompt_tokens"] == paid  # recovered from the cache's ledger
    assert rerun_from_cache()["prompt_tokens"] == paid  # and never counted twice
