"""`autointerp train` on a real harvest: SAELens-layout files + metrics, a no-op re-run, clear errors, and
two-process data parallel training (torchrun, gloo on CPU) that matches single-process training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from autointerp.rundir.layout import ModelDir
from autointerp.rundir.record import StageRecord

ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", OMP_NUM_THREADS="1", COLUMNS="200")
TRAIN = ["--expansion-factor", "4", "--k", "4", "--epochs", "4", "--batch-size", "64"]


def cli(*args, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable, "-m"]) + ["autointerp", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def harvested(tiny_model_dirs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    corpus = root / "corpus"
    corpus.mkdir()
    words = "harbour coffee tin mountain river delta export census parliament coast".split()
    rng = np.random.default_rng(1)
    for i in range(40):
        (corpus / f"d{i:02d}.txt").write_text(" ".join(rng.choice(words, size=120)), encoding="utf-8")
    run = root / "run"
    result = cli("harvest", "--model", tiny_model_dirs["gpt2"], "--layer", "1", "--dataset", corpus, "--ctx-len", "64", "--shard-tokens", "1500", "--run-dir", run)
    assert result.returncode == 0, result.stderr
    return run


def test_train_writes_saelens_files_and_metrics_then_caches(harvested, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(harvested, run)
    result = cli("train", "--run-dir", run, *TRAIN)
    assert result.returncode == 0, result.stderr
    sae = run / "gpt2" / "sae"
    weights = load_file(str(sae / "sae_weights.safetensors"))
    assert weights["W_enc"].shape == (32, 128) and weights["W_dec"].shape == (128, 32)
    cfg = json.loads((sae / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and cfg["d_in"] == 32
    metrics = json.loads((sae / "metrics.json").read_text())
    assert 0 <= metrics["fvu"] < 1 and abs(metrics["explained_variance"] - (1 - metrics["fvu"])) < 1e-6
    assert 0 < metrics["l0"] <= 4 and 0 <= metrics["dead_fraction"] <= 1
    again = cli("train", "--run-dir", run, *TRAIN)
    assert again.returncode == 0 and "(cached)" in again.stderr + again.stdout
    changed = cli("train", "--run-dir", run, *TRAIN[:-2], "--batch-size", "32")
    assert changed.returncode == 2 and "--overwrite" in changed.stderr

    mined = cli("exemplars", "--run-dir", run, "--n-top", "5")
    assert mined.returncode == 0, mined.stderr
    table = pd.read_parquet(run / "gpt2" / "exemplars.parquet")
    stats = pd.read_parquet(run / "gpt2" / "feature_stats.parquet")
    docs = pd.read_parquet(run / "corpus" / "documents.parquet").set_index("doc_id")["text"]
    assert len(stats) == 128 and (~stats["dead"]).sum() > 0
    top = table[table["kind"] == "top"]
    assert top.groupby("feature").size().max() <= 5 and set(table["split"]) == {"train", "test"}
    row = top.iloc[0]
    assert row["text"] == docs[row["doc_id"]][row["char_start"][0] : row["char_end"][-1]]
    assert max(row["acts"]) == pytest.approx(row["max_act"], rel=1e-4)
    assert "cached" in cli("exemplars", "--run-dir", run, "--n-top", "5").stderr


def test_train_without_harvest_says_what_to_run(tmp_path):
    result = cli("train", "--run-dir", tmp_path / "empty")
    assert result.returncode == 2 and "autointerp harvest" in result.stderr and "Traceback" not in result.stderr


def test_two_process_data_parallel_matches_single_process(harvested, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    shutil.copytree(harvested, single)
    shutil.copytree(harvested, multi)
    assert cli("train", "--run-dir", single, *TRAIN).returncode == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    result = cli("train", "--run-dir", multi, *TRAIN, launcher=torchrun)
    assert result.returncode == 0, result.stderr[-3000:]
    assert StageRecord.load(ModelDir(multi / "gpt2").sae.record).summary["world_size"] == 2
    w1 = load_file(str(single / "gpt2" / "sae" / "sae_weights.safetensors"))
    w2 = load_file(str(multi / "gpt2" / "sae" / "sae_weights.safetensors"))
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert (w1[name] - w2[name]).abs().max() < 1e-3, name
    m1 = json.loads((single / "gpt2" / "sae" / "metrics.json").read_text())
    m2 = json.loads((multi / "gpt2" / "sae" / "metrics.json").read_text())
    assert abs(m1["fvu"] - m2["fvu"]) < 1e-3 and abs(m1["l0"] - m2["l0"]) < 0.05


def test_train_killed_and_rerun_matches_uninterrupted(harvested, tmp_path):
    import signal
    import time

    from autointerp.config import load_config, to_toml

    runs = {}
    for name in ("killed", "clean"):
        runs[name] = tmp_path / name
        shutil.copytree(harvested, runs[name])
        cfg = load_config(runs[name] / "config.toml")
        cfg.run_dir = str(runs[name])
        cfg.train.checkpoint_every = 5
        (runs[name] / "config.toml").write_text(to_toml(cfg))
    args = [sys.executable, "-m", "autointerp", "train", "--run-dir", str(runs["killed"]), *TRAIN[:-3], "12", *TRAIN[-2:]]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = runs["killed"] / "gpt2" / "sae" / "checkpoints" / "checkpoint.safetensors"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ckpt.exists():
        time.sleep(0.02)
    assert proc.poll() is None, f"training finished before it could be killed: {proc.stderr.read().decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (runs["killed"] / "gpt2" / "sae" / "sae_weights.safetensors").exists()
    resumed = subprocess.run(args, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = cli("train", "--run-dir", runs["clean"], *TRAIN[:-3], "12", *TRAIN[-2:])
    assert clean.returncode == 0, clean.stderr
    w_killed = load_file(str(runs["killed"] / "gpt2" / "sae" / "sae_weights.safetensors"))
    w_clean = load_file(str(runs["clean"] / "gpt2" / "sae" / "sae_weights.safetensors"))
    for name in w_clean:
        assert (w_killed[name] - w_clean[name]).abs().max() < 1e-5, name
