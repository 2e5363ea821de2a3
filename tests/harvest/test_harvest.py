"""Harvesting: provenance down to the character, activations equal to a plain forward, specials,
sequence level, shard layout, resume after a kill, and refusal to mix settings in one directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autointerp.data.corpus import CorpusConfig, Document, collect_documents
from autointerp.errors import UserError
from autointerp.models import load_model
from autointerp.harvest.harvester import HarvestConfig, harvest, load_manifest
from autointerp.harvest.shards import read_shard
from helpers.tiny_models import FAMILIES


def _docs(text_corpus: Path) -> list[Document]:
    docs, _ = collect_documents(CorpusConfig(dataset=str(text_corpus), shuffle=False))
    return docs


def _read_all(harvest_dir: Path) -> tuple[torch.Tensor, pd.DataFrame]:
    manifest = load_manifest(harvest_dir)
    parts = [read_shard(harvest_dir, s["index"]) for s in manifest["shards"]]
    return torch.cat([p[0] for p in parts]).float(), pd.concat([p[1] for p in parts], ignore_index=True)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("##", "").replace("\u2581", " ").replace("\u0120", " "))
    return "".join(c for c in text if not unicodedata.combining(c)).strip().lower()


@pytest.mark.parametrize("family", FAMILIES)
def test_provenance_char_spans_reproduce_tokens(tiny_model_dirs, text_corpus, tmp_path, family):
    lm = load_model(str(tiny_model_dirs[family]))
    docs = _docs(text_corpus)
    result = harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=24, batch_size=4, shard_tokens=200), progress=False)
    acts, index = _read_all(tmp_path / "h")
    assert acts.shape == (result.n_rows, 32) and len(index) == result.n_rows
    assert result.n_shards > 1
    # No special tokens stored, every content token exactly once, positions 0..n-1 per document.
    expected = {d.doc_id: len(lm.tokenizer(d.text, add_special_tokens=False)["input_ids"]) for d in docs}
    assert (index["position"] >= 0).all()
    for doc_id, group in index.groupby("doc_id"):
        assert sorted(group["position"]) == list(range(expected[doc_id]))
    texts = {d.doc_id: d.text for d in docs}
    checked = 0
    for row in index.itertuples():
        span = texts[row.doc_id][row.char_start : row.char_end]
        token = row.token
        if "\ufffd" in token or token in lm.tokenizer.all_special_tokens or not span.strip() or not _norm(token):
            continue
        assert _norm(token) == _norm(span), (row.doc_id, row.position, token, span)
        checked += 1
    assert checked > 0.9 * len(index)


@pytest.mark.parametrize("family", ["gpt2", "gemma3", "bert"])
def test_activations_equal_plain_forward(tiny_model_dirs, text_corpus, tmp_path, family):
    lm = load_model(str(tiny_model_dirs[family]))
    docs = _docs(text_corpus)[:3]
    harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=32, batch_size=3), progress=False)
    acts, index = _read_all(tmp_path / "h")
    first = index[index["context_id"] == 0].sort_values("ctx_pos")
    frame = load_manifest(tmp_path / "h")["special_frame"]
    inputs = frame["prefix"] + first["token_id"].tolist() + frame["suffix"]
    doc = next(d for d in docs if d.doc_id == first["doc_id"].iloc[0])
    assert first["token_id"].tolist() == lm.tokenizer(doc.text, add_special_tokens=False)["input_ids"][: len(first)]
    with torch.inference_mode():
        hidden = lm.model(input_ids=torch.tensor([inputs]), output_hidden_states=True).hidden_states[2][0]
    expected = hidden[torch.tensor(first["ctx_pos"].tolist())]
    torch.testing.assert_close(acts[torch.tensor(first.index.tolist())], expected, rtol=1e-4, atol=1e-4)


def test_keep_special_is_explicit(tiny_model_dirs, text_corpus, tmp_path):
    lm = load_model(str(tiny_model_dirs["bert"]))
    docs = _docs(text_corpus)[:4]
    skip = harvest(lm, docs, tmp_path / "skip", HarvestConfig(layer=0, ctx_len=32), progress=False)
    keep = harvest(lm, docs, tmp_path / "keep", HarvestConfig(layer=0, ctx_len=32, keep_special=True), progress=False)
    _, index = _read_all(tmp_path / "keep")
    specials = index[index["position"] < 0]
    n_contexts = index["context_id"].nunique()
    assert keep.n_rows - skip.n_rows == 2 * n_contexts == len(specials)
    assert set(specials["token_id"]) == {lm.tokenizer.cls_token_id, lm.tokenizer.sep_token_id}
    assert (specials["char_start"] == -1).all()


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_sequence_level(tiny_model_dirs, text_corpus, tmp_path, pool):
    lm = load_model(str(tiny_model_dirs["opt"]))
    docs = _docs(text_corpus)
    harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=40, level="sequence", pool=pool), progress=False)
    acts, index = _read_all(tmp_path / "h")
    assert len(index) == len(docs) and set(index["doc_id"]) == {d.doc_id for d in docs}
    row = index.iloc[0]
    doc = next(d for d in docs if d.doc_id == row["doc_id"])
    ids = [lm.tokenizer.bos_token_id] + lm.tokenizer(doc.text, add_special_tokens=False)["input_ids"][:39]
    assert row["n_tokens"] == len(ids) - 1 and row["char_start"] == 0
    with torch.inference_mode():
        hidden = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[2][0]
    expected = hidden[-1] if pool == "last" else hidden[1:].mean(0)
    torch.testing.assert_close(acts[0], expected, rtol=1e-4, atol=1e-4)


def test_storage_dtype_bf16(tiny_model_dirs, text_corpus, tmp_path):
    lm = load_model(str(tiny_model_dirs["llama"]))
    harvest(lm, _docs(text_corpus)[:3], tmp_path / "h", HarvestConfig(layer=0, ctx_len=32, dtype="bfloat16"), progress=False)
    acts, _ = read_shard(tmp_path / "h", 0)
    assert acts.dtype == torch.bfloat16


def test_different_settings_refused_then_overwrite(tiny_model_dirs, text_corpus, tmp_path):
    lm = load_model(str(tiny_model_dirs["gpt2"]))
    docs = _docs(text_corpus)
    harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=32), progress=False)
    before = (tmp_path / "h" / "shard_00000.safetensors").read_bytes()
    with pytest.raises(UserError, match="ctx_len: 32 -> 48"):
        harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=48), progress=False)
    assert (tmp_path / "h" / "shard_00000.safetensors").read_bytes() == before  # nothing damaged
    again = harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=32), progress=False)
    assert again.resumed_shards == again.n_shards  # complete harvest: a re-run is a no-op
    harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=48), overwrite=True, progress=False)
    assert load_manifest(tmp_path / "h")["identity"]["ctx_len"] == 48


def test_ctx_len_too_small_for_specials(tiny_model_dirs, text_corpus, tmp_path):
    lm = load_model(str(tiny_model_dirs["bert"]))
    with pytest.raises(UserError, match="ctx-len"):
        harvest(lm, _docs(text_corpus), tmp_path / "h", HarvestConfig(layer=0, ctx_len=2), progress=False)


def _big_corpus(root: Path) -> Path:
    root.mkdir()
    words = "harbour coffee tin mountain river delta export census parliament coast".split()
    rng = np.random.default_rng(0)
    for i in range(60):
        (root / f"d{i:03d}.txt").write_text(" ".join(rng.choice(words, size=200)), encoding="utf-8")
    return root


def test_resume_after_kill_matches_uninterrupted(tiny_model_dirs, tmp_path):
    corpus = _big_corpus(tmp_path / "corpus")
    model = str(tiny_model_dirs["gpt2"])
    args = [sys.executable, "-m", "autointerp", "harvest", "--model", model, "--layer", "1", "--dataset", str(corpus), "--ctx-len", "64", "--max-tokens", "10000000", "--shard-tokens", "1000"]
    env = dict(os.environ, AUTOINTERP_PROGRESS="0")
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--run-dir", str(killed_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    shard_dir = None
    while time.time() < deadline and proc.poll() is None:
        found = list(killed_dir.glob("*/harvest/shard_00001.safetensors"))
        if found:
            shard_dir = found[0].parent
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert shard_dir is not None, f"harvest finished or failed before it could be killed: {proc.stderr.read().decode()[-500:]}"
    partial = load_manifest(shard_dir)
    assert not partial["complete"] and 1 <= len(partial["shards"]) < partial["n_shards"]
    resumed = subprocess.run([*args, "--run-dir", str(killed_dir)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run([*args, "--run-dir", str(tmp_path / "clean")], env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    final = load_manifest(shard_dir)
    assert final["complete"] and len(final["shards"]) == final["n_shards"]
    acts_k, index_k = _read_all(shard_dir)
    acts_c, index_c = _read_all(next((tmp_path / "clean").glob("*/harvest")))
    torch.testing.assert_close(acts_k, acts_c)
    pd.testing.assert_frame_equal(index_k, index_c)
    assert not list(shard_dir.glob(".*.tmp"))


def test_completed_harvest_skips_model_loading(tiny_model_dirs, text_corpus, tmp_path, monkeypatch):
    """A re-run over an unchanged, finished harvest must not load the model at all (it reads files only);
    any change to what the harvest depends on falls back to the normal path, which names the difference."""
    import dataclasses

    import autointerp.harvest.stage as stages
    from autointerp.config import ModelEntry, RunConfig

    cfg = RunConfig(name="fast", run_dir=str(tmp_path / "run"), max_tokens=2000, models=[ModelEntry(str(tiny_model_dirs["gpt2"]), layer=-1)])
    cfg.corpus = dataclasses.replace(cfg.corpus, dataset=str(text_corpus), min_chars=1)
    cfg.harvest = dataclasses.replace(cfg.harvest, ctx_len=32)
    first = stages.harvest_stage(cfg, cfg.models[0], progress=False)

    def no_model(*args, **kwargs):
        raise AssertionError("load_model called for an unchanged, complete harvest")

    monkeypatch.setattr(stages, "load_model", no_model)
    again = stages.harvest_stage(cfg, cfg.models[0], progress=False)
    assert (again.n_rows, again.n_shards, again.d_model) == (first.n_rows, first.n_shards, first.d_model)
    assert again.resumed_shards == again.n_shards
    cfg.harvest = dataclasses.replace(cfg.harvest, ctx_len=48)  # changed settings: the model must be consulted
    assert stages.completed_harvest(cfg, cfg.models[0]) is None
