"""Tiny, offline, deterministic model checkpoints for tests.

``make_tiny_model(family, out_dir)`` builds a random-weight model of a real
transformers architecture from its config class, trains a small *fast*
tokenizer on ``SAMPLE_TEXT`` with the ``tokenizers`` library, and writes both
with ``save_pretrained`` (weights as ``model.safetensors``, tokenizer as
``tokenizer.json`` + ``tokenizer_config.json``).  The result is a normal
checkpoint directory: it loads with ``AutoTokenizer.from_pretrained(path)``
and ``AutoModelForCausalLM`` / ``AutoModel.from_pretrained(path)``, i.e.
through exactly the code path real models use.  Nothing is downloaded.

Families and their special-token conventions (imitating the real models):

========  =================================  ==========================  ===================
family    architecture (block list)          specials added by tok(...)  pad
========  =================================  ==========================  ===================
gpt2      GPT2LMHeadModel (transformer.h)    none                        <|endoftext|> (=eos)
opt       OPTForCausalLM (model.decoder.     </s> prepended (BOS, id 2)  <pad> (id 1)
          layers)
llama     LlamaForCausalLM (model.layers)    <s> prepended (id 1)        <pad> (id 3)
gemma3    Gemma3ForCausalLM (model.layers)   <bos> prepended (id 2)      <pad> (id 0)
bert      BertModel (encoder.layer)          [CLS] ... [SEP]             [PAD] (id 0)
========  =================================  ==========================  ===================

Tokenizers are wrapped in the generic ``PreTrainedTokenizerFast`` (in
transformers 5 this is ``TokenizersBackend``) rather than the model-specific
classes: in transformers 5 e.g. ``LlamaTokenizer``/``GPT2Tokenizer`` *are* the
fast tokenizers and rebuild their own normalizer/pre-tokenizer pipeline from
the vocab, which would not match the tiny tokenizers trained here.  The
generic class loads ``tokenizer.json`` verbatim.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

FAMILIES = ("gpt2", "opt", "llama", "gemma3", "bert")
CAUSAL_FAMILIES = ("gpt2", "opt", "llama", "gemma3")

MAX_POSITIONS = 256
NUM_LAYERS = 3

# Dotted attribute path (from the object returned by the Auto class) to the
# ``nn.ModuleList`` of transformer blocks.
BLOCK_PATHS = {
    "gpt2": "transformer.h",
    "opt": "model.decoder.layers",
    "llama": "model.layers",
    "gemma3": "model.layers",
    "bert": "encoder.layer",
}

SAMPLE_TEXT = """\
The quick brown fox jumps over the lazy dog. A small model can still learn a few patterns, \
but it will never write poetry. In 1969, 3 astronauts flew to the Moon; 2 of them walked on it. \
Prices rose by 4.5% in 2023, and the café on the corner raised a latte from $3.20 to $3.75!

Language models read text as tokens: pieces of words, whole words, digits and punctuation. \
Each token becomes a vector, and each layer of the network mixes these vectors together. \
Researchers "harvest" the activations at one layer, then train a sparse autoencoder on them. \
Is that naïve? Perhaps - but it's simple, fast, and it works surprisingly well (most of the time).

Tokyo (東京) is the capital of Japan; Paris is the capital of France; Berlin is the capital of Germany. \
The river flows north for 120 kilometres, past 7 bridges and 15 villages, before it reaches the sea. \
She said: "Don't forget the keys, the map, and the 2 tickets." He replied, 'I won't.' \
Numbers like 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 100 and 1000 appear often in ordinary writing.

Once upon a time there was a little robot who wanted to understand words. Every day it read books, \
news, recipes and letters. It learned that "the" is common, that "zebra" is rare, and that a comma, \
a period, a question mark? and an exclamation mark! each change the meaning of a sentence. \
Email me at robot@example.com or visit https://example.org/docs#intro for more information.
"""

# Per-family tokenizer spec: trainer vocab size and the special tokens in id order
# (ids 0..n-1 come first in the vocab, exactly as listed).
_TOKENIZER_SPECS = {
    "gpt2": dict(vocab_size=800, specials=[]),  # <|endoftext|> is appended at the end, as in real GPT-2
    "opt": dict(vocab_size=800, specials=["<s>", "<pad>", "</s>", "<unk>"]),
    "llama": dict(vocab_size=700, specials=["<unk>", "<s>", "</s>", "<pad>"]),
    "gemma3": dict(vocab_size=700, specials=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]),
    "bert": dict(vocab_size=1000, specials=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
}


def _train(tok: Tokenizer, trainer) -> Tokenizer:
    tok.train_from_iterator(SAMPLE_TEXT.splitlines(), trainer=trainer)
    return tok


def _wordpiece_vocab(specials, normalizer, pre_tokenizer, max_size: int) -> dict[str, int]:
    """Deterministic WordPiece vocab: specials, every character (word-initial and ``##``-continuation), all
    words of SAMPLE_TEXT, then ``##`` pieces of length 2-3 (most frequent first) up to ``max_size``."""
    from collections import Counter

    words: list[str] = []
    for line in SAMPLE_TEXT.splitlines():
        words += [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))]
    chars = sorted({c for w in words for c in w})
    tokens = list(specials) + chars + ["##" + c for c in chars] + sorted({w for w in words if len(w) > 1})
    pieces = Counter("##" + w[i : i + n] for w in words for n in (2, 3) for i in range(1, len(w) - n + 1))
    seen = set(tokens)
    for piece, _ in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(tokens) >= max_size:
            break
        if piece not in seen:
            tokens.append(piece)
            seen.add(piece)
    return {t: i for i, t in enumerate(tokens)}


def _build_raw_tokenizer(family: str) -> Tokenizer:
    spec = _TOKENIZER_SPECS[family]
    specials = spec["specials"]
    if family in ("gpt2", "opt"):
        # Byte-level BPE, GPT-2 style.  Offsets of "Ġword" cover " word" (trim_offsets=False, as in gpt2's
        # tokenizer.json).
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        _train(
            tok,
            trainers.BpeTrainer(
                vocab_size=spec["vocab_size"],
                special_tokens=specials,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            ),
        )
        byte_level = processors.ByteLevel(trim_offsets=False)
        if family == "gpt2":
            tok.add_special_tokens(["<|endoftext|>"])
            tok.post_processor = byte_level
        else:
            bos_id = tok.token_to_id("</s>")
            tok.post_processor = processors.Sequence(
                [
                    byte_level,
                    processors.TemplateProcessing(
                        single="</s> $A",
                        pair="</s> $A </s> $B",
                        special_tokens=[("</s>", bos_id)],
                    ),
                ]
            )
        return tok

    if family in ("llama", "gemma3"):
        # SentencePiece-style BPE: spaces become "▁".  Llama(-2) prepends "▁" to the first word, Gemma does
        # not.  Characters never seen in training map to the unk token.
        unk = "<unk>"
        bos = "<s>" if family == "llama" else "<bos>"
        tok = Tokenizer(models.BPE(unk_token=unk, fuse_unk=True))
        scheme = "first" if family == "llama" else "never"
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
        _train(
            tok,
            trainers.BpeTrainer(vocab_size=spec["vocab_size"], special_tokens=specials, show_progress=False),
        )
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
        return tok

    if family == "bert":
        # NB: tokenizers' WordPieceTrainer is not deterministic (even the vocab size varies run to run), so the
        # WordPiece vocab is built here by hand from the normalised, pre-tokenised SAMPLE_TEXT.
        normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, handle_chinese_chars=True)
        pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok = Tokenizer(
            models.WordPiece(
                vocab=_wordpiece_vocab(specials, normalizer, pre_tokenizer, spec["vocab_size"]),
                unk_token="[UNK]",
                max_input_chars_per_word=100,
            )
        )
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizer
        tok.decoder = decoders.WordPiece(prefix="##")
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        return tok

    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


_SPECIAL_KWARGS = {
    "gpt2": dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                 pad_token="<|endoftext|>"),
    "opt": dict(bos_token="</s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
    "llama": dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
    "gemma3": dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
                   mask_token="<mask>"),
    "bert": dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                 mask_token="[MASK]"),
}


def make_tokenizer(family: str):
    """Return the tiny fast tokenizer (a ``PreTrainedTokenizerFast``) for ``family``."""
    from transformers import PreTrainedTokenizerFast

    raw = _build_raw_tokenizer(family)
    # Round-trip through JSON so the wrapper owns an independent, fully serialisable copy.
    raw = Tokenizer.from_str(raw.to_str())
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        model_max_length=MAX_POSITIONS,
        padding_side="left" if family in ("llama", "gemma3") else "right",
        # Causal LMs must not get token_type_ids (their forward() does not accept them).
        model_input_names=(["input_ids", "token_type_ids", "attention_mask"] if family == "bert"
                           else ["input_ids", "attention_mask"]),
        **_SPECIAL_KWARGS[family],
    )
    return tok


def _make_config(family: str, tok):
    import transformers as tf

    vocab = len(tok)
    ids = dict(pad_token_id=tok.pad_token_id)
    if family != "bert":
        ids.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)

    if family == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab, n_positions=MAX_POSITIONS, n_embd=32, n_layer=NUM_LAYERS, n_head=4, n_inner=64, **ids
        )
    if family == "opt":
        return tf.OPTConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=NUM_LAYERS,
            num_attention_heads=4,
            ffn_dim=64,
            max_position_embeddings=MAX_POSITIONS,
            word_embed_proj_dim=32,
            do_layer_norm_before=True,
            dropout=0.0,
            attention_dropout=0.0,
            **ids,
        )
    if family == "llama":
        return tf.LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=NUM_LAYERS,
            num_attention_heads=4,
            num_key_value_heads=2,  # exercise GQA
            max_position_embeddings=MAX_POSITIONS,
            tie_word_embeddings=False,
            **ids,
        )
    if family == "gemma3":
        return tf.Gemma3TextConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=NUM_LAYERS,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            query_pre_attn_scalar=8,
            max_position_embeddings=MAX_POSITIONS,
            # Local (sliding-window) layers then one global layer, like Gemma 3's 5:1 pattern, with a window
            # short enough to matter for test-length inputs.  len(layer_types) must equal num_hidden_layers.
            sliding_window=16,
            layer_types=["sliding_attention"] * (NUM_LAYERS - 1) + ["full_attention"],
            **ids,
        )
    if family == "bert":
        return tf.BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=NUM_LAYERS,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=MAX_POSITIONS,
            type_vocab_size=2,
            **ids,
        )
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def _model_class(family: str):
    import transformers as tf

    return {
        "gpt2": tf.GPT2LMHeadModel,
        "opt": tf.OPTForCausalLM,
        "llama": tf.LlamaForCausalLM,
        "gemma3": tf.Gemma3ForCausalLM,
        "bert": tf.BertModel,
    }[family]


def make_tiny_model(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Build a tiny random-weight model of this family from its config and save it with a fast tokenizer.

    The directory gets ``config.json``, ``model.safetensors``, ``generation_config.json`` (causal families),
    ``tokenizer.json`` and ``tokenizer_config.json``.  It loads with ``AutoTokenizer.from_pretrained(out_dir)``
    and ``AutoModelForCausalLM.from_pretrained(out_dir)`` (gpt2/opt/llama/gemma3) or
    ``AutoModel.from_pretrained(out_dir)`` (bert).  Weights depend only on ``seed``; the tokenizer is the same
    for every seed.  Returns ``out_dir``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tok = make_tokenizer(family)
    config = _make_config(family, tok)
    assert config.vocab_size == len(tok)

    cls = _model_class(family)
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def block_list(model, family: str):
    """Return the ``nn.ModuleList`` of transformer blocks of a model loaded with the Auto classes."""
    obj = model
    for name in BLOCK_PATHS[family].split("."):
        obj = getattr(obj, name)
    return obj


__all__ = [
    "BLOCK_PATHS",
    "CAUSAL_FAMILIES",
    "FAMILIES",
    "MAX_POSITIONS",
    "NUM_LAYERS",
    "SAMPLE_TEXT",
    "block_list",
    "make_tiny_model",
    "make_tokenizer",
]
