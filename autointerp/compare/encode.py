"""Encode a harvest with its SAE and pool each feature's activation per shared unit (max), kept sparse.

One pass over the shards, ``chunk_rows`` rows per SAE call, serves both unit levels at once. The SAE's
sparse output (``top_acts``/``top_indices``) becomes (unit, feature, act) records; records are reduced
to their max per (unit, feature) after every shard and once more at the end (a word can straddle two
contexts in different shards). The result is a CSR matrix [units x d_sae] holding only the non-zeros —
about k per unit — and a mask of the units the harvest covers (a covered unit whose features are all
zero is a real zero observation, an uncovered one is no observation at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from autointerp.compare.units import WordIndex
from autointerp.errors import UserError
from autointerp.progress import progress_bar
from autointerp.sae.encode import chunk_codes, inference, read_harvest_shard


@dataclass
class PooledActivations:
    """Per unit level ("word" / "document"): max-pooled SAE activations and which units were observed."""

    matrix: sp.csr_matrix  # [n_units, d_sae] float32
    covered: np.ndarray  # [n_units] bool


def _max_per_key(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(keys) == 0:
        return keys, vals
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[starts], np.maximum.reduceat(vals, starts)


class _Pooler:
    """Accumulates (unit * d_sae + feature) -> max act for one unit level."""

    def __init__(self, n_units: int, d_sae: int):
        self.n_units, self.d_sae = n_units, d_sae
        self.covered = np.zeros(n_units, dtype=bool)
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, units: np.ndarray, features: np.ndarray, acts: np.ndarray) -> None:
        self.pending.append((units * self.d_sae + features, acts))

    def flush(self) -> None:
        if self.pending:
            self.parts.append(_max_per_key(np.concatenate([p[0] for p in self.pending]), np.concatenate([p[1] for p in self.pending])))
            self.pending = []

    def result(self) -> PooledActivations:
        self.flush()
        keys, vals = _max_per_key(np.concatenate([p[0] for p in self.parts] or [np.zeros(0, np.int64)]),
                                  np.concatenate([p[1] for p in self.parts] or [np.zeros(0, np.float32)]))
        self.parts = []
        rows, cols = np.divmod(keys, self.d_sae)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.n_units))]).astype(np.int64)
        matrix = sp.csr_matrix((vals.astype(np.float32), cols.astype(np.int32), indptr), shape=(self.n_units, self.d_sae))
        return PooledActivations(matrix, self.covered)


def _expand(rec_row: np.ndarray, pair_rows: np.ndarray, pair_units: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Repeat each record once per unit its row maps to: (record index, unit)."""
    count = np.bincount(pair_rows, minlength=n_rows)
    first = np.cumsum(count) - count
    rep = count[rec_row]
    idx = np.repeat(np.arange(len(rec_row)), rep)
    within = np.arange(len(idx)) - np.repeat(np.cumsum(rep) - rep, rep)
    return idx, pair_units[first[rec_row[idx]] + within]


def harvest_shards(manifest: dict) -> list[int]:
    """The manifest's completed shards, in index order."""
    return [s["index"] for s in sorted(manifest["shards"], key=lambda s: s["index"])]


def shard_units(harvest_dir: Path, index: pd.DataFrame, doc_index_of: dict[str, int],
                words: WordIndex | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Each shard row's document index, and its (row, word unit) pairs sorted by row (None without ``words``).

    The one place a harvested token is tied to the shared units, so SAE codes and raw activations are
    pooled onto exactly the same units.
    """
    codes = index["doc_id"].map(doc_index_of)
    if codes.isna().any():
        missing = index["doc_id"][codes.isna()].iloc[0]
        raise UserError(f"{harvest_dir} has rows of document {missing!r}, which is not in the run's corpus; re-harvest with `autointerp harvest --overwrite`")
    doc_idx = codes.to_numpy(np.int64)
    if words is None:
        return doc_idx, None, None
    pair_rows, pair_units = words.map_tokens(doc_idx, index["char_start"].to_numpy(np.int64), index["char_end"].to_numpy(np.int64))
    return doc_idx, pair_rows, pair_units


def pool_harvest(sae, harvest_dir: Path, manifest: dict, doc_index_of: dict[str, int], words: WordIndex | None,
                 chunk_rows: int = 8192, progress: bool = True, label: str = "") -> dict[str, PooledActivations]:
    """Max-pooled activations per level: "document" always, "word" when ``words`` is given (token level)."""
    d_sae = sae.cfg.d_sae
    poolers = {"document": _Pooler(len(doc_index_of), d_sae)}
    if words is not None:
        poolers["word"] = _Pooler(words.n_units, d_sae)
    shards = harvest_shards(manifest)
    with inference(sae) as device, progress_bar(f"compare: encode {label}", len(shards), "shards", enabled=progress) as advance:
        for shard_index in shards:
            acts, index = read_harvest_shard(harvest_dir, shard_index)
            if acts.shape[1] != sae.cfg.d_in:
                raise UserError(f"the SAE in {harvest_dir.parent / 'sae'} expects d_in={sae.cfg.d_in} but {harvest_dir} holds d_model={acts.shape[1]}; retrain with `autointerp train --overwrite`")
            doc_idx, pair_rows, pair_units = shard_units(harvest_dir, index, doc_index_of, words)
            if words is not None:
                poolers["word"].covered[pair_units] = True
            poolers["document"].covered[doc_idx] = True
            for start, stop, rows, feats, vals in chunk_codes(sae, acts, chunk_rows, device):
                poolers["document"].add(doc_idx[rows], feats, vals)
                if words is not None:
                    lo, hi = np.searchsorted(pair_rows, [start, stop])
                    rec, units = _expand(rows - start, pair_rows[lo:hi] - start, pair_units[lo:hi], stop - start)
                    poolers["word"].add(units, feats[rec], vals[rec])
            for pooler in poolers.values():
                pooler.flush()
            advance(1)
    return {level: pooler.result() for level, pooler in poolers.items()}
