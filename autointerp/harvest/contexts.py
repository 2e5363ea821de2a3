"""Tokenize documents with character offsets and cut them into model contexts.

Every token that ends up in an activation row carries (doc index, position in the document's token
sequence, char_start, char_end), computed here from the tokenizer's offset mapping — never re-derived
later by re-tokenizing. That is what makes exemplar misalignment impossible downstream.

Documents are tokenized without special tokens; each context then gets the model's own special-token
frame (e.g. ``<bos>`` for Gemma, ``[CLS] ... [SEP]`` for BERT) so activations look like they do in normal
use. Specials are marked so the harvester can skip them (or keep them, when asked explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKENIZE_BATCH = 256


@dataclass(frozen=True)
class SpecialFrame:
    """Special tokens the tokenizer wraps around a sequence: ``prefix + content + suffix``."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer) -> "SpecialFrame":
        probe = "hello"
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        framed = tokenizer(probe, add_special_tokens=True)["input_ids"]
        for start in range(len(framed) - len(plain) + 1):
            if framed[start : start + len(plain)] == plain:
                return cls(tuple(framed[:start]), tuple(framed[start + len(plain) :]))
        return cls((), ())

    @property
    def size(self) -> int:
        return len(self.prefix) + len(self.suffix)


@dataclass
class Context:
    """One model input. Arrays are aligned position by position (specials included)."""

    doc_index: int
    input_ids: np.ndarray  # int64 [n]
    positions: np.ndarray  # int32 [n]: token index within the document (-1 for specials)
    char_start: np.ndarray  # int32 [n] (-1 for specials)
    char_end: np.ndarray  # int32 [n] (-1 for specials)

    @property
    def is_content(self) -> np.ndarray:
        return self.positions >= 0

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_documents(tokenizer, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(token ids, offsets [n, 2]) for each text, without special tokens, in batches (fast tokenizers are parallel)."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(0, len(texts), TOKENIZE_BATCH):
        enc = tokenizer(texts[i : i + TOKENIZE_BATCH], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"]):
            out.append((np.asarray(ids, dtype=np.int64), np.asarray(offsets, dtype=np.int32).reshape(-1, 2)))
    return out


def _frame(doc_index: int, ids: np.ndarray, offsets: np.ndarray, first_pos: int, frame: SpecialFrame) -> Context:
    n_pre, n_suf = len(frame.prefix), len(frame.suffix)
    pad = lambda values, fill: np.concatenate([np.full(n_pre, fill, values.dtype), values, np.full(n_suf, fill, values.dtype)])  # noqa: E731
    input_ids = np.concatenate([np.asarray(frame.prefix, np.int64), ids, np.asarray(frame.suffix, np.int64)])
    positions = pad(np.arange(first_pos, first_pos + len(ids), dtype=np.int32), -1)
    return Context(doc_index, input_ids, positions, pad(offsets[:, 0].astype(np.int32), -1), pad(offsets[:, 1].astype(np.int32), -1))


def build_contexts(tokenized: list[tuple[np.ndarray, np.ndarray]], ctx_len: int, frame: SpecialFrame) -> list[Context]:
    """Cut each document into consecutive contexts of at most ``ctx_len`` tokens (specials included).

    Contexts never span two documents (attention must not leak across them); only a document's last
    context is short, and the harvester batches contexts of similar length so padding stays small.
    """
    body = ctx_len - frame.size
    if body < 1:
        raise ValueError(f"ctx_len {ctx_len} leaves no room for content next to {frame.size} special tokens")
    contexts: list[Context] = []
    for doc_index, (ids, offsets) in enumerate(tokenized):
        for start in range(0, len(ids), body):
            contexts.append(_frame(doc_index, ids[start : start + body], offsets[start : start + body], start, frame))
    return contexts


def build_sequence_contexts(tokenized: list[tuple[np.ndarray, np.ndarray]], ctx_len: int, frame: SpecialFrame) -> list[Context]:
    """One context per document: its first ``ctx_len`` tokens (the original study's sequence-level mode)."""
    body = ctx_len - frame.size
    return [_frame(i, ids[:body], offsets[:body], 0, frame) for i, (ids, offsets) in enumerate(tokenized) if len(ids)]


def length_sorted_batches(contexts: list[Context], batch_size: int) -> list[list[int]]:
    """Indices of ``contexts`` grouped into batches of similar length (less padding, same results)."""
    order = sorted(range(len(contexts)), key=lambda i: (len(contexts[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(contexts: list[Context], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded input ids and attention mask for a batch."""
    width = max(len(c) for c in contexts)
    ids = np.full((len(contexts), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(contexts), width), dtype=np.int64)
    for row, ctx in enumerate(contexts):
        ids[row, : len(ctx)] = ctx.input_ids
        mask[row, : len(ctx)] = 1
    return ids, mask
