"""Model loading by path for each family: generic block discovery, layer indexing, early-stop forward."""

from __future__ import annotations

import json

import pytest
import torch

from autointerp.errors import UserError
from autointerp.hub import hub_reachable
from autointerp.models import forward_to_site, load_model
from helpers.tiny_models import BLOCK_PATHS, CAUSAL_FAMILIES, FAMILIES, MAX_POSITIONS, NUM_LAYERS


@pytest.mark.parametrize("family", FAMILIES)
def test_load_finds_blocks_generically(tiny_model_dirs, family):
    lm = load_model(str(tiny_model_dirs[family]))
    assert lm.blocks_path == BLOCK_PATHS[family]
    assert lm.n_layers == NUM_LAYERS
    assert lm.d_model == 32
    assert lm.max_positions == MAX_POSITIONS
    assert lm.is_causal == (family in CAUSAL_FAMILIES)
    assert lm.resolve_layer(-1) == NUM_LAYERS - 1 and lm.resolve_layer(0) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_to_site_matches_hidden_states_and_stops_early(tiny_model_dirs, family):
    lm = load_model(str(tiny_model_dirs[family]))
    enc = lm.tokenizer(["The harbour city trades coffee and tin.", "Short one."], return_tensors="pt", padding=True)
    calls: list[int] = []
    hooks = [b.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, b in enumerate(lm.blocks)]
    try:
        got = forward_to_site(lm, lm.hook_module(1), enc["input_ids"], enc["attention_mask"])
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0, 1], "blocks after the hooked one must not run"
    with torch.inference_mode():
        kwargs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        full = lm.model(**kwargs, output_hidden_states=True)
    mask = enc["attention_mask"].bool()
    # hidden_states[L + 1] is the residual stream after block L (only the last entry gets a final norm).
    torch.testing.assert_close(got[mask], full.hidden_states[2][mask], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_site(tiny_model_dirs, family):
    lm = load_model(str(tiny_model_dirs[family]))
    enc = lm.tokenizer(["Coffee and tin."], return_tensors="pt")
    mlp = forward_to_site(lm, lm.hook_module(0, "mlp"), enc["input_ids"], enc["attention_mask"])
    resid = forward_to_site(lm, lm.hook_module(0, "resid"), enc["input_ids"], enc["attention_mask"])
    assert mlp.shape == resid.shape and mlp.shape[-1] == 32
    assert not torch.allclose(mlp, resid)


def test_layer_out_of_range_names_valid_range(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["gpt2"]))
    with pytest.raises(UserError, match=r"0\.\.2"):
        lm.resolve_layer(3)
    with pytest.raises(UserError, match="out of range"):
        lm.resolve_layer(-4)


def test_ctx_len_beyond_model_maximum(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["bert"]))
    with pytest.raises(UserError, match=f"maximum context of {MAX_POSITIONS}"):
        lm.check_ctx_len(MAX_POSITIONS + 1)
    lm.check_ctx_len(MAX_POSITIONS)


def test_unknown_model_offline_names_choices():
    if hub_reachable():
        pytest.skip("only meaningful without network access")
    with pytest.raises(UserError) as exc:
        load_model("some-org/definitely-not-a-model")
    message = str(exc.value)
    assert "offline" in message and "gemma-3-270m" in message and "minilm-l6" in message and "local" in message


def test_bad_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(UserError, match="not a model directory"):
        load_model(str(tmp_path / "nope"))


def test_corrupt_weights_is_a_user_error(tiny_model_dirs, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dirs["gpt2"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match="could not load model"):
        load_model(str(broken))
    assert json.loads((broken / "config.json").read_text())["model_type"] == "gpt2"


def test_models_loaded_from_several_threads_at_once_are_complete(tiny_model_dirs):
    """transformers builds models under process-global init contexts; loads racing in threads (the local
    LLM backend's worker vs the sentence embedder) once left meta tensors behind. Every parameter of every
    concurrently loaded model must be real, and equal to a plain sequential load."""
    from concurrent.futures import ThreadPoolExecutor

    specs = [str(tiny_model_dirs[name]) for name in ("gpt2", "opt", "llama", "bert")] * 2
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        loaded = list(pool.map(load_model, specs))
    for spec, lm in zip(specs, loaded):
        reference = load_model(spec)
        for (name, param), ref in zip(lm.model.named_parameters(), reference.model.parameters()):
            assert param.device.type != "meta", (spec, name)
            assert torch.equal(param, ref), (spec, name)
