"""Pretrained SAEs (``sae = ...``): each format written in its published layout (file names, tensor names,
shapes, dtypes, config keys), read into our SAE type, and checked against an independent numpy encoder
written from the format's own source; every bad input is one line, exit 2, nothing written; hub references
fail offline with the local-path alternative; and an end-to-end run on the two embedded models with two
SAEs of different formats skips training and names each SAE's source in the report."""

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
import torch
from safetensors.numpy import save_file as save_np

from autointerp.errors import UserError
from autointerp.sae.pretrained import load_pretrained
from autointerp.sae.pretrained.common import hookpoint
from autointerp.sae.pretrained.resolve import describe, hub_reference

ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", OMP_NUM_THREADS="1", COLUMNS="300")
D_IN, D_SAE, K = 24, 64, 6


# ------------------------------------------------------------------------------------------ published layouts
def _weights(rng: np.random.Generator, d_in: int, d_sae: int) -> dict[str, np.ndarray]:
    """SAELens orientation: W_enc [d_in, d_sae], W_dec [d_sae, d_in] (decoder rows not unit norm)."""
    w_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    w_dec *= (0.5 + rng.random((d_sae, 1))).astype(np.float32) / np.linalg.norm(w_dec, axis=1, keepdims=True)
    return {"W_enc": (rng.standard_normal((d_in, d_sae)) / np.sqrt(d_in)).astype(np.float32),
            "b_enc": (rng.standard_normal(d_sae) * 0.2 - 0.1).astype(np.float32),
            "W_dec": w_dec, "b_dec": (rng.standard_normal(d_in) * 0.3).astype(np.float32)}


def write_saelens(root: Path, w: dict, arch: str, *, k: int = K, rescale: bool = False, hook: str = "blocks.3.hook_resid_post",
                  threshold: np.ndarray | None = None, apply_b_dec: bool = True) -> Path:
    """SAELens >= 6 ``save_model`` layout: cfg.json (metadata nested) + sae_weights.safetensors."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"architecture": arch, "d_in": w["W_enc"].shape[0], "d_sae": w["W_enc"].shape[1], "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": apply_b_dec, "normalize_activations": "none",
           "reshape_activations": "none", "metadata": {"sae_lens_version": "6.5.1", "model_name": "m", "hook_name": hook,
                                                       "context_size": 128, "prepend_bos": True}}
    if arch == "topk":
        cfg.update(k=k, rescale_acts_by_decoder_norm=rescale)
    tensors = dict(w)
    if threshold is not None:
        tensors["threshold"] = threshold.astype(np.float32)
    (root / "cfg.json").write_text(json.dumps(cfg))
    save_np(tensors, str(root / "sae_weights.safetensors"))
    return root


def write_sparsify(root: Path, w: dict, *, k: int = K, hookpoint_name: str = "layers.3") -> Path:
    """sparsify ``SparseCoder.save_to_disk``: <hookpoint>/cfg.json (SparseCoderConfig + d_in) + sae.safetensors."""
    d = root / hookpoint_name
    d.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = w["W_enc"].shape
    (d / "cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": d_sae // d_in, "normalize_decoder": True,
                                            "num_latents": d_sae, "k": k, "multi_topk": False, "skip_connection": False,
                                            "transcode": False, "d_in": d_in}))
    save_np({"encoder.weight": np.ascontiguousarray(w["W_enc"].T), "encoder.bias": w["b_enc"], "W_dec": w["W_dec"],
             "b_dec": w["b_dec"]}, str(d / "sae.safetensors"))
    return d


def write_gemma_scope(root: Path, w: dict, threshold: np.ndarray, layer: int = 3) -> Path:
    """Gemma Scope: layer_L/width_W/average_l0_N/params.npz with W_enc, W_dec, b_enc, b_dec, threshold (float32)."""
    d = root / "gemma-scope-2b-pt-res" / f"layer_{layer}" / "width_16k" / "average_l0_71"
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "params.npz", W_enc=w["W_enc"], W_dec=w["W_dec"], b_enc=w["b_enc"], b_dec=w["b_dec"],
             threshold=threshold.astype(np.float32))
    return d / "params.npz"


def write_llama_scope(root: Path, w: dict, *, threshold: float | None = 0.4, norm_in: float = 7.5, norm_out: float = 7.5,
                      layer: int = 3) -> Path:
    """Llama Scope: <Llama3_1-8B-Base-L{L}R-8x>/hyperparams.json + checkpoints/final.safetensors (nn.Linear layout)."""
    d_in, d_sae = w["W_enc"].shape
    d = root / f"Llama3_1-8B-Base-L{layer}R-8x"
    (d / "checkpoints").mkdir(parents=True, exist_ok=True)
    hook = f"blocks.{layer}.hook_resid_post"
    hp = {"d_model": d_in, "d_sae": d_sae, "expansion_factor": d_sae // d_in, "hook_point_in": hook, "hook_point_out": hook,
          "act_fn": "jumprelu", "norm_activation": "dataset-wise", "sparsity_include_decoder_norm": True, "top_k": 50,
          "dataset_average_activation_norm": {"in": norm_in, "out": norm_out}, "use_decoder_bias": True,
          "apply_decoder_bias_to_pre_encoder": False}
    if threshold is not None:
        hp["jump_relu_threshold"] = threshold
    (d / "hyperparams.json").write_text(json.dumps(hp))
    save_np({"encoder.weight": np.ascontiguousarray(w["W_enc"].T), "encoder.bias": w["b_enc"],
             "decoder.weight": np.ascontiguousarray(w["W_dec"].T), "decoder.bias": w["b_dec"]},
            str(d / "checkpoints" / "final.safetensors"))
    return d


# ------------------------------------------------------------------------------------------ independent encoders
def np_standard(x, w, apply_b_dec=True):
    return np.maximum((x - w["b_dec"] * apply_b_dec) @ w["W_enc"] + w["b_enc"], 0)


def np_topk(pre, k):
    out = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=1)[:, :k]
    rows = np.arange(len(pre))[:, None]
    out[rows, idx] = np.maximum(pre[rows, idx], 0)
    return out


def np_jumprelu(pre, threshold):
    return np.maximum(pre, 0) * (pre > threshold)


def _ours(sae, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        acts, idx = sae.encode(torch.from_numpy(x))
    dense = torch.zeros(x.shape[0], sae.cfg.d_sae).scatter_add_(-1, idx, acts.float())
    return dense.numpy()


def _close(ours, ref, what):
    assert (ref > 0).any() and (ref == 0).any(), f"{what}: the reference code is trivial"
    assert np.array_equal(ours > 0, ref > 0), f"{what}: different latents fire"
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(), err_msg=what)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, D_IN)) * 1.5 + rng.standard_normal(D_IN)).astype(np.float32)
    return rng, x, _weights(rng, D_IN, D_SAE)


def test_saelens_standard_topk_rescale_and_jumprelu_match_numpy(data, tmp_path):
    rng, x, w = data
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    p = load_pretrained(str(write_saelens(tmp_path / "std", w, "standard")))
    assert (p.format, p.layer, p.site, p.sae.cfg.architecture) == ("saelens", 3, "resid", "relu")
    _close(_ours(p.sae, x), np_standard(x, w), "saelens standard")
    p = load_pretrained(str(write_saelens(tmp_path / "topk", w, "topk")))
    _close(_ours(p.sae, x), np_topk(pre, K), "saelens topk")
    p = load_pretrained(str(write_saelens(tmp_path / "rescale", w, "topk", rescale=True)))
    # SAELens TopK with rescale_acts_by_decoder_norm: topk over pre * |W_dec_i|, those values are the activations
    norms = np.linalg.norm(w["W_dec"], axis=1)
    _close(_ours(p.sae, x), np_topk(pre * norms, K), "saelens topk rescale")
    with torch.no_grad():  # and it decodes acts / |W_dec_i| @ W_dec + b_dec
        ref = np_topk(pre * norms, K)
        recon = p.sae.decode(*p.sae.encode(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(recon, (ref / norms) @ w["W_dec"] + w["b_dec"], rtol=1e-4, atol=1e-4)
    thr = (rng.standard_normal(D_SAE) * 0.3).astype(np.float32)  # mixed signs: relu(h) * (h > thr) either way
    assert (thr < 0).any() and (thr > 0).any()
    p = load_pretrained(str(write_saelens(tmp_path / "jr", w, "jumprelu", threshold=thr, apply_b_dec=False)))
    _close(_ours(p.sae, x), np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr), "saelens jumprelu")


def test_sparsify_matches_its_encoder(data, tmp_path):
    _, x, w = data
    d = write_sparsify(tmp_path / "sae-pythia", w, hookpoint_name="layers.5")
    p = load_pretrained(str(d))
    assert (p.format, p.layer, p.site, p.sae.cfg.k) == ("sparsify", 5, "resid", K)
    # sparsify: topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias))
    ref = np_topk(np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0), K)
    _close(_ours(p.sae, x), ref, "sparsify")
    with torch.no_grad():
        recon = p.sae.decode(*p.sae.encode(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(recon, ref @ w["W_dec"] + w["b_dec"], rtol=1e-4, atol=1e-4)
    assert hookpoint("layers.5.mlp") == (5, "mlp") and hookpoint("blocks.2.hook_resid_pre") == (1, "resid")
    assert hookpoint("blocks.2.attn.hook_z") == (None, None)
    with pytest.raises(UserError, match="several hookpoints.*layers.5"):  # the repo root, not one hookpoint
        load_pretrained(str(tmp_path / "sae-pythia"))


def test_gemma_scope_npz_matches_published_jumprelu(data, tmp_path):
    rng, x, w = data
    thr = (np.abs(rng.standard_normal(D_SAE)) * 0.4).astype(np.float32)
    npz = write_gemma_scope(tmp_path, w, thr, layer=4)
    for spec in (npz, npz.parent):  # the file or its directory
        p = load_pretrained(str(spec))
        assert (p.format, p.layer, p.site, p.hook) == ("gemma_scope", 4, "resid", "blocks.4.hook_resid_post")
        # Gemma Scope's JumpReLU: no b_dec subtraction; relu(pre) * (pre > threshold)
        _close(_ours(p.sae, x), np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr), "gemma scope")
    with torch.no_grad():
        ref = np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr)
        recon = p.sae.decode(*p.sae.encode(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(recon, ref @ w["W_dec"] + w["b_dec"], rtol=1e-4, atol=1e-4)


def test_llama_scope_dataset_norm_and_scalar_threshold(data, tmp_path):
    _, x, w = data
    norm_in, norm_out, thr = 7.5, 5.0, 0.4
    d = write_llama_scope(tmp_path, w, threshold=thr, norm_in=norm_in, norm_out=norm_out, layer=3)
    p = load_pretrained(str(d))
    assert (p.format, p.layer, p.site) == ("llama_scope", 3, "resid")
    # lm-saes inference (standardize_parameters_of_dataset_norm): b_E / s_in, b_D / s_out, W_D * s_in / s_out,
    # then jumprelu(x @ W_E + b_E) with the scalar threshold; our activations are those times s_in.
    s_in, s_out = np.sqrt(D_IN) / norm_in, np.sqrt(D_IN) / norm_out
    pre_raw = x @ w["W_enc"] + w["b_enc"] / s_in
    ref_raw = pre_raw * (pre_raw > thr)
    _close(_ours(p.sae, x) / s_in, ref_raw, "llama scope")
    with torch.no_grad():
        recon = p.sae.decode(*p.sae.encode(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(recon, ref_raw @ (w["W_dec"] * s_in / s_out) + w["b_dec"] / s_out, rtol=1e-4, atol=1e-4)
    # the weights file may also be given directly
    assert load_pretrained(str(d / "checkpoints" / "final.safetensors")).format == "llama_scope"


def test_bad_inputs_are_one_line_errors(data, tmp_path):
    rng, _, w = data
    cases = {}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "weights.bin").write_bytes(b"x")
    cases["unknown"] = (empty, "no known format.*SAELens.*cfg.json.*sae_weights.safetensors.*sparsify.*sae.safetensors.*params.npz.*hyperparams.json")
    amb = write_saelens(tmp_path / "amb", w, "standard")
    shutil.copy(amb / "sae_weights.safetensors", amb / "sae.safetensors")
    cases["ambiguous"] = (amb, "ambiguous.*saelens and sparsify")
    nan = dict(w, W_dec=w["W_dec"].copy())
    nan["W_dec"][3, 2] = np.nan
    cases["nan"] = (write_saelens(tmp_path / "nan", nan, "standard"), "NaN")
    cases["nan_npz"] = (write_gemma_scope(tmp_path / "g_nan", nan, np.zeros(D_SAE)), "W_dec contains NaN")
    cases["jumprelu_no_thr"] = (write_saelens(tmp_path / "jr", w, "jumprelu"), "JumpReLU SAE needs its `threshold`")
    npz = tmp_path / "g_nothr" / "layer_3" / "params.npz"
    npz.parent.mkdir(parents=True)
    np.savez(npz, **w)
    cases["npz_no_thr"] = (npz, "JumpReLU SAE needs its threshold")
    cases["llama_no_thr"] = (write_llama_scope(tmp_path / "l", w, threshold=None), "JumpReLU SAE needs its threshold")
    bad_shape = dict(w, b_enc=w["b_enc"][:-1])
    cases["shape"] = (write_sparsify(tmp_path / "s", bad_shape), "b_enc has shape")
    cases["missing"] = (tmp_path / "nope", "does not exist")
    cases["gated"] = (write_saelens(tmp_path / "gated", w, "gated"), "architecture 'gated' is not supported")
    for name, (path, pattern) in cases.items():
        with pytest.raises(UserError, match=pattern) as err:
            load_pretrained(str(path))
        assert "\n" not in err.value.message, name


def test_the_sae_decides_an_unset_layer_and_site(data, tmp_path):
    from autointerp.config import ModelEntry
    from autointerp.sae.pretrained import fill_hookpoint

    _, _, w = data
    entry = ModelEntry("m", sae=str(write_sparsify(tmp_path, w, hookpoint_name="layers.4.mlp")))
    fill_hookpoint(entry)
    assert (entry.layer, entry.site) == (4, "mlp")
    kept = ModelEntry("m", layer=2, sae=str(tmp_path / "does-not-exist"))  # a set layer: nothing is read
    fill_hookpoint(kept)
    assert kept.layer == 2 and kept.site is None


def test_config_sae_key_is_checked_and_round_trips():
    import tomllib

    from autointerp.config import parse_config, to_toml

    base = {"models": [{"model": "gemma-3-270m", "layer": 6}, {"model": "minilm-l6", "layer": 3}]}
    for bad, pattern in (("", "is empty"), ({"path": "x"}, "needs repo"), (3, "sae = 3")):
        data = {"models": [dict(base["models"][0], sae=bad), base["models"][1]]}
        with pytest.raises(UserError, match=pattern):
            parse_config(data)
    ref = {"repo": "fnlp/Llama3_1-8B-Base-LXR-8x", "path": "Llama3_1-8B-Base-L15R-8x"}
    cfg = parse_config({"models": [dict(base["models"][0], sae="hf://a/b/c"), dict(base["models"][1], sae=ref)]})
    again = parse_config(tomllib.loads(to_toml(cfg)))
    assert [m.sae for m in again.models] == ["hf://a/b/c", ref]


def test_hub_reference_offline_names_local_alternative(monkeypatch):
    assert hub_reference("hf://google/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71") == \
        ("google/gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71", None)
    assert hub_reference({"repo": "EleutherAI/sae-llama-3-8b-32x", "path": "layers.23"}) == ("EleutherAI/sae-llama-3-8b-32x", "layers.23", None)
    assert hub_reference("/local/dir") is None and describe({"repo": "a/b", "path": "c", "revision": "v1"}) == "hf://a/b/c@v1"
    with pytest.raises(UserError, match="hf://<owner>/<repo>"):
        hub_reference("hf://justone")
    from autointerp.hub import hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    try:
        with pytest.raises(UserError) as err:
            load_pretrained("hf://autointerp-test/no-such-sae-repo/layer_3/params.npz")
    finally:
        hub_reachable.cache_clear()
    last = err.value.message
    assert "\n" not in last
    assert "unreachable (offline)" in last and 'sae = "/local/path/to/the/sae"' in last


def test_cached_hub_reference_loads_offline(data, tmp_path, monkeypatch):
    """A hub reference already in the Hugging Face cache (its snapshot layout) is used offline."""
    import huggingface_hub.constants as hf_constants

    from autointerp.hub import hub_reachable

    _, x, w = data
    rng = np.random.default_rng(9)
    thr = (np.abs(rng.standard_normal(D_SAE)) * 0.3).astype(np.float32)
    repo = tmp_path / "hub" / "models--autointerp-test--gemma-scope-tiny-res"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    write_gemma_scope(repo / "snapshots" / commit, w, thr, layer=2)  # <snapshot>/gemma-scope-2b-pt-res/layer_2/...
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    try:
        p = load_pretrained("hf://autointerp-test/gemma-scope-tiny-res/gemma-scope-2b-pt-res/layer_2/width_16k/average_l0_71")
    finally:
        hub_reachable.cache_clear()
    assert (p.format, p.layer) == ("gemma_scope", 2)
    _close(_ours(p.sae, x), np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr), "cached hub gemma scope")


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


def _e2e_saes(root: Path) -> tuple[Path, Path, dict, dict, np.ndarray]:
    """A Gemma Scope npz for gemma-3-270m L6 (d_model 640) and a sparsify SAE for minilm-l6 L3 (384)."""
    rng = np.random.default_rng(5)
    wg, wm = _weights(rng, 640, 256), _weights(rng, 384, 192)
    thr = np.full(256, 0.5, dtype=np.float32)
    return write_gemma_scope(root / "gs", wg, thr, layer=6), write_sparsify(root / "sp", wm, k=8, hookpoint_name="layers.3"), wg, wm, thr


@pytest.mark.slow
def test_run_end_to_end_with_two_pretrained_formats(tmp_path):
    from safetensors.torch import load_file

    from autointerp.harvest.buffer import iter_activation_batches
    from autointerp.harvest.harvester import load_manifest
    from autointerp.sae.saelens import load_sae

    gemma_sae, minilm_sae, wg, wm, thr = _e2e_saes(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text(E2E_CONFIG.format(run=tmp_path / "run", gemma_sae=gemma_sae, minilm_sae=minilm_sae,
                                         report="pages = false\nplots = false"))
    res = subprocess.run([sys.executable, "-m", "autointerp", "run", "--config", str(config)], capture_output=True,
                         text=True, env=ENV, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path / "run"
    for slug, fmt, spec in (("gemma-3-270m", "gemma_scope", gemma_sae), ("minilm-l6", "sparsify", minilm_sae)):
        sae_dir = run / slug / "sae"
        assert not (sae_dir / "checkpoints").exists()  # nothing was trained
        metrics = json.loads((sae_dir / "metrics.json").read_text())
        assert metrics["sae_source"] == str(spec) and metrics["sae_format"] == fmt and metrics["train_tokens"] == 0
        record = json.loads((sae_dir / "train.json").read_text())
        assert record["settings"] == {"pretrained_sae": str(spec)}
        # the installed SAE encodes the harvested activations exactly as the format's own encoder
        x = next(iter_activation_batches([p for p in sorted((run / slug / "harvest").glob("shard_*.safetensors"))],
                                         256, seed=0)).numpy()
        ours = _ours(load_sae(sae_dir), x)
        if fmt == "gemma_scope":
            ref = np_jumprelu(x @ wg["W_enc"] + wg["b_enc"], thr)
        else:
            ref = np_topk(np.maximum((x - wm["b_dec"]) @ wm["W_enc"] + wm["b_enc"], 0), 8)
        _close(ours, ref, f"{slug} installed")
        assert load_manifest(run / slug / "harvest")["d_model"] == x.shape[1]
        assert load_file(str(sae_dir / "sae_weights.safetensors"))["W_enc"].shape[0] == x.shape[1]
    report = (run / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| SAE source"))
    plain = row.replace("\\", "")
    assert "pretrained (gemma_scope)" in plain and "pretrained (sparsify)" in plain
    assert str(gemma_sae).replace("\\", "") in plain and str(minilm_sae) in plain
    again = subprocess.run([sys.executable, "-m", "autointerp", "train", "--run-dir", str(run)], capture_output=True,
                           text=True, env=ENV, timeout=300)
    assert again.returncode == 0 and "(cached)" in again.stdout + again.stderr


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
    w32 = _weights(rng, 32, 48)
    nan = dict(w32, b_enc=w32["b_enc"].copy())
    nan["b_enc"][0] = np.inf
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "width": (write_sparsify(tmp_path / "w", _weights(rng, 24, 48), hookpoint_name="layers.1"),
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
    w = _weights(rng, 32, 48)
    thr = np.full(48, 0.05, dtype=np.float32)
    sae_dir = write_saelens(tmp_path / "jr", w, "jumprelu", threshold=thr, hook="blocks.1.hook_resid_post")
    res = _train(run, "--sae", str(sae_dir))
    assert res.exit_code == 0, res.output
    installed = run / "gpt2" / "sae"
    metrics = json.loads((installed / "metrics.json").read_text())
    assert metrics["sae_format"] == "saelens" and metrics["sae_source"] == str(sae_dir) and 0 < metrics["l0"] < 48
    assert 'sae = "' in (run / "config.toml").read_text()  # later stages (and re-runs) see the SAE
    x = next(iter_activation_batches(sorted((run / "gpt2" / "harvest").glob("shard_*.safetensors")), 128, seed=0)).numpy()
    _close(_ours(load_sae(installed), x), np_jumprelu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], thr), "installed jumprelu")
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
    assert refused.exit_code == 2 and "pretrained_sae" in refused.output
    assert _train(run, "--sae", str(other), "--overwrite").exit_code == 0
    assert json.loads((installed / "metrics.json").read_text())["sae_source"] == str(other)
