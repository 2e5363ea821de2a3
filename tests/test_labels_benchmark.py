"""benchmarks/labels.py: its RESULT line on handmade labels tables, and its one-line errors (fast: no models)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
_PATH = ROOT / "benchmarks" / "labels.py"
_spec = importlib.util.spec_from_file_location("labels_benchmark", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["labels_benchmark"] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)


def _table(final, word, shuffled, llm, lexical, final_hard, word_hard, classes, restates) -> pd.DataFrame:
    n = len(final)
    return pd.DataFrame({
        "feature": np.arange(n), "status": ["ok"] * n, "feature_class": classes, "restates_window": restates,
        "score_embedding": llm, "lexical_embedding": lexical, "word_embedding": word, "baseline_embedding": shuffled,
        "final_embedding": final, "score_embedding_hard": [0.5] * n, "lexical_embedding_hard": [0.5] * n,
        "word_embedding_hard": word_hard, "baseline_embedding_hard": [0.5] * n, "final_embedding_hard": final_hard,
    })


def _keys(line: str) -> dict[str, str]:
    assert line.startswith("RESULT ")
    return dict(part.split("=", 1) for part in line.split()[1:])


def test_result_line_on_handmade_tables():
    nan = math.nan
    a = _table(final=[0.9, 0.8, 0.7, 0.6], word=[0.7] * 4, shuffled=[0.5] * 4, llm=[0.8, 0.6, 0.7, 0.5],
               lexical=[0.7, 0.7, 0.7, 0.7], final_hard=[0.8, 0.7, 0.9, nan], word_hard=[0.5, 0.4, 0.5, 0.5],
               classes=["contextual", "contextual", "token", "contextual"], restates=[1.0, 0.0, nan, 0.0])
    b = _table(final=[0.7, 0.7, 0.7], word=[0.6] * 3, shuffled=[0.6] * 3, llm=[0.7, 0.7, 0.5], lexical=[0.6, 0.7, 0.6],
               final_hard=[0.6, 0.8, 0.9], word_hard=[0.5, 0.5, 0.5], classes=["contextual", "topical", "contextual"],
               restates=[0.0, 0.0, 0.0])
    b.loc[2, "status"] = "failed"  # a failed feature is left out of the scores (not of the copy checks)
    prose = _table(final=[0.8, 0.9], word=[0.5, 0.5], shuffled=[0.5, 0.6], llm=[0.6, 0.6], lexical=[0.6, 0.6],
                   final_hard=[0.7, 0.6], word_hard=[0.6, 0.6], classes=["contextual", "contextual"], restates=[nan, 1.0])
    factbook, prose_summary = bench.summarize({"a": a, "b": b}), bench.summarize({"a": prose})
    keys = _keys(bench.result_line(factbook, prose_summary))
    # margins: mean over models of (kind mean - shuffled mean); model a: final 0.75-0.5, model b (2 ok rows): 0.7-0.6
    assert float(keys["final_minus_shuffled"]) == pytest.approx((0.25 + 0.1) / 2, abs=1e-3)
    assert float(keys["llm_minus_shuffled"]) == pytest.approx((0.15 + 0.1) / 2, abs=1e-3)
    assert float(keys["lexical_minus_shuffled"]) == pytest.approx((0.2 + 0.05) / 2, abs=1e-3)
    # llm vs lexical, pooled: a: +, -, 0, -; b: +, 0 -> (1 + 0.5 + 1 + 0.5) / 6
    assert float(keys["llm_beats_lexical"]) == pytest.approx(3 / 6, abs=1e-3)
    assert float(keys["final_minus_shuffled_prose"]) == pytest.approx(0.85 - 0.55, abs=1e-3)
    # hard negatives, contextual, pooled over models, both scores present: a rows 0,1 (row 3 has no final_hard), b row 0
    diffs = [0.3, 0.3, 0.1]
    assert keys["hard_negative_n"] == "3"
    assert float(keys["hard_negative_final_minus_word"]) == pytest.approx(np.mean(diffs), abs=1e-3)
    assert keys["hard_negative_r"] == "+1.00"
    assert 0 < float(keys["hard_negative_p"]) < 1
    # restating: every kept LLM label with a flag, all rows: a 1 of 3, b 0 of 3
    assert float(keys["restated_window_share"]) == pytest.approx(1 / 6, abs=1e-3)
    assert float(keys["hard_negative_final_minus_word_prose"]) == pytest.approx(0.05, abs=1e-3)
    assert float(keys["restated_window_share_prose"]) == pytest.approx(1.0)
    lines = bench.targets(factbook, prose_summary)
    assert any("factbook: 0.175 (met)" in line for line in lines)
    assert any("MISSED by 0.067" in line for line in lines)  # restating 1/6 against < 10%


def test_missing_columns_read_na():
    old = pd.DataFrame({"feature": [0, 1], "status": ["ok", "ok"], "score_embedding": [0.7, 0.6], "lexical_embedding": [0.6, 0.6],
                        "baseline_embedding": [0.5, 0.5], "final_embedding": [0.7, 0.6]})  # before word_/feature_class/restates
    keys = _keys(bench.result_line(bench.summarize({"m": old}), None))
    assert float(keys["final_minus_shuffled"]) == pytest.approx(0.15)
    for key in ("final_minus_shuffled_prose", "hard_negative_final_minus_word", "hard_negative_p", "hard_negative_n",
                "restated_window_share", "restated_window_share_prose"):
        assert keys[key] == "n/a", key


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(_PATH), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_missing_or_empty_prose_corpus_is_one_line_error(tmp_path, content):
    corpus = tmp_path / "prose.jsonl"
    if content is not None:
        corpus.write_text(content)
    done = _run("--prose", str(corpus), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(corpus) in lines[0], done.stderr
    assert ("does not exist" if content is None else "empty") in lines[0]


def test_no_default_run_says_make_demo(tmp_path):
    (tmp_path / "prose.jsonl").write_text(json.dumps({"id": "a", "text": "some prose"}) + "\n")
    done = _run("--prose", "prose.jsonl", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "make demo" in lines[0] and "runs/default" in lines[0], done.stderr


def test_prose_config_is_a_partial_toml_of_the_defaults(tmp_path):
    from autointerp.config import RunConfig, load_config

    path = tmp_path / "prose.toml"
    path.write_text(bench.prose_config(Path("runs/prose-corpus/stdlib_docs.jsonl"), Path("runs/prose-labels")))
    cfg, default = load_config(path), RunConfig()
    assert (cfg.corpus.dataset, cfg.max_tokens, str(cfg.run_path)) == ("runs/prose-corpus/stdlib_docs.jsonl", 80_000, "runs/prose-labels")
    assert cfg.corpus.entity_field == "title" and not cfg.controls.ceiling and cfg.controls.floor == "none"
    assert cfg.explain == default.explain and cfg.score == default.score and [m.model for m in cfg.models] == [m.model for m in default.models]
