"""Windows of a universal feature (issue 27): the same words, every model's activation of its member of the chain.

A universal chain is one feature per model (``compare.universal``). Its page shows where they all fire: on the
run's word units (``compare.units``: each model's tokens max-pooled onto the words they overlap, so models with
different tokenizers meet on the same words), the score of a unit is the smallest of the chain's normalised
activations (each divided by its feature's max over the units every harvest covers), and the ``PER_CHAIN``
best units, at least a window apart (``pair_windows.pick_units``), become windows of the pair pages' size
(``pair_windows.window_span``), each carrying one activation row per model.

Like the pair windows they are stored (``compare/cache/universal_windows.parquet``) with the identity of
what they were made from and the chains they cover, so a later report reads them and encodes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from autointerp.compare.units import WordIndex
from autointerp.data.corpus import Document
from autointerp.report import pair_windows as pw

PER_CHAIN = 3
SCHEMA = pa.schema([("chain", pa.string()), ("rank", pa.int32()), ("doc_id", pa.string()), ("center", pa.int32()),
                    ("text", pa.string()), ("word_start", pa.list_(pa.int32())), ("word_end", pa.list_(pa.int32())),
                    ("acts", pa.list_(pa.list_(pa.float32())))])  # acts[i]: the i-th model's activations on the words


def chain_key(features: dict[str, int]) -> str:
    """A chain's key in the stored table: its features in model order."""
    return "-".join(str(int(f)) for f in features.values())


@dataclass
class ChainSummary:
    n_all: int  # word units where every member fires
    max_act: list[float]  # each member's max over the covered units (the page's shading scale), in model order


@dataclass
class UniversalWindows:
    models: list[str]
    rows: pd.DataFrame  # SCHEMA
    summary: dict[str, ChainSummary]

    def of(self, features: dict[str, int]) -> list:
        """The chain's windows as row tuples, best first."""
        rows = self.rows[self.rows["chain"] == chain_key(features)].sort_values("rank")
        return list(rows.itertuples(index=False))


def identity_params() -> dict:
    return pw.identity_params() | {"per_chain": PER_CHAIN}


def build(words: WordIndex, docs: list[Document], chains: list[dict[str, int]],
          column: Callable[[str, int], np.ndarray], covered: np.ndarray) -> UniversalWindows:
    """``column(model, f)``: feature f's word-pooled activations over all units; ``covered``: the units every
    model's harvest covers."""
    models = list(chains[0]) if chains else []
    rows, summary = [], {}
    for chain in chains:
        xs = [column(m, f) * covered for m, f in chain.items()]
        tops = [float(x.max(initial=0.0)) for x in xs]
        score = np.minimum.reduce([x / t if t > 0 else x for x, t in zip(xs, tops)])
        key = chain_key(chain)
        summary[key] = ChainSummary(int((score > 0).sum()), tops)
        for rank, c in enumerate(pw.pick_units(score, PER_CHAIN, pw.BEFORE + pw.AFTER)):
            units, fields = pw.window_span(words, docs, c)
            rows.append({"chain": key, "rank": rank, **fields, "acts": [x[units].astype(np.float32).tolist() for x in xs]})
    return UniversalWindows(models, pd.DataFrame(rows, columns=SCHEMA.names), summary)


def write(path: Path, result: UniversalWindows, identity: dict, chains: list[dict[str, int]]) -> None:
    meta = {"identity": identity, "models": result.models, "chains": [chain_key(c) for c in chains],
            "summary": {k: [s.n_all, s.max_act] for k, s in result.summary.items()}}
    pw.write_table(path, result.rows, SCHEMA, meta)


def read(path: Path, identity: dict, chains: list[dict[str, int]]) -> UniversalWindows | None:
    """The stored windows when made from the same inputs and covering every chain asked for; else None."""
    found = pw.read_table(path, identity)
    if found is None:
        return None
    rows, meta = found
    if not {chain_key(c) for c in chains} <= set(meta.get("chains", [])):
        return None
    summary = {k: ChainSummary(int(v[0]), [float(x) for x in v[1]]) for k, v in meta.get("summary", {}).items()}
    return UniversalWindows(list(meta.get("models", [])), rows, summary)
