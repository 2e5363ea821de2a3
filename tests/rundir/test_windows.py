"""The one exemplar-window reader: on really mined exemplars it returns what a brute-force pandas read of
exemplars.parquet holds (pieces, activations, file order, the report's order, filters, row-group skipping),
and the prompts made from a fixed window are byte for byte those of the code it replaced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers.runs import make_word_harvest, mine, word_harvest_sae

from autointerp.errors import UserError
from autointerp.eval.config import ScoreConfig
from autointerp.eval.scorers import make_scorer
from autointerp.eval.scorers.simulation import build_block
from autointerp.exemplars.mine import EXEMPLAR_SCHEMA
from autointerp.explain.config import ExplainConfig
from autointerp.explain.candidates import render
from autointerp.explain.prompts import load_template
from autointerp.rundir.windows import load_windows

FEATURES = [0, 3, 17, 31, 40, 999]  # 40: dead (no windows), 999: not a feature


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("windows")
    hdir, docs = make_word_harvest(root, n_docs=60, seed=1)
    result = mine(word_harvest_sae(k=8), hdir, docs, root / "out", n_top=5, n_quantiles=5, per_quantile=3, n_random=8,
                   window_before=2, window_after=1, chunk_rows=64)
    small_groups = root / "small_groups.parquet"  # many row groups, so most are skipped
    pq.write_table(pq.read_table(result.exemplars_path), small_groups, row_group_size=7)
    return result.exemplars_path, small_groups, pd.read_parquet(result.exemplars_path)


def _same(window, row) -> None:
    """A window equals its parquet row, and its pieces are the text cut at the token spans."""
    assert (window.feature, window.split, window.kind, window.rank_or_quantile, window.doc_id, window.max_index) == (
        row.feature, row.split, row.kind, row.rank_or_quantile, row.doc_id, row.max_index)
    assert window.max_act == pytest.approx(row.max_act)
    assert window.acts.dtype == np.float32
    np.testing.assert_array_equal(window.acts, row.acts)
    assert list(window.tokens) == list(row.tokens) and window.text == row.text
    base = row.char_start[0]
    assert list(window.pieces) == [row.text[s - base:e - base] for s, e in zip(row.char_start, row.char_end)]
    assert "".join(g + p for g, p in zip(window.gaps, window.pieces)) == row.text
    segments = window.segments()
    assert "".join(s.text for s in segments) == row.text
    assert [s.text for s in segments if s.index is not None] == list(window.pieces)
    np.testing.assert_array_equal([s.act for s in segments if s.index is not None], row.acts)
    assert window.snippet(40)[1] == row.tokens[row.max_index]


@pytest.mark.parametrize("which", [0, 1])
def test_reader_equals_brute_force_in_file_order(mined, which):
    path, df = mined[which], mined[2]
    windows = load_windows(path, FEATURES)
    assert list(windows) == FEATURES and windows[40] == [] and windows[999] == []
    checked = 0
    for f in FEATURES:
        rows = list(df[df.feature == f].itertuples())
        assert len(windows[f]) == len(rows)
        for window, row in zip(windows[f], rows):
            _same(window, row)
            checked += 1
    assert checked > 50 and {w.kind for w in windows[3]} == {"top", "quantile", "random", "hard_negative"}
    tests = load_windows(path, FEATURES, splits=("test",), kinds=("quantile", "random"))
    for f in FEATURES:
        rows = df[(df.feature == f) & (df.split == "test") & df.kind.isin(["quantile", "random"])]
        assert [(w.kind, w.rank_or_quantile, w.doc_id) for w in tests[f]] == list(zip(rows.kind, rows.rank_or_quantile, rows.doc_id))


@pytest.mark.parametrize(("n_top", "n_quantile"), [(2, 3), (8, 4), (1, 0)])
def test_report_order_best_top_then_highest_bins(mined, n_top, n_quantile):
    path, small_groups, df = mined
    shown = load_windows(small_groups, FEATURES, kinds=("top", "quantile"), n_top=n_top, n_quantile=n_quantile)
    for f in FEATURES:
        rows = df[df.feature == f]
        top = rows[rows.kind == "top"].sort_values("rank_or_quantile").head(n_top)
        quantile = rows[rows.kind == "quantile"].sort_values(["rank_or_quantile", "max_act"], ascending=False, kind="stable").head(n_quantile)
        expected = list(top.itertuples()) + list(quantile.itertuples())
        assert len(shown[f]) == len(expected)
        for window, row in zip(shown[f], expected):
            _same(window, row)
    assert [w.kind for w in shown[3]] == ["top"] * min(n_top, 5) + ["quantile"] * n_quantile


def test_missing_file_names_the_command(tmp_path):
    with pytest.raises(UserError, match="autointerp exemplars"):
        load_windows(tmp_path / "exemplars.parquet", [0])


# The code this reader replaced (explain/windows.py) wrote these from the window below; prompts must not change.
DOC = "Intro. The Volcano erupted,  lava\n\nflowed into the sea."
SPANS = [("The", 7, 10), ("▁Vol", 11, 14), ("##cano", 14, 18), (" erupted", 18, 26), (",", 26, 27), ("</s>", 0, 0),
         ("  lava", 27, 33), ("\n\n", 33, 35), ("flowed", 35, 41), (" into", 41, 46), (" the", 46, 50), (" sea", 50, 54), (".", 54, 55)]
ACTS = [0, 0.5, 2.0, 1.0, 0, 0, 3.0, 0, 0.2, 0, 0, 1.5, 0]
GOLDEN_PROMPT = (
    "Each neuron below fires on the words marked <<like this>>, with its strength 0-10 after the mark. What it detects is said "
    "in a few words of our own, not copied from the text.\n\n"
    "Neuron A fires on the words marked <<like this>>, with strength 0-10:\nshe broke her <<left arm>>(10) in the fall\n"
    "pain in the <<knee>>(7) and lower back\nNeuron A detects: body parts\n\n"
    "Neuron B fires on the words marked <<like this>>, with strength 0-10:\n<<however>>(10), the plan was dropped\n"
    "the rain stopped, <<but>>(9) the roads stayed closed\nNeuron B detects: contrast words\n\n"
    "Neuron C fires on the words marked <<like this>>, with strength 0-10:\nThe <<Volcano erupted>>(7),</s> <<lava>>(10) <<flowed>>(1)\n"
    "<<Vol>>(4)cano erupted<<,</s> lava>>(5) flowed <<into>>(8) the <<sea>>(1)\n<<The Vol>>(2)cano erupted<<,>>(3)</s> lava\n"
    "erupted,</s> lava <<>>(1)flowed into the <<sea>>(1).\nNeuron C detects:"
)
GOLDEN_SIMULATION = ("The\t0\nVol\t0\ncano\t0\nerupted\t0\n\nVol\t0\ncano\t0\nerupted\t0\n,\t0\n</s>\t0\nlava\t0\n_\t0\nflowed\t0\n\n"
                     "The\t0\nVol\t0\n\nThe\t0\nVol\t0\n")
GOLDEN_DETECTION = [("The Volcano erupted", True), ("Volcano erupted,</s> lava flowed", True), ("The Vol", False), ("The Vol", False)]
GOLDEN_FUZZING = [("The Vol<<cano>> erupted", True), ("<<Vol>>cano erupted,<<</s> lava>> <<flowed>>", False)]


def _row(split, kind, rank, scale, shift):
    acts = np.roll(np.asarray(ACTS, np.float32) * scale, shift)
    return {"feature": 7, "split": split, "kind": kind, "rank_or_quantile": rank, "context_id": rank, "doc_id": "doc",
            "max_act": float(acts.max()), "max_index": int(acts.argmax()), "tokens": [t for t, _, _ in SPANS], "token_ids": list(range(len(SPANS))),
            "acts": acts.tolist(), "char_start": [s for _, s, _ in SPANS], "char_end": [e for _, _, e in SPANS], "text": DOC[7:55]}


def test_prompts_from_a_fixed_window_are_unchanged(tmp_path):
    """Gaps, a WordPiece continuation, a zero-width special token and a newline token, as explainer and scorers show them."""
    rows = [_row("train", "top", 0, 1.0, 0), _row("train", "top", 1, 0.8, 3), _row("train", "quantile", 2, 0.3, -2),
            _row("train", "quantile", 0, 0.1, 5), _row("test", "quantile", 1, 0.5, 1), _row("test", "quantile", 3, 0.9, -4),
            _row("test", "random", 0, 0.0, 0), _row("test", "random", 1, 0.0, 6)]
    pq.write_table(pa.Table.from_pylist(rows, schema=EXEMPLAR_SCHEMA), tmp_path / "exemplars.parquet")
    windows = load_windows(tmp_path / "exemplars.parquet", [7])[7]
    assert render(load_template("explainer"), windows, ExplainConfig(), profile=None)[0] == GOLDEN_PROMPT
    settings = ScoreConfig()
    assert build_block(make_scorer("simulation", settings).scoring_set(windows))[0] == GOLDEN_SIMULATION
    for name, golden in (("detection", GOLDEN_DETECTION), ("fuzzing", GOLDEN_FUZZING)):
        scorer = make_scorer(name, settings)
        assert scorer.items(scorer.scoring_set(windows)) == golden
