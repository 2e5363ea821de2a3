"""Harvested activations -> SAE codes: the one encode step of every pass over a harvest (exemplar mining,
compare's pooling, the report's histograms), so they all read shards, switch the SAE to inference and keep its
codes sparse the same way.

Codes stay sparse: the SAE's ``(top_acts, top_indices)`` become (row, feature, value) records of the positive
entries; a dense [tokens x d_sae] matrix is never built. ``inference`` matters for BatchTopK, whose training-mode
selection depends on the batch: encoding must use its global threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autointerp.errors import UserError
from autointerp.harvest.shards import read_shard


def read_harvest_shard(harvest_dir: Path, shard_index: int) -> tuple[torch.Tensor, pd.DataFrame]:
    """One shard's activations and token index; a missing or damaged shard is the user's to re-harvest."""
    try:
        return read_shard(harvest_dir, shard_index)
    except Exception as e:  # missing / truncated file: safetensors, arrow and OS errors differ
        raise UserError(f"shard {shard_index} in {harvest_dir} is missing or corrupt ({e}); re-run `autointerp harvest --overwrite`") from e


@contextmanager
def inference(sae) -> Iterator[torch.device]:
    """The SAE in eval mode for the block (its mode restored after); yields the device its weights are on."""
    was_training = sae.training
    sae.eval()
    try:
        yield next(sae.parameters()).device
    finally:
        sae.train(was_training)


def sparse_codes(sae, acts: torch.Tensor, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SAE's code of ``acts`` [n, d_in] as (row, feature, value) of its positive entries, row-major
    (rows int64 within ``acts``, features int64, values float32)."""
    with torch.inference_mode():
        out = sae.encode(acts.to(device=device, dtype=torch.float32))
    top_acts, top_idx = out.top_acts.float().cpu().numpy(), out.top_indices.cpu().numpy()
    r, c = np.nonzero(top_acts > 0)
    return r.astype(np.int64), top_idx[r, c].astype(np.int64), top_acts[r, c]


def chunk_codes(sae, acts: torch.Tensor, chunk_rows: int, device) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """``sparse_codes`` of a shard ``chunk_rows`` rows per SAE call (bounded memory): (start, stop, rows, features,
    values) per chunk, rows counted from the shard's first row."""
    for start in range(0, acts.shape[0], chunk_rows):
        stop = min(start + chunk_rows, acts.shape[0])
        rows, features, values = sparse_codes(sae, acts[start:stop], device)
        yield start, stop, rows + start, features, values
