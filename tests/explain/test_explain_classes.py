"""The LLM is spent where words fail: select = "contextual", and token features labelled without an LLM call."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from autointerp.compare.label_priority import write_label_priority
from autointerp.config import ModelEntry, RunConfig
from autointerp.explain.config import ExplainConfig
from autointerp.explain.stage import select_features
from autointerp.cli import stage
from autointerp.rundir.layout import RunDir
from helpers.runs import make_exemplar_run


def _with_classes(model_dir, classes: list[str]) -> None:
    stats = pd.read_parquet(model_dir / "feature_stats.parquet")
    stats["feature_class"] = classes
    stats.to_parquet(model_dir / "feature_stats.parquet")


def _matches(run, rows: dict) -> None:
    """A comparison's matches table and the rankings compare makes of it (what explain reads)."""
    pair = RunDir(run).pair("gemma-3-270m", "minilm-l6")
    pair.root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(pair.matches)
    write_label_priority(pair, pair.names, (run / "gemma-3-270m", run / "minilm-l6"))


def test_contextual_selection_puts_pairs_beyond_words_and_topical_features_first(tmp_path):
    run = make_exemplar_run(tmp_path, models=("gemma-3-270m", "minilm-l6"))
    _with_classes(run / "gemma-3-270m", ["token", "topical", "contextual", "dead"])
    _with_classes(run / "minilm-l6", ["contextual", "other", "token", "dead"])
    _matches(run, {"feature_a": [0, 2, 1], "feature_b": [2, 0, 1], "method": ["activation", "activation", "both"],
                   "activation_corr": [0.9, 0.6, 0.5], "contextual_corr": [0.8, 0.5, 0.3], "shared": [True, True, False],
                   "kind": ["contextual", "contextual", "unshared"]})
    one = ExplainConfig(n_features=1)
    assert one.select == "contextual"  # the default
    # two pairs shared beyond words: (2, 0) of two contextual features comes before (0, 2), two token detectors,
    # although the latter correlates more beyond words; both models take the same pair
    assert select_features(run / "gemma-3-270m", one) == [2]
    assert select_features(run / "minilm-l6", one) == [0]
    # n = 4: both pairs (n - n // 4 = 3), then the most active topical feature
    assert select_features(run / "gemma-3-270m", ExplainConfig(n_features=4)) == [0, 1, 2]
    # minilm has no topical feature: topped up with an unshared feature that is not a token detector (1, "other")
    assert select_features(run / "minilm-l6", ExplainConfig(n_features=4)) == [0, 1, 2]
    _matches(run, {"feature_a": [2, 1], "feature_b": [0, 1], "method": ["activation", "both"], "activation_corr": [0.6, 0.5],
                   "contextual_corr": [0.5, 0.3], "shared": [True, False], "kind": ["contextual", "unshared"]})
    assert select_features(run / "minilm-l6", ExplainConfig(n_features=3)) == [0, 1]  # token feature 2 is never a filler
    # without classes (sequence level, or mined before them) it falls back to the best shared pairs
    stats = pd.read_parquet(run / "gemma-3-270m" / "feature_stats.parquet").drop(columns="feature_class")
    stats.to_parquet(run / "gemma-3-270m" / "feature_stats.parquet")
    assert select_features(run / "gemma-3-270m", ExplainConfig(n_features=2)) == [1, 2]  # both pairs, by correlation


@pytest.mark.slow
def test_token_features_get_their_lexical_label_without_an_llm_call(tmp_path, llama_server, fault_proxy):
    proxy = fault_proxy(llama_server.base_url, fault_rate=0.0)  # counts the requests that reach the server
    run = make_exemplar_run(tmp_path)
    _with_classes(run / "gemma-3-270m", ["token", "contextual", "other", "dead"])
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry("gemma-3-270m")])
    cfg.llm = dataclasses.replace(cfg.llm, backend="openai", base_url=proxy.base_url, model=llama_server.model)
    cfg.explain = dataclasses.replace(cfg.explain, n_features=3, select="random", n_candidates=1)
    stage("explain").run(cfg)
    table = pd.read_parquet(run / "gemma-3-270m" / "labels.parquet").set_index("feature")
    assert proxy.posts == 2  # features 1 and 2 only
    assert table.loc[0, "llm_skipped"] == 1 and pd.isna(table.loc[0, "llm_label"])
    assert table.loc[0, "label_source"] == "lexical" and table.loc[0, "label"] == table.loc[0, "lexical_label"]
    assert list(table["feature_class"]) == ["token", "contextual", "other"]
    assert table.loc[[1, 2], "llm_label"].notna().all() and (table.loc[[1, 2], "llm_skipped"] == 0).all()
    stage("explain").run(cfg)  # the token feature is done, not retried as a failed LLM label
    assert proxy.posts == 2
    cfg.explain = dataclasses.replace(cfg.explain, llm_for_tokens=True)
    stage("explain").run(cfg, overwrite=True)  # sending token features to the LLM too: one more request, for feature 0
    assert proxy.posts == 3


def test_word_only_label_names_the_main_words_and_nothing_else():
    from autointerp.exemplars.profile import LexicalProfile
    from autointerp.explain.lexical import lexical_label, word_label

    profile = LexicalProfile(7, {"word": [("of", 0.7, 30), ("in", 0.2, 9), ("the", 0.01, 2)], "right": [("the Congo", 0.6, 12)],
                                 "entity": [("Zaire", 0.8, 40)]})
    assert word_label(profile) == 'the words "of", "in"'  # "the" carries < 5% of the mass
    assert "the Congo" in lexical_label(profile) and "Zaire" in lexical_label(profile)  # the lexical label states contexts
    assert word_label(LexicalProfile(1, {"token": [("▁x", 1.0, 3)]})) == 'the word "▁x"'
    assert word_label(None) is None and word_label(LexicalProfile(2)) is None


def test_autointerp_run_compares_before_explaining_with_the_default_selection():
    """select = "contextual" (the default) reads the comparison, so `autointerp run` compares first (as for "matched")."""
    from autointerp.cli import run_order

    names = [s.name for s in run_order(RunConfig(models=[ModelEntry("gemma-3-270m"), ModelEntry("minilm-l6")]))]
    assert names.index("compare") < names.index("explain")
    cfg = RunConfig(models=[ModelEntry("gemma-3-270m"), ModelEntry("minilm-l6")])
    cfg.explain = dataclasses.replace(cfg.explain, select="random")
    names = [s.name for s in run_order(cfg)]
    assert names.index("compare") > names.index("explain")
