"""`autointerp sweep`: every layer of two tiny models against every layer of the other, from saved documents."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autointerp.config import ModelEntry, RunConfig, to_toml
from autointerp.data.corpus import Document
from autointerp.errors import UserError
from autointerp.rundir.layout import RunDir
from autointerp.sweep.config import METRICS
from autointerp.sweep.stage import sweep_stage
from helpers import ROOT
from helpers.runs import write_documents

REPO = ROOT


def _run(tmp_path: Path, text_corpus: Path, models: list[ModelEntry], name: str) -> RunConfig:
    run = tmp_path / name
    docs = [Document(p.stem, p.read_text(encoding="utf-8")) for p in sorted(text_corpus.glob("*.txt"))]
    write_documents(run, docs, "local")
    cfg = RunConfig(run_dir=str(run), models=models)
    cfg.harvest = dataclasses.replace(cfg.harvest, ctx_len=32, batch_size=8, device="cpu")
    RunDir(run).config.write_text(to_toml(cfg), encoding="utf-8")
    return cfg


def _grid(summary: dict, metric: str) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in summary["metrics"][metric]["values"]])


def test_a_model_against_itself_aligns_on_the_diagonal(tmp_path, tiny_model_dirs, text_corpus, one_thread):
    spec = str(tiny_model_dirs["gpt2"])
    cfg = _run(tmp_path, text_corpus, [ModelEntry(spec, name="a"), ModelEntry(spec, name="b")], "self")
    summary = sweep_stage(cfg, progress=False).summary
    cka = _grid(summary, "cka")
    assert cka.shape == (3, 3)
    assert np.all(np.diag(cka) > 0.999)
    for metric in METRICS:  # each layer's best partner is itself, for every metric
        assert summary["metrics"][metric]["best_b_for_each_a"] == [0, 1, 2], metric
    assert summary["n_aligned_units"] == summary["n_units"] > 100
    assert summary["null"] and all(n["cka"]["value"] > n["cka"]["null_mean"] for n in summary["null"])


def test_two_families_end_to_end_rerun_and_changed_settings(tmp_path, tiny_model_dirs, text_corpus, one_thread):
    cfg = _run(tmp_path, text_corpus, [ModelEntry(str(tiny_model_dirs["gpt2"]), name="a"), ModelEntry(str(tiny_model_dirs["bert"]), name="b")], "pair")
    out = RunDir(cfg.run_path).sweep
    first = sweep_stage(cfg, progress=False)
    assert not first.skipped
    saved = json.loads(out.record.read_text())
    assert saved["stage"] == "sweep" and saved["complete"]
    s = saved["summary"]
    assert (s["model_a"]["n_layers"], s["model_b"]["n_layers"]) == (3, 3)
    for metric in METRICS:
        assert out.heatmap(metric).is_file() and out.heatmap(metric).stat().st_size > 1000
        best = s["metrics"][metric]["best"]
        assert 0 <= best["layer_a"] < 3 and 0 <= best["layer_b"] < 3
        assert np.isfinite(_grid(s, metric)).all()
    assert s["seconds"]["total"] > 0 and s["n_documents"] >= 1
    mtime = out.record.stat().st_mtime_ns
    again = sweep_stage(cfg, progress=False)
    assert again.skipped and out.record.stat().st_mtime_ns == mtime
    cfg.sweep = dataclasses.replace(cfg.sweep, max_units=50)
    with pytest.raises(UserError, match="max_units"):
        sweep_stage(cfg, progress=False)
    small = sweep_stage(cfg, overwrite=True, progress=False).summary
    assert small["max_units"] == 50 and small["n_documents"] < s["n_documents"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autointerp", "sweep", *args], cwd=REPO, capture_output=True, text=True,
                          env={**__import__("os").environ, "AUTOINTERP_PROGRESS": "0", "COLUMNS": "200"}, timeout=120)


def test_cli_sweeps_and_a_missing_corpus_is_one_line(tmp_path, tiny_model_dirs, text_corpus):
    cfg = _run(tmp_path, text_corpus, [ModelEntry(str(tiny_model_dirs["llama"]), name="a"), ModelEntry(str(tiny_model_dirs["opt"]), name="b")], "cli")
    done = _cli("--run-dir", str(cfg.run_path), "--max-units", "300")
    assert done.returncode == 0, done.stdout + done.stderr
    assert RunDir(cfg.run_path).sweep.record.is_file() and "cka" in done.stdout + done.stderr
    RunDir(cfg.run_path).documents.unlink()
    missing = _cli("--run-dir", str(cfg.run_path), "--max-units", "300")
    assert missing.returncode == 2
    lines = [line for line in (missing.stdout + missing.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "no saved corpus" in lines[0], lines
