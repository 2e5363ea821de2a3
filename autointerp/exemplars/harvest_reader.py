"""Reading a harvest for mining: the checked shard reader every pass shares (the encoding is ``autointerp.sae.encode``).

Why a module of its own: the exemplar miner and the hard-negative pass (``hard_negatives``) read the same
shards; the checks turn a missing or malformed harvest into one plain ``UserError`` naming the fix, whichever
pass meets it first.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from autointerp.errors import UserError
from autointerp.harvest.harvester import load_manifest
from autointerp.io import read_parquet
from autointerp.rundir.layout import ShardPaths
from autointerp.sae.encode import read_harvest_shard

INDEX_COLUMNS = ("doc_id", "token_id", "token", "char_start", "char_end", "context_id")


def open_harvest(harvest_dir: Path, d_in: int) -> tuple[dict, list[dict]]:
    """The manifest and its shards in index order; refuses a missing, incomplete or mismatched harvest."""
    if not Path(harvest_dir).is_dir():
        raise UserError(f"no harvest found in {harvest_dir}; run `autointerp harvest` first")
    manifest = load_manifest(harvest_dir)
    shards = sorted(manifest.get("shards", []), key=lambda s: s["index"])
    if not manifest.get("complete") or not shards:
        raise UserError(f"the harvest in {harvest_dir} is incomplete ({len(shards)} shard(s) done); run `autointerp harvest` first to finish it")
    d_model = manifest.get("d_model")
    if d_model is not None and int(d_model) != d_in:
        raise UserError(f"SAE d_in={d_in} does not match the harvest's d_model={d_model} in {harvest_dir}; use the SAE trained on this model and layer")
    return manifest, shards


def read_checked(harvest_dir: Path, shard: dict, d_in: int) -> tuple[torch.Tensor, pd.DataFrame]:
    """One shard's activations and index, checked against the index columns the miner reads and ``d_in``."""
    acts, index = read_harvest_shard(harvest_dir, shard["index"])
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing or acts.ndim != 2 or acts.shape[0] != len(index):
        raise UserError(f"shard {shard['index']} in {harvest_dir} is malformed (missing columns {missing} or {acts.shape[0]} activation rows vs {len(index)} index rows); re-run `autointerp harvest --overwrite`")
    if acts.shape[1] != d_in:
        raise UserError(f"SAE d_in={d_in} does not match the harvest's d_model={acts.shape[1]} in {harvest_dir}; use the SAE trained on this model and layer")
    return acts, index


def read_index(harvest_dir: Path, shard: dict, columns: list[str]) -> pd.DataFrame:
    """``columns`` of one shard's token index, without its activations (a pass that needs no encoding)."""
    try:
        return read_parquet(ShardPaths.of(harvest_dir, shard["index"]).index, columns=columns)
    except Exception as e:  # missing / truncated file or columns: arrow and OS errors differ
        raise UserError(f"shard {shard['index']} in {harvest_dir} is missing or corrupt ({e}); re-run `autointerp harvest --overwrite`") from e

