"""`torchrun --nproc-per-node 2 -m autointerp harvest` (gloo on CPU): the ranks share the shards, and the
result — harvest.json, every shard's token index and activations — is file-for-file the single-process
harvest; a multi-rank job killed part-way resumes from the per-rank ledgers it left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from autointerp.harvest.ledger import ShardLedger  # noqa: F401 - the module under test must import
from autointerp.rundir.layout import ModelDir, ShardPaths, rank_ledger, rank_ledgers

ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", OMP_NUM_THREADS="1", COLUMNS="200")
pytestmark = pytest.mark.slow  # each test starts torchrun with 2 processes (~20-40 s)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]


def harvest_cli(model: Path, corpus: Path, run: Path, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable, "-m"]) + ["autointerp", "harvest", "--model", str(model), "--layer", "1",
                                                   "--dataset", str(corpus), "--ctx-len", "48", "--shard-tokens", "300",
                                                   "--batch-size", "4", "--run-dir", str(run)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def setup(tiny_model_dirs, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ddp_harvest")
    corpus = root / "corpus"
    corpus.mkdir()
    words = "harbour coffee tin mountain river delta export census parliament coast".split()
    for i in range(14):
        text = " ".join(words[(i * 7 + j * (i % 3 + 1)) % len(words)] for j in range(40 + 17 * (i % 5)))
        (corpus / f"d{i:02d}.txt").write_text(text, encoding="utf-8")
    single = root / "single"
    result = harvest_cli(tiny_model_dirs["gpt2"], corpus, single)
    assert result.returncode == 0, result.stderr
    return {"corpus": corpus, "single": single, "model": tiny_model_dirs["gpt2"], "root": root}


def harvest_dir(run: Path) -> Path:
    return ModelDir(run / "gpt2").harvest


def assert_same_harvest(a: Path, b: Path) -> None:
    ma, mb = (json.loads((harvest_dir(r) / "harvest.json").read_text()) for r in (a, b))
    assert ma.pop("cost")["wall_s"] > 0 and mb.pop("cost")["wall_s"] > 0  # what each harvest cost (its own, so not compared)
    assert ma == mb and ma["complete"] and ma["n_shards"] >= 4
    for shard in ma["shards"]:
        pa, pb = ShardPaths.of(harvest_dir(a), shard["index"]), ShardPaths.of(harvest_dir(b), shard["index"])
        pd.testing.assert_frame_equal(pd.read_parquet(pa.index), pd.read_parquet(pb.index))
        xa, xb = load_file(str(pa.activations))["activations"], load_file(str(pb.activations))["activations"]
        assert xa.shape == xb.shape and torch.allclose(xa, xb, atol=1e-6, rtol=0), shard["index"]
    assert not rank_ledgers(harvest_dir(b)), "the per-rank ledgers are merged and removed"


def test_two_ranks_give_the_single_process_harvest(setup):
    multi = setup["root"] / "multi"
    result = harvest_cli(setup["model"], setup["corpus"], multi, launcher=TORCHRUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_harvest(setup["single"], multi)
    assert (result.stdout + result.stderr).count("harvest: ") == 1, "rank 0 alone prints the table"


def test_killed_multi_rank_harvest_resumes_from_rank_ledgers(setup):
    """Simulate a 2-rank job killed part-way: harvest.json lists the first shards, rank 1's ledger one more,
    the rest are missing. A re-run (2 ranks) keeps the ledger's shard and finishes identically."""
    run = setup["root"] / "killed"
    shutil.copytree(setup["single"], run)
    hdir = harvest_dir(run)
    manifest = json.loads((hdir / "harvest.json").read_text())
    shards = manifest["shards"]
    kept, in_ledger, lost = shards[:2], shards[2], shards[3:]
    manifest.update(shards=kept, complete=False)
    (hdir / "harvest.json").write_text(json.dumps(manifest))
    rank_ledger(hdir, 1).write_text(json.dumps({"rank": 1, "shards": [in_ledger]}))
    for shard in lost:
        for path in (ShardPaths.of(hdir, shard["index"]).activations, ShardPaths.of(hdir, shard["index"]).index):
            path.unlink()
    ledger_file = ShardPaths.of(hdir, in_ledger["index"]).activations
    before = ledger_file.stat().st_mtime_ns
    result = harvest_cli(setup["model"], setup["corpus"], run, launcher=TORCHRUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ledger_file.stat().st_mtime_ns == before, "a shard recorded in a rank ledger is not harvested again"
    assert_same_harvest(setup["single"], run)
