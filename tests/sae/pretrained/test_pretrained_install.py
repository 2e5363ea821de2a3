"""Pretrained SAEs installed by the train stage: an end-to-end run on the two embedded models with two SAEs of
different formats skips training and names each SAE's source in the report; through the CLI every bad input
is one line, exit 2, nothing written; an installed SAE is reused, replaced in place, or refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.pretrained_formats import (
    ENV,
    assert_same_code,
    encode_ours,
    np_jumprelu,
    np_topk,
    random_weights,
    write_gemma_scope,
    write_llama_scope,
    write_saelens,
    write_sparsify,
)


# ------------------------------------------------------------------------------------------ end to end
E2E_CONFIG = """run_dir = "{run}"
[corpus]
max_tokens = 1200
[harvest]
ctx_len = 64
shard_tokens = 400
[train]
ce_contexts = 0
[explain]
n_features = 2
select = "random"
labeller = "lexical"
[score]
scorers = ["embedding"]
shuffled_baseline = false
[compare]
representation = false
lexical_permutations = 2
[controls]
ceiling = false
floor = "none"
[report]
{report}
[[models]]
model = "gemma-3-270m"
layer = 6
sae = "{gemma_sae}"
[[models]]
model = "minilm-l6"
sae = "{minilm_sae}"
"""  # minilm-l6 has no layer: the sparsify hookpoint (layers.3) decides it (the [harvest] default 6 is out of range)


def _e2e_saes(root: Path) -> dict:
    """For gemma-3-270m L6 (d_model 640) and minilm-l6 L3 (384), in all four formats: a Gemma Scope npz and a
    sparsify SAE (the first run), a Llama Scope SAE given by its weights file and a SAELens TopK directory with
    rescale_acts_by_decoder_norm (the second run, which reuses the first run's harvest)."""
    rng = np.random.default_rng(5)
    wg, wm = random_weights(rng, 640, 256), random_weights(rng, 384, 192)
    wl, ws = random_weights(rng, 640, 256), random_weights(rng, 384, 192)
    thr = np.full(256, 0.5, dtype=np.float32)
    llama = write_llama_scope(root / "ls", wl, threshold=LLAMA_THR, norm_in=LLAMA_NORM_IN, norm_out=40.0, layer=6)
    return {"gemma_scope": (write_gemma_scope(root / "gs", wg, thr, layer=6), wg, thr),
            "sparsify": (write_sparsify(root / "sp", wm, k=8, hookpoint_name="layers.3"), wm),
            "llama_scope": (llama / "checkpoints" / "final.safetensors", wl),
            "saelens": (write_saelens(root / "sl", ws, "topk", k=8, rescale=True, hook="blocks.3.hook_resid_post"), ws)}


LLAMA_THR, LLAMA_NORM_IN = 0.4, 30.0


def _reference(fmt: str, x: np.ndarray, saes: dict) -> np.ndarray:
    """What the format's own encoder gives on raw activations x (numpy, from each format's source)."""
    if fmt == "gemma_scope":
        _, w, thr = saes[fmt]
        return np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr)
    if fmt == "sparsify":
        w = saes[fmt][1]
        return np_topk(np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0), 8)
    if fmt == "saelens":  # TopK over pre * |W_dec_i| (rescale_acts_by_decoder_norm)
        w = saes[fmt][1]
        return np_topk(((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * np.linalg.norm(w["W_dec"], axis=1), 8)
    w = saes[fmt][1]  # Llama Scope (lm-saes inference): jumprelu(x @ W_E + b_E / s_in) with the scalar threshold,
    s_in = np.sqrt(x.shape[1]) / LLAMA_NORM_IN  # reported (as SAELens does) in the normalised space: times s_in
    pre = x @ w["W_enc"] + w["b_enc"] / s_in
    return pre * (pre > LLAMA_THR) * s_in


def _check_run(run: Path, used: dict[str, tuple[str, str]], saes: dict) -> None:
    """Nothing trained, the source recorded, encodings equal to the format's own, the report names both."""
    from safetensors.torch import load_file

    from autointerp.harvest.buffer import iter_activation_batches
    from autointerp.harvest.harvester import load_manifest
    from autointerp.sae.saelens import load_sae

    for slug, (fmt, spec) in used.items():
        sae_dir = run / slug / "sae"
        assert not (sae_dir / "checkpoints").exists()  # nothing was trained
        metrics = json.loads((sae_dir / "metrics.json").read_text())
        assert metrics["sae_source"] == spec and metrics["sae_format"] == fmt and metrics["train_tokens"] == 0
        assert json.loads((sae_dir / "train.json").read_text())["settings"] == {"pretrained_sae": spec}
        # the installed SAE encodes the harvested activations exactly as the format's own encoder
        x = next(iter_activation_batches(sorted((run / slug / "harvest").glob("shard_*.safetensors")), 256, seed=0)).numpy()
        assert_same_code(encode_ours(load_sae(sae_dir), x), _reference(fmt, x, saes), f"{slug} installed ({fmt})")
        assert load_manifest(run / slug / "harvest")["d_model"] == x.shape[1]
        assert load_file(str(sae_dir / "sae_weights.safetensors"))["W_enc"].shape[0] == x.shape[1]
    report = (run / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| SAE source")).replace("\\", "")
    for fmt, spec in used.values():
        assert f"pretrained ({fmt})" in row and spec.replace("\\", "") in row, (fmt, row)


def _autointerp(*args) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "autointerp", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _in_process(*args):
    from typer.testing import CliRunner

    from autointerp.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300", "AUTOINTERP_PROGRESS": "0"})


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, dict]:
    """`autointerp run` with a Gemma Scope SAE (gemma-3-270m, layer 6 set) and a sparsify SAE (minilm-l6, no
    layer: its hookpoint decides) from the config; the second run reuses its corpus and harvests."""
    root = tmp_path_factory.mktemp("e2e")
    saes = _e2e_saes(root)
    config = root / "run.toml"
    config.write_text(E2E_CONFIG.format(run=root / "run", gemma_sae=saes["gemma_scope"][0], minilm_sae=saes["sparsify"][0],
                                        report="pages = false\nplots = false"))
    _autointerp("run", "--config", config)
    return root, saes


@pytest.mark.slow
def test_run_end_to_end_with_gemma_scope_and_sparsify(first_run):
    root, saes = first_run
    run = root / "run"
    _check_run(run, {"gemma-3-270m": ("gemma_scope", str(saes["gemma_scope"][0])),
                     "minilm-l6": ("sparsify", str(saes["sparsify"][0]))}, saes)
    again = _in_process("train", "--run-dir", run)
    assert again.exit_code == 0 and "(cached)" in again.output, again.output


@pytest.mark.slow
def test_run_end_to_end_with_llama_scope_and_saelens_given_by_flag(first_run):
    """The other two formats, given with `--sae MODEL=PATH` on `autointerp run` over a config that names no SAE
    and no layer: each SAE's own hook decides where its model is read (the first run's harvest is reused)."""
    root, saes = first_run
    run = root / "run2"
    (run / "gemma-3-270m").mkdir(parents=True)
    (run / "minilm-l6").mkdir()
    shutil.copytree(root / "run" / "corpus", run / "corpus")
    for slug in ("gemma-3-270m", "minilm-l6"):
        shutil.copytree(root / "run" / slug / "harvest", run / slug / "harvest")
    text = E2E_CONFIG.format(run=run, gemma_sae="", minilm_sae="", report="pages = false\nplots = false")
    config = root / "run2.toml"
    config.write_text(text.replace("layer = 6\n", "").replace('sae = ""\n', ""))
    llama, lens = str(saes["llama_scope"][0]), str(saes["saelens"][0])
    # in this process (the first run was a subprocess): the imports are paid once, so the two runs cost ~1.3 one
    res = _in_process("run", "--config", config, "--sae", f"gemma-3-270m={llama}", "--sae", f"minilm-l6={lens}")
    assert res.exit_code == 0, res.output[-3000:]
    harvest_table = res.output.split("harvest:", 1)[1].split("SAE metrics", 1)[0]
    assert harvest_table.count("cached") == 2, harvest_table  # at layers 6 and 3, where the first run harvested
    _check_run(run, {"gemma-3-270m": ("llama_scope", llama), "minilm-l6": ("saelens", lens)}, saes)


# ------------------------------------------------------------------------------------------ the train stage (CLI)
@pytest.fixture(scope="module")
def gpt2_harvest(tiny_model_dirs, text_corpus, tmp_path_factory) -> Path:
    """A harvest of the tiny GPT-2 (d_model 32) at layer 1 (hook transformer.h.1)."""
    from typer.testing import CliRunner

    from autointerp.cli import app

    run = tmp_path_factory.mktemp("pretrained") / "run"
    res = CliRunner().invoke(app, ["harvest", "--model", str(tiny_model_dirs["gpt2"]), "--layer", "1", "--dataset",
                                   str(text_corpus), "--ctx-len", "32", "--shard-tokens", "200", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    return run


def _train(run: Path, *args: str):
    from typer.testing import CliRunner

    from autointerp.cli import app

    return CliRunner().invoke(app, ["train", "--run-dir", str(run), *args], env={"COLUMNS": "400"})


def test_train_stage_bad_inputs_exit_2_and_write_nothing(gpt2_harvest, tmp_path):
    rng = np.random.default_rng(3)
    w32 = random_weights(rng, 32, 48)
    nan = dict(w32, b_enc=w32["b_enc"].copy())
    nan["b_enc"][0] = np.inf
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "width": (write_sparsify(tmp_path / "w", random_weights(rng, 24, 48), hookpoint_name="layers.1"),
                  r"d_in = 24 but gpt2 layer 1 \(resid\) has width 32"),
        "layer": (write_sparsify(tmp_path / "l", w32, hookpoint_name="layers.2"),
                  "reads layer 2 .*harvested at layer 1; set layer = 2"),
        "site": (write_sparsify(tmp_path / "s", w32, hookpoint_name="layers.1.mlp"), "reads site 'mlp'.*harvested at site 'resid'"),
        "hook": (write_saelens(tmp_path / "h", w32, "standard", hook="blocks.1.attn.hook_z"), "cannot harvest"),
        "unknown": (empty, "no known format"),
        "ambiguous": (write_saelens(tmp_path / "a", w32, "standard", hook="blocks.1.hook_resid_post"), "ambiguous"),
        "nan": (write_saelens(tmp_path / "n", nan, "standard"), "NaN/inf"),
        "threshold": (write_gemma_scope(tmp_path / "t", w32, np.zeros(48), layer=1).parent, None),
    }
    np.savez(cases["threshold"][0] / "params.npz", **w32)  # the published layout minus its threshold
    shutil.copy(cases["ambiguous"][0] / "sae_weights.safetensors", cases["ambiguous"][0] / "sae.safetensors")
    cases["threshold"] = (cases["threshold"][0], "JumpReLU SAE needs its threshold")
    config_before = (gpt2_harvest / "config.toml").read_text()
    for name, (path, pattern) in cases.items():
        res = _train(gpt2_harvest, "--sae", str(path))
        assert res.exit_code == 2, (name, res.output)
        lines = [line for line in res.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (name, res.output)
        assert re.search(pattern, lines[0]), (name, lines[0])
        assert not (gpt2_harvest / "gpt2" / "sae").exists(), name  # nothing written
        assert (gpt2_harvest / "config.toml").read_text() == config_before, name
    two = _train(gpt2_harvest, "--sae", str(cases["layer"][0]), "--model", "gpt2", "--model", "nope")
    assert two.exit_code == 2


def test_train_stage_installs_a_pretrained_sae_and_reuses_it(gpt2_harvest, tmp_path):
    from autointerp.harvest.buffer import iter_activation_batches
    from autointerp.sae.saelens import load_sae

    run = tmp_path / "run"
    shutil.copytree(gpt2_harvest, run)
    rng = np.random.default_rng(4)
    w = random_weights(rng, 32, 48)
    thr = np.full(48, 0.05, dtype=np.float32)
    sae_dir = write_saelens(tmp_path / "jr", w, "jumprelu", threshold=thr, hook="blocks.1.hook_resid_post")
    res = _train(run, "--sae", str(sae_dir))
    assert res.exit_code == 0, res.output
    installed = run / "gpt2" / "sae"
    metrics = json.loads((installed / "metrics.json").read_text())
    assert metrics["sae_format"] == "saelens" and metrics["sae_source"] == str(sae_dir) and 0 < metrics["l0"] < 48
    assert 'sae = "' in (run / "config.toml").read_text()  # later stages (and re-runs) see the SAE
    x = next(iter_activation_batches(sorted((run / "gpt2" / "harvest").glob("shard_*.safetensors")), 128, seed=0)).numpy()
    assert_same_code(encode_ours(load_sae(installed), x), np_jumprelu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], thr), "installed jumprelu")
    again = _train(run)  # from the saved config: nothing to do
    assert again.exit_code == 0 and "(cached)" in again.output
    write_saelens(sae_dir, w, "jumprelu", threshold=thr * 4, hook="blocks.1.hook_resid_post")  # replaced in place
    st = (sae_dir / "sae_weights.safetensors").stat()  # (a coarse-mtime filesystem must still see a new file)
    os.utime(sae_dir / "sae_weights.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    redone = _train(run)
    assert redone.exit_code == 0 and "(cached)" not in redone.output
    assert json.loads((installed / "metrics.json").read_text())["l0"] < metrics["l0"]  # the higher threshold is in
    other = write_saelens(tmp_path / "std", w, "standard", hook="blocks.1.hook_resid_post")
    refused = _train(run, "--sae", str(other))  # another SAE over an installed one: named, not silently replaced
    assert refused.exit_code == 2 and f"is {sae_dir} (installed by `autointerp train`), not {other}" in refused.output
    assert _train(run, "--sae", str(other), "--overwrite").exit_code == 0
    assert json.loads((installed / "metrics.json").read_text())["sae_source"] == str(other)
