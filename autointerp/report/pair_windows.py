"""Side-by-side windows of a matched pair: where both features fire, where only A fires, where only B fires.

Both models' activations live on the same word units (``compare.units``: runs of word characters or of
punctuation, cut from the run's documents; each model's tokens max-pooled onto the words they overlap),
so one window of text carries two activations per word. Per pair and section the strongest units are
picked greedily, at least a window apart, and each becomes a window of ``BEFORE`` words before to
``AFTER`` words after it, inside its document:

- both: the smaller of the two normalised activations (each divided by its feature's max over the corpus);
- only A: A's normalised activation where B is silent (below ``SILENT`` of its own max); only B likewise.

The windows of all pair pages are stored in ``compare/<A>__<B>/cache/pair_windows.parquet`` with the
identity of what they were made from (both SAEs, both harvests, the documents, the settings) and the pairs
they cover in the file metadata; a report whose pairs are all there reads the file and encodes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autointerp.compare.units import WordIndex
from autointerp.data.corpus import Document
from autointerp.io import atomic_path

BEFORE, AFTER = 10, 6
PER_SECTION = 3
SILENT = 0.05
SECTIONS = ("both", "a_only", "b_only")
SCHEMA = pa.schema([("feature_a", pa.int64()), ("feature_b", pa.int64()), ("section", pa.string()), ("rank", pa.int32()),
                    ("doc_id", pa.string()), ("center", pa.int32()), ("text", pa.string()),
                    ("word_start", pa.list_(pa.int32())), ("word_end", pa.list_(pa.int32())),
                    ("act_a", pa.list_(pa.float32())), ("act_b", pa.list_(pa.float32()))])
_META = b"autointerp.pair_windows"


@dataclass
class PairSummary:
    """Per pair: how many shared words each feature fires on, alone or together, and each feature's max."""

    n_both: int
    n_a_only: int
    n_b_only: int
    max_a: float
    max_b: float


@dataclass
class PairWindows:
    rows: pd.DataFrame  # SCHEMA
    summary: dict[tuple[int, int], PairSummary]

    def of(self, feature_a: int, feature_b: int) -> list:
        """The pair's windows as row tuples (fields of SCHEMA), grouped once for all pages."""
        if "_groups" not in self.__dict__:
            groups: dict[tuple[int, int], list] = {}
            for row in self.rows.itertuples(index=False):
                groups.setdefault((int(row.feature_a), int(row.feature_b)), []).append(row)
            self.__dict__["_groups"] = groups
        return self.__dict__["_groups"].get((feature_a, feature_b), [])


def identity_params() -> dict:
    return {"before": BEFORE, "after": AFTER, "per_section": PER_SECTION, "silent": SILENT, "version": 1}


def pick_units(score: np.ndarray, n: int, gap: int) -> list[int]:
    """Up to ``n`` units with the highest positive score, pairwise more than ``gap`` units apart."""
    candidates = np.flatnonzero(score > 0)
    order = candidates[np.argsort(-score[candidates], kind="stable")]
    picked: list[int] = []
    for u in order.tolist():
        if all(abs(u - p) > gap for p in picked):
            picked.append(u)
            if len(picked) == n:
                break
    return picked


def build(words: WordIndex, docs: list[Document], pairs: list[tuple[int, int]], col_a, col_b, covered: np.ndarray) -> PairWindows:
    """``col_a(f)`` / ``col_b(f)``: feature f's word-pooled activations as a dense vector over all units."""
    rows, summary = [], {}
    for fa, fb in pairs:
        xa, xb = col_a(fa) * covered, col_b(fb) * covered
        ma, mb = float(xa.max(initial=0.0)), float(xb.max(initial=0.0))
        na = xa / ma if ma > 0 else xa
        nb = xb / mb if mb > 0 else xb
        summary[(fa, fb)] = PairSummary(int(((na > 0) & (nb > 0)).sum()), int(((na > 0) & (nb < SILENT)).sum()),
                                        int(((nb > 0) & (na < SILENT)).sum()), ma, mb)
        scores = {"both": np.minimum(na, nb), "a_only": np.where(nb < SILENT, na, 0.0), "b_only": np.where(na < SILENT, nb, 0.0)}
        for section in SECTIONS:
            for rank, c in enumerate(pick_units(scores[section], PER_SECTION, BEFORE + AFTER)):
                rows.append(_window(words, docs, fa, fb, section, rank, c, xa, xb))
    frame = pd.DataFrame(rows, columns=SCHEMA.names)
    return PairWindows(frame, summary)


def window_span(words: WordIndex, docs: list[Document], c: int) -> tuple[slice, dict]:
    """The window around word unit ``c``: ``BEFORE`` words before to ``AFTER`` after, inside its document. Returns
    the units it covers (to slice any model's activations with) and the row fields every window table shares:
    doc_id, center (the index of ``c`` in the window), text and each word's char span in that text."""
    d = int(np.searchsorted(words.doc_offsets, c, side="right") - 1)
    lo, hi = max(int(words.doc_offsets[d]), c - BEFORE), min(int(words.doc_offsets[d + 1]), c + AFTER + 1)
    base = int(words.char_offsets[d])
    s0, e1 = int(words.starts[lo]) - base, int(words.ends[hi - 1]) - base
    return slice(lo, hi), {"doc_id": docs[d].doc_id, "center": c - lo, "text": docs[d].text[s0:e1],
                           "word_start": (words.starts[lo:hi] - base - s0).astype(np.int32).tolist(),
                           "word_end": (words.ends[lo:hi] - base - s0).astype(np.int32).tolist()}


def _window(words: WordIndex, docs: list[Document], fa: int, fb: int, section: str, rank: int, c: int,
            xa: np.ndarray, xb: np.ndarray) -> dict:
    units, fields = window_span(words, docs, c)
    return {"feature_a": fa, "feature_b": fb, "section": section, "rank": rank, **fields,
            "act_a": xa[units].astype(np.float32).tolist(), "act_b": xb[units].astype(np.float32).tolist()}


def write_table(path: Path, frame: pd.DataFrame, schema: pa.Schema, meta: dict) -> None:
    """A window table with what it was made from (``meta["identity"]``) in the file's metadata, written atomically."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False).replace_schema_metadata({_META: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: Path, identity: dict) -> tuple[pd.DataFrame, dict] | None:
    """A stored window table and its metadata when made from the same inputs (``identity``); else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[_META])
    except Exception:  # noqa: BLE001 - a damaged derived file is recomputed, never trusted
        return None
    if json.dumps(meta.get("identity"), sort_keys=True, default=str) != json.dumps(identity, sort_keys=True, default=str):
        return None
    return table.to_pandas(), meta


def write(path: Path, result: PairWindows, identity: dict, pairs: list[tuple[int, int]]) -> None:
    meta = {"identity": identity, "pairs": [list(p) for p in pairs],
            "summary": {f"{a}-{b}": [s.n_both, s.n_a_only, s.n_b_only, s.max_a, s.max_b] for (a, b), s in result.summary.items()}}
    write_table(path, result.rows, SCHEMA, meta)


def read(path: Path, identity: dict, pairs: list[tuple[int, int]]) -> PairWindows | None:
    """The stored windows when made from the same inputs and covering every pair asked for; else None."""
    found = read_table(path, identity)
    if found is None:
        return None
    rows, meta = found
    if not {tuple(p) for p in pairs} <= {tuple(p) for p in meta.get("pairs", [])}:
        return None
    summary = {tuple(int(x) for x in k.split("-")): PairSummary(int(v[0]), int(v[1]), int(v[2]), float(v[3]), float(v[4]))
               for k, v in meta.get("summary", {}).items()}
    return PairWindows(rows, summary)
