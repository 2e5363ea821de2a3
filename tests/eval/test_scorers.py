"""Scorer math on constructed cases where the right answer is known, with real embeddings and real files."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from autointerp.eval.pipeline import derangement
from autointerp.eval.pipeline import baseline_labels
from autointerp.eval.config import ScoreConfig
from autointerp.eval.scorers import make_scorer
from autointerp.eval.scorers.base import answer_probability, balanced_accuracy, pearson
from autointerp.explain.select import auroc
from autointerp.eval.scorers.simulation import build_block, expected_digit
from autointerp.rundir.windows import load_windows
from helpers.keyword_oracle import KeywordOracle
from helpers.runs import FEATURES, make_exemplar_run


def test_auroc_balanced_accuracy_pearson_known_values():
    assert auroc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert auroc([1, 1, 0, 0], [0.1, 0.2, 0.9, 0.8]) == 0.0
    assert auroc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert auroc([1, 0, 0], [0.3, 0.3, 0.1]) == pytest.approx(0.75)  # ties count half
    assert math.isnan(auroc([1, 1], [0.2, 0.3]))
    assert balanced_accuracy([1, 1, 1, 0], [1, 1, 1, 1]) == 0.5  # always-yes is chance, whatever the class balance
    assert balanced_accuracy([1, 0, 0, 0], [1, 0, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 6])) == pytest.approx(1.0)
    assert pearson(np.zeros(3), np.array([0.0, 1, 0])) == 0.0  # constant prediction carries no information
    assert math.isnan(pearson(np.array([1.0, 2]), np.zeros(2)))


def test_logprob_readers():
    assert expected_digit({"7": 0.0}) == 7
    assert expected_digit({" 0": math.log(0.5), "10": math.log(0.5), "the": 0.0}) == pytest.approx(5.0)
    assert expected_digit({"the": 0.0}) is None
    assert answer_probability({" Yes": math.log(0.6), "no": math.log(0.2), "maybe": 0.0}) == pytest.approx(0.75)
    assert answer_probability({"maybe": 0.0}) is None


def test_derangement_has_no_fixed_points_and_is_seeded():
    for n in range(2, 30):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    assert list(derangement(10, 3)) == list(derangement(10, 3))
    shuffled = baseline_labels({3: "a", 5: "b", 9: "c"}, seed=0)
    assert set(shuffled.values()) == {"a", "b", "c"} and all(shuffled[f] != own for f, own in {3: "a", 5: "b", 9: "c"}.items())


def test_simulation_slots_point_at_the_placeholders(tmp_path):
    windows = load_windows(make_exemplar_run(tmp_path) / "gemma-3-270m" / "exemplars.parquet", [0])[0]
    block, slots = build_block(windows[:3])
    assert all(block[s] == "0" and block[s - 1] == "\t" for s in slots)
    assert len(slots) == sum(len(w.pieces) for w in windows[:3])


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("name", ["simulation", "detection", "fuzzing"])
def test_llm_scorers_rank_true_label_above_shuffled(tmp_path, name, chat):
    """Both request styles: completions (echo/logprobs) and chat (chat-only APIs; simulation parses the reply)."""
    windows = load_windows(make_exemplar_run(tmp_path) / "gemma-3-270m" / "exemplars.parquet", [0, 1, 2])
    scorer = make_scorer(name, ScoreConfig(n_activating=4, n_random=4, chat=chat))
    client = KeywordOracle()
    for feature, (words, _, _) in FEATURES.items():
        true_label = " ".join(sorted(words))
        wrong_label = " ".join(sorted(FEATURES[(feature + 1) % 3][0]))
        good = asyncio.run(scorer.score(client, windows[feature], true_label))
        bad = asyncio.run(scorer.score(client, windows[feature], wrong_label))
        assert good.value > 0.95, (name, feature, good)  # simulation: true acts vary (1.0-1.2), predictions do not
        assert bad.value <= 0.5 + 1e-9, (name, feature, bad)
        assert good.usage.prompt_tokens > 0


def test_embedding_scorer_separates_true_label_from_shuffled(tmp_path):
    windows = load_windows(make_exemplar_run(tmp_path) / "gemma-3-270m" / "exemplars.parquet", [0, 1, 2])
    scorer = make_scorer("embedding", ScoreConfig())
    assert not scorer.needs_llm
    good = asyncio.run(scorer.score(None, windows[0], "volcanoes, lava and eruptions"))
    bad = asyncio.run(scorer.score(None, windows[0], "military: navy, army and soldiers"))
    assert good.value >= 0.9 and good.details["n_windows"] == 7
    assert bad.value < good.value - 0.3
