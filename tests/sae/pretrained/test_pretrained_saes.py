"""Pretrained SAEs (``sae = ...``): each format written in its published layout (file names, tensor names,
shapes, dtypes, config keys; ``pretrained_formats``), read into our SAE type, and checked against an
independent numpy encoder written from the format's own source; bad files are one-line errors; hub
references fail offline with the local-path alternative. The train stage's install, the CLI's bad inputs
and the end-to-end run are in test_pretrained_install.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from autointerp.errors import UserError
from autointerp.sae.pretrained import load_pretrained
from autointerp.sae.pretrained.formats import describe, hookpoint, hub_reference

from helpers.pretrained_formats import (
    D_IN,
    D_SAE,
    K,
    random_weights,
    write_saelens,
    write_sparsify,
    write_gemma_scope,
    write_llama_scope,
    np_standard,
    np_topk,
    np_jumprelu,
    encode_ours,
    assert_same_code,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, D_IN)) * 1.5 + rng.standard_normal(D_IN)).astype(np.float32)
    return rng, x, random_weights(rng, D_IN, D_SAE)


def test_saelens_standard_topk_rescale_and_jumprelu_match_numpy(data, tmp_path):
    rng, x, w = data
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    p = load_pretrained(str(write_saelens(tmp_path / "std", w, "standard")))
    assert (p.format, p.layer, p.site, p.sae.cfg.architecture) == ("saelens", 3, "resid", "relu")
    assert_same_code(encode_ours(p.sae, x), np_standard(x, w), "saelens standard")
    p = load_pretrained(str(write_saelens(tmp_path / "topk", w, "topk")))
    assert_same_code(encode_ours(p.sae, x), np_topk(pre, K), "saelens topk")
    p = load_pretrained(str(write_saelens(tmp_path / "rescale", w, "topk", rescale=True)))
    # SAELens TopK with rescale_acts_by_decoder_norm: topk over pre * |W_dec_i|, those values are the activations
    norms = np.linalg.norm(w["W_dec"], axis=1)
    assert_same_code(encode_ours(p.sae, x), np_topk(pre * norms, K), "saelens topk rescale")
    with torch.no_grad():  # and it decodes acts / |W_dec_i| @ W_dec + b_dec
        ref = np_topk(pre * norms, K)
        recon = p.sae.decode(*p.sae.encode(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(recon, (ref / norms) @ w["W_dec"] + w["b_dec"], rtol=1e-4, atol=1e-4)
    thr = (rng.standard_normal(D_SAE) * 0.3).astype(np.float32)  # mixed signs: relu(h) * (h > thr) either way
    assert (thr < 0).any() and (thr > 0).any()
    p = load_pretrained(str(write_saelens(tmp_path / "jr", w, "jumprelu", threshold=thr, apply_b_dec=False)))
    assert_same_code(encode_ours(p.sae, x), np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr), "saelens jumprelu")


def test_sparsify_matches_its_encoder(data, tmp_path):
    _, x, w = data
    d = write_sparsify(tmp_path / "sae-pythia", w, hookpoint_name="layers.5")
    p = load_pretrained(str(d))
    assert (p.format, p.layer, p.site, p.sae.cfg.k) == ("sparsify", 5, "resid", K)
    # sparsify: topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias))
    ref = np_topk(np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0), K)
    assert_same_code(encode_ours(p.sae, x), ref, "sparsify")
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
        assert_same_code(encode_ours(p.sae, x), np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr), "gemma scope")
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
    assert_same_code(encode_ours(p.sae, x) / s_in, ref_raw, "llama scope")
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
    from autointerp.sae.pretrained.formats import fill_hookpoint, read_hookpoint

    _, _, w = data
    mlp = str(write_sparsify(tmp_path, w, hookpoint_name="layers.4.mlp"))
    entry = ModelEntry("m", sae=mlp)
    fill_hookpoint(entry)
    assert (entry.layer, entry.site) == (4, "mlp")
    half = ModelEntry("m", layer=4, sae=mlp)  # a set layer, an unset site: the SAE decides the site
    fill_hookpoint(half)
    assert (half.layer, half.site) == (4, "mlp")
    kept = ModelEntry("m", layer=2, site="resid", sae=str(tmp_path / "does-not-exist"))  # both set: nothing is read
    fill_hookpoint(kept)
    assert (kept.layer, kept.site) == (2, "resid")
    # checked (harvest, run): an explicit layer or site that disagrees names both, an unharvestable hook is refused
    with pytest.raises(UserError, match=r"reads layer 4 .*is set to layer = 2 .*--layer\); drop that setting .*or set layer = 4"):
        fill_hookpoint(ModelEntry("m", layer=2, sae=mlp), check=True)
    with pytest.raises(UserError, match=r"reads site 'mlp' .*is set to site = \"resid\""):
        fill_hookpoint(ModelEntry("m", layer=4, site="resid", sae=mlp), check=True)
    attn = str(write_saelens(tmp_path / "attn", w, "standard", hook="blocks.1.attn.hook_z"))
    with pytest.raises(UserError, match="cannot harvest"):
        fill_hookpoint(ModelEntry("m", sae=attn), check=True)
    fill_hookpoint(same := ModelEntry("m", layer=4, sae=mlp), check=True)  # agreeing: fine, the site is filled
    assert same.site == "mlp"
    fill_hookpoint(neg := ModelEntry("m", layer=-1, sae=mlp), check=True)  # counted from the end: checked at install
    assert neg.layer == -1
    # the hookpoint of every format comes from its config or path alone (the weights are not read)
    npz = write_gemma_scope(tmp_path / "gs", w, np.zeros(D_SAE), layer=7)
    npz.write_bytes(b"not an npz")
    assert read_hookpoint(str(npz))[:3] == (7, "resid", "blocks.7.hook_resid_post")
    llama = write_llama_scope(tmp_path / "ls", w, layer=5)
    (llama / "checkpoints" / "final.safetensors").write_bytes(b"x")
    assert read_hookpoint(str(llama))[:3] == (5, "resid", "blocks.5.hook_resid_post")
    lens = write_saelens(tmp_path / "sl", w, "standard", hook="blocks.3.hook_resid_pre")
    (lens / "sae_weights.safetensors").write_bytes(b"x")
    assert read_hookpoint(str(lens))[:3] == (2, "resid", "blocks.3.hook_resid_pre")


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
    assert hub_reference("hf://a/b/c@v1") == ("a/b", "c", "v1")  # what describe writes reads back (a recorded reference)
    with pytest.raises(UserError, match="@<revision>"):
        hub_reference("hf://a/b/c@")
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
    assert_same_code(encode_ours(p.sae, x), np_jumprelu(x @ w["W_enc"] + w["b_enc"], thr), "cached hub gemma scope")
