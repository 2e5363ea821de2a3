"""The crosscoder's rows: per shared word unit, each model's activation mean-pooled over the unit's tokens.

Pooling: the mean of every harvested token whose character span overlaps the word (compare.units,
compare.representation.pooled_word_activations: the same rows as the raw-activation baselines), so a
word cut into three tokens by one tokenizer and one by the other is one row for both. Only units both
harvests cover are kept. Scaling: each model's activations are brought to a common mean *centred* norm,
sqrt((d_A + d_B) / 2) (centred, so that a large constant offset - Gemma's residual has one - does not set
the scale); the scales live in the crosscoder and are folded into the saved weights.

``pooling = "residual"`` removes the lexical part first: per model, each unit's pooled activation minus
the mean of that model's pooled activations over every unit of the same word type (casefolded text,
``compare.lexical.WordTypes``), keeping only the units whose type recurs in two or more documents (the
units compare's lexical decomposition runs on: elsewhere word identity cannot be told apart from the
document). What is left is how a model's representation of a word varies with its context, so a latent
both models use there is shared beyond word identity. The type means are taken over all kept units
(training and held-out alike: a fixed preprocessing of the rows, like the pooling itself).

Held-out rows are whole documents (a seeded ``eval_fraction`` of them), so FVU is measured on text the
crosscoder never saw. Training order: a seeded permutation of the training rows per epoch, replayed
identically on resume (the trainer skips the rows a checkpoint already trained on).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from autointerp.compare.inputs import ComparedModel
from autointerp.compare.lexical import WordTypes
from autointerp.compare.representation import pooled_word_activations
from autointerp.compare.units import WordIndex, aligned_pairs
from autointerp.data.corpus import Document
from autointerp.errors import UserError


@dataclass
class PairedUnits:
    """Both models' pooled activations on the word units both cover (raw, unscaled)."""

    x_a: np.ndarray  # [n, d_a] float32
    x_b: np.ndarray  # [n, d_b] float32
    units: np.ndarray  # [n] global word-unit ids (compare.units numbering)
    doc: np.ndarray  # [n] document index of each unit
    is_eval: np.ndarray  # [n] bool: the unit's document is held out
    words: WordIndex

    @property
    def n(self) -> int:
        return len(self.units)

    def concat(self, rows: np.ndarray | slice) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([self.x_a[rows], self.x_b[rows]], axis=1))


def paired_units(a: ComparedModel, b: ComparedModel, docs: list[Document], eval_fraction: float, seed: int,
                 progress: bool = True, pooling: str = "mean") -> PairedUnits:
    """Pool both harvests onto the run's word units and keep the units both cover (``pooling``: see above)."""
    if a.level != "token" or b.level != "token":
        raise UserError(f"the crosscoder needs token-level harvests (word units); {a.slug} is {a.level!r}, {b.slug} is {b.level!r}")
    words = WordIndex.build(docs)
    doc_index_of = {d.doc_id: i for i, d in enumerate(docs)}
    pa = pooled_word_activations(a.harvest_dir, a.manifest, doc_index_of, words, progress, a.slug)
    pb = pooled_word_activations(b.harvest_dir, b.manifest, doc_index_of, words, progress, b.slug)
    units, _ = aligned_pairs(pa.covered, pb.covered)
    if pooling == "residual":
        units, x_a, x_b = residual_rows(WordTypes.build(words, docs), units, pa.matrix, pb.matrix)
    else:
        x_a, x_b = pa.matrix[units], pb.matrix[units]
    if len(units) < 64:
        raise UserError(f"only {len(units)} word units are covered by both {a.slug} and {b.slug}; the corpus is too small for a crosscoder")
    doc = np.searchsorted(words.doc_offsets, units, side="right") - 1
    held = np.random.default_rng(seed).random(len(docs)) < eval_fraction
    if not held[np.unique(doc)].any():  # tiny corpora: hold out at least one document
        held[int(doc[-1])] = True
    return PairedUnits(x_a, x_b, units, doc, held[doc], words)


def residual_rows(types: WordTypes, units: np.ndarray, x_a: np.ndarray, x_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept units, A rows, B rows): the units whose word type recurs in >= 2 documents, each model's rows
    minus that model's mean over the kept units of the same type (float64 sums, float32 rows)."""
    covered = np.zeros(types.n_units, bool)
    covered[units] = True
    kept = np.flatnonzero(types.recurring(covered))
    _, inv = np.unique(types.ids[kept], return_inverse=True)
    counts = np.bincount(inv).astype(np.float64)
    mean_of = sp.csr_matrix((1.0 / counts[inv], (inv, np.arange(len(kept)))), shape=(len(counts), len(kept)))
    out = []
    for x in (x_a, x_b):
        rows = x[kept].astype(np.float64)
        out.append((rows - (mean_of @ rows)[inv]).astype(np.float32))
    return kept, out[0], out[1]


def common_scales(x_a: np.ndarray, x_b: np.ndarray) -> tuple[float, float]:
    """Factors that bring each model's mean centred norm to sqrt((d_a + d_b) / 2)."""
    target = math.sqrt((x_a.shape[1] + x_b.shape[1]) / 2)

    def scale(x: np.ndarray) -> float:
        norm = float(np.linalg.norm(x - x.mean(0, dtype=np.float64), axis=1).mean())
        if not norm > 0:
            raise UserError("a model's pooled activations are constant over every word unit; check its harvest")
        return target / norm
    return scale(x_a), scale(x_b)


def training_batches(data: PairedUnits, rows: np.ndarray, epochs: float, chunk: int, seed: int) -> Iterator[torch.Tensor]:
    """Raw concatenated rows, a seeded permutation per epoch, ``ceil(epochs)`` epochs (the trainer stops at
    its token budget); deterministic, so a resumed run sees the same rows in the same order."""
    for epoch in range(max(1, math.ceil(epochs))):
        order = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
        for start in range(0, len(order), chunk):
            yield data.concat(np.sort(order[start:start + chunk]))
