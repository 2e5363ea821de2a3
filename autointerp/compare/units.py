"""Shared units of text: the common ground two tokenizations are pooled onto.

Two models cut the same document into different tokens, but both recorded each token's character span.
A *word* unit is a run of word characters or a run of punctuation (``\\w+|[^\\w\\s]+``) in the run's
document text; a token maps to every word its span overlaps (leading spaces overlap nothing, ``".)"``
overlaps one punctuation run, a merged token may cover two words). A *document* unit is a whole document.
Units get global ids: word units are numbered document by document, in the order of documents.parquet.

The null pairs a unit of model A with the unit at the same word position of a *different* document for
model B (a random derangement of documents), so everything but the alignment is kept: the marginal
statistics of both models, the position-in-document effects, the tokenization.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from autointerp.data.corpus import Document

WORD_PATTERN = re.compile(r"\w+|[^\w\s]+")


@dataclass
class WordIndex:
    """Word spans of every document, concatenated; ``doc_offsets[d]`` is the global id of doc d's first word."""

    starts: np.ndarray  # global char start per word (document texts laid end to end, one char apart)
    ends: np.ndarray
    doc_offsets: np.ndarray  # [n_docs + 1]
    char_offsets: np.ndarray  # [n_docs] global char position of each document's first char

    @property
    def n_units(self) -> int:
        return int(self.doc_offsets[-1])

    @property
    def words_per_doc(self) -> np.ndarray:
        return np.diff(self.doc_offsets)

    @classmethod
    def build(cls, docs: list[Document]) -> WordIndex:
        starts, ends, counts, char_offsets, pos = [], [], [], [], 0
        for doc in docs:
            spans = np.array([m.span() for m in WORD_PATTERN.finditer(doc.text)], dtype=np.int64).reshape(-1, 2)
            starts.append(spans[:, 0] + pos)
            ends.append(spans[:, 1] + pos)
            counts.append(len(spans))
            char_offsets.append(pos)
            pos += len(doc.text) + 1  # a gap so no token span reaches into the next document
        return cls(np.concatenate(starts) if starts else np.zeros(0, np.int64),
                   np.concatenate(ends) if ends else np.zeros(0, np.int64),
                   np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), np.asarray(char_offsets, np.int64))

    def subsample(self, max_units: int, seed: int) -> list[int]:
        """Indices (in corpus order) of seeded random whole documents, drawn until they hold ``max_units`` units
        (all documents when they hold fewer), and at least two: whole documents, two or more, keep the
        document-derangement null possible and meaningful."""
        order = np.random.default_rng(seed).permutation(len(self.char_offsets))
        take = max(2, int(np.searchsorted(np.cumsum(self.words_per_doc[order]), max_units)) + 1)
        return sorted(order[:take].tolist())

    def texts(self, docs: list[Document]) -> list[str]:
        """Each word unit's text, in unit order; ``docs`` are the documents the index was built from."""
        if len(docs) != len(self.char_offsets):
            raise ValueError(f"the index was built from {len(self.char_offsets)} documents, not {len(docs)}")
        joined = "\n".join(doc.text for doc in docs)  # the same one-char gaps as build()
        return [joined[s:e] for s, e in zip(self.starts.tolist(), self.ends.tolist())]

    def map_tokens(self, doc_index: np.ndarray, char_start: np.ndarray, char_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token row, word unit) pairs for every word each token's span overlaps; sorted by row.

        A token overlaps word w when start_w < token_end and end_w > token_start. Tokens that cover only
        whitespace map to nothing.
        """
        base = self.char_offsets[doc_index]
        cs, ce = base + char_start, base + char_end
        first = np.searchsorted(self.ends, cs, side="right")  # first word ending after the token starts
        last = np.searchsorted(self.starts, ce, side="left") - 1  # last word starting before the token ends
        count = np.maximum(last - first + 1, 0)
        rows = np.repeat(np.arange(len(doc_index), dtype=np.int64), count)
        within = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        return rows, np.repeat(first, count) + within


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (Sattolo's algorithm: one random n-cycle)."""
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def aligned_pairs(covered_a: np.ndarray, covered_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The real alignment: every unit both harvests cover, paired with itself."""
    both = np.flatnonzero(covered_a & covered_b)
    return both, both


def null_pairs(doc_offsets: np.ndarray, covered_a: np.ndarray, covered_b: np.ndarray, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Misaligned units: word i of document d (model A) with word i of document perm[d] (model B).

    ``doc_offsets`` is [n_docs + 1] (for document units: arange(n_docs + 1)). Pairs where either side is
    not covered by its harvest are dropped, as in the real alignment.
    """
    sizes = np.diff(doc_offsets)
    n = np.minimum(sizes, sizes[perm])
    doc = np.repeat(np.arange(len(sizes)), n)
    within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    ua = doc_offsets[:-1][doc] + within
    ub = doc_offsets[:-1][perm[doc]] + within
    keep = covered_a[ua] & covered_b[ub]
    return ua[keep], ub[keep]
