"""Tests for the tiny offline model fixtures in tests/helpers/tiny_models.py."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from helpers.tiny_models import (  # tests/ is on sys.path via conftest.py
    CAUSAL_FAMILIES,
    FAMILIES,
    MAX_POSITIONS,
    NUM_LAYERS,
    SAMPLE_TEXT,
    block_list,
    make_tiny_model,
)

SENTENCE = "The quick brown fox, aged 12, met a naïve barista at the café in Tokyo (東京)!"

EXPECTED_ARCH = {
    "gpt2": "GPT2LMHeadModel",
    "opt": "OPTForCausalLM",
    "llama": "LlamaForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "bert": "BertModel",
}
EXPECTED_MODEL_TYPE = {"gpt2": "gpt2", "opt": "opt", "llama": "llama", "gemma3": "gemma3_text", "bert": "bert"}


def _load(path, family):
    tok = AutoTokenizer.from_pretrained(path)
    auto = AutoModel if family == "bert" else AutoModelForCausalLM
    model = auto.from_pretrained(path).eval()
    return tok, model


@pytest.fixture(scope="module", params=FAMILIES)
def built(request, tmp_path_factory):
    family = request.param
    path = make_tiny_model(family, tmp_path_factory.mktemp(family))
    tok, model = _load(path, family)
    return family, path, tok, model


def test_sample_text_has_variety():
    for needle in ("café", "naïve", "東京", "1969", "!", "?", ",", ";", '"'):
        assert needle in SAMPLE_TEXT
    assert len(SAMPLE_TEXT) > 1000


def test_unknown_family_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown family"):
        make_tiny_model("mamba", tmp_path)


def test_checkpoint_files_and_config(built):
    family, path, tok, model = built
    assert (path / "model.safetensors").is_file()
    assert not (path / "pytorch_model.bin").exists()
    assert (path / "tokenizer.json").is_file()
    assert (path / "model.safetensors").stat().st_size < 5_000_000

    cfg = AutoConfig.from_pretrained(path)
    assert cfg.model_type == EXPECTED_MODEL_TYPE[family]
    assert type(model).__name__ == EXPECTED_ARCH[family]
    assert cfg.vocab_size == len(tok) == model.get_input_embeddings().weight.shape[0]
    assert tok.is_fast

    # Special-token ids in the config agree with the tokenizer and are all "special" to it.
    assert cfg.pad_token_id == tok.pad_token_id
    assert tok.pad_token_id in tok.all_special_ids
    if family != "bert":
        assert cfg.bos_token_id == tok.bos_token_id
        assert cfg.eos_token_id == tok.eos_token_id
        assert {tok.bos_token_id, tok.eos_token_id} <= set(tok.all_special_ids)
    else:
        assert {tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.unk_token_id} <= set(tok.all_special_ids)

    # Block list is where the docs say, with the configured depth.
    blocks = block_list(model, family)
    assert isinstance(blocks, torch.nn.ModuleList)
    assert len(blocks) == cfg.num_hidden_layers == NUM_LAYERS

    assert tok.model_max_length == MAX_POSITIONS
    if family == "gemma3":
        assert cfg.layer_types == ["sliding_attention"] * (NUM_LAYERS - 1) + ["full_attention"]
        assert cfg.sliding_window == 16


def test_specials_where_expected(built):
    family, _, tok, _ = built
    ids = tok(SENTENCE)["input_ids"]
    special = set(tok.all_special_ids)
    positions = [i for i, t in enumerate(ids) if t in special]
    if family == "gpt2":
        assert positions == []
    elif family == "bert":
        assert positions == [0, len(ids) - 1]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    else:
        assert positions == [0], tok.convert_ids_to_tokens(ids)
        assert ids[0] == tok.bos_token_id
    if family == "opt":
        assert tok.bos_token == "</s>" and tok.bos_token_id == 2  # like facebook/opt-*
    # The test sentence is fully covered by the vocab (no unk), so the checks below see real tokens only.
    assert tok.unk_token_id not in ids or family == "gpt2"


def test_offsets_slice_back_into_text(built):
    family, _, tok, _ = built
    enc = tok(SENTENCE, return_offsets_mapping=True)
    special = set(tok.all_special_ids)
    checked = 0
    covered = set()
    prev_end = 0
    for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        if tid in special:
            assert (start, end) == (0, 0)
            continue
        assert 0 <= start < end <= len(SENTENCE), (tid, start, end)
        assert start >= prev_end - 1  # monotone (byte-level pieces of one char may share it)
        prev_end = end
        covered.update(range(start, end))
        piece = SENTENCE[start:end].strip()
        if piece.isascii():
            decoded = tok.decode([tid]).strip()
            if family == "bert":
                decoded = decoded.removeprefix("##")
                piece = piece.lower()
            assert decoded == piece, (tok.convert_ids_to_tokens(tid), decoded, piece)
            checked += 1
    assert checked >= 10
    # Every non-whitespace character belongs to some token.
    assert {i for i, c in enumerate(SENTENCE) if not c.isspace()} <= covered


def test_forward_hidden_states(built):
    family, _, tok, model = built
    batch = tok([SENTENCE, "A short one."], padding=True, return_tensors="pt")
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()
    pad_positions = batch["attention_mask"] == 0
    assert (batch["input_ids"][pad_positions] == tok.pad_token_id).all()

    captured = {}
    blocks = block_list(model, family)
    handle = blocks[0].register_forward_hook(
        lambda mod, inp, out: captured.setdefault("out", out[0] if isinstance(out, tuple) else out)
    )
    try:
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True)
    finally:
        handle.remove()

    hidden = model.config.hidden_size
    bsz, seq = batch["input_ids"].shape
    assert len(out.hidden_states) == NUM_LAYERS + 1
    for h in out.hidden_states:
        assert h.shape == (bsz, seq, hidden)
        real = h[batch["attention_mask"].bool()]
        assert torch.isfinite(real).all()
    # hidden_states[i + 1] is the output of block i (for non-final blocks): harvesting by hook == by output.
    torch.testing.assert_close(captured["out"], out.hidden_states[1])
    if family in CAUSAL_FAMILIES:
        assert out.logits.shape == (bsz, seq, len(tok))
        assert torch.isfinite(out.logits[batch["attention_mask"].bool()]).all()


def test_max_length_forward(built):
    family, _, tok, model = built
    enc = tok(SAMPLE_TEXT * 3, truncation=True, max_length=MAX_POSITIONS, return_tensors="pt")
    assert enc["input_ids"].shape[1] == MAX_POSITIONS
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    assert out.hidden_states[-1].shape == (1, MAX_POSITIONS, model.config.hidden_size)
    assert torch.isfinite(out.hidden_states[-1]).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_weights_and_tokenizer(family, tmp_path):
    a = make_tiny_model(family, tmp_path / "a", seed=0)
    b = make_tiny_model(family, tmp_path / "b", seed=0)
    c = make_tiny_model(family, tmp_path / "c", seed=1)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert json.loads((a / "tokenizer.json").read_text()) == json.loads((c / "tokenizer.json").read_text())
    assert (a / "config.json").read_text() == (b / "config.json").read_text()
