"""Activation shards on disk.

A harvest directory holds ``shard_NNNNN.safetensors`` (tensor ``activations`` [rows, d_model]) and a
matching ``shard_NNNNN.parquet`` token index (one row per activation row: doc_id, position, token_id,
token, char_start, char_end, context_id, ctx_pos), plus ``harvest.json`` listing completed shards.
A shard counts only once it is listed there, so a killed run resumes at the first unlisted shard.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

from autointerp.io import atomic_path, read_parquet, read_safetensors
from autointerp.rundir.layout import ShardPaths

ACTIVATIONS_KEY = "activations"
STORAGE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def write_shard(harvest_dir: Path, index: int, activations: torch.Tensor, rows: pd.DataFrame, metadata: dict[str, str]) -> ShardPaths:
    """Write one shard's index then its activations, each atomically."""
    if len(rows) != activations.shape[0]:
        raise ValueError(f"shard {index}: {len(rows)} index rows but {activations.shape[0]} activation rows")
    paths = ShardPaths.of(harvest_dir, index)
    with atomic_path(paths.index) as tmp:
        rows.to_parquet(tmp, index=False)
    with atomic_path(paths.activations) as tmp:
        save_file({ACTIVATIONS_KEY: activations.contiguous()}, str(tmp), metadata=metadata)
    return paths


def read_shard(harvest_dir: Path, index: int) -> tuple[torch.Tensor, pd.DataFrame]:
    paths = ShardPaths.of(harvest_dir, index)
    fix = "delete it and re-run the harvest (or harvest with --overwrite)"
    return read_safetensors(paths.activations, fix=fix)[ACTIVATIONS_KEY], read_parquet(paths.index)
