"""The labels table, ``runs/<name>/<model>/labels.parquet``: one row per labelled feature (agreed contract).

Columns: feature int32, label string (null when failed), raw string, status "ok"|"failed", error
string|null, explainer_model string, prompt_tokens / completion_tokens int64, cost_usd float64, and per
scorer S that ran: score_<S>, baseline_<S> float64 (baseline = same scorer, label shuffled in from another
feature), plus status_<S> ("ok"|"failed"), error_<S> and scorer details (e.g. auroc_<S>). Written
atomically after every batch, so an interrupted stage resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autointerp.io import atomic_path

LABELS_FILE = "labels.parquet"
LABELS_META = "labels.json"
BASE_COLUMNS = {
    "feature": pa.int32(), "label": pa.string(), "raw": pa.string(), "status": pa.string(), "error": pa.string(),
    "explainer_model": pa.string(), "prompt_tokens": pa.int64(), "completion_tokens": pa.int64(), "cost_usd": pa.float64(),
}
DEFINITIONS = {
    "label": "the explainer LLM's short description of what the feature fires on (null when labelling failed)",
    "raw": "the explainer's full answer, before parsing",
    "status": "ok: a usable label; failed: the request or the parse failed (reason in error); failed features are retried on the next run",
    "baseline_<scorer>": "the same scorer on the same held-out windows with a label shuffled in from another feature (seeded derangement)",
    "prompt_tokens": "explainer + scorer prompt tokens spent on this feature (cache hits included)",
}


def empty_table() -> pd.DataFrame:
    return pa.schema(list(BASE_COLUMNS.items())).empty_table().to_pandas()


def read_labels(model_dir: Path) -> pd.DataFrame:
    path = Path(model_dir) / LABELS_FILE
    return pd.read_parquet(path) if path.is_file() else empty_table()


def _arrow_type(column: str, series: pd.Series) -> pa.DataType:
    if column in BASE_COLUMNS:
        return BASE_COLUMNS[column]
    if column.startswith(("status_", "error_")):
        return pa.string()
    return pa.float64()


def write_labels(model_dir: Path, table: pd.DataFrame) -> Path:
    """Atomically (re)write the labels table, sorted by feature, with the contract's column types."""
    table = table.sort_values("feature").reset_index(drop=True)
    arrays, fields = [], []
    for column in table.columns:
        kind = _arrow_type(column, table[column])
        values = table[column]
        if pa.types.is_string(kind):
            values = values.astype(object).where(values.notna(), None)
        elif pa.types.is_floating(kind):
            values = pd.to_numeric(values, errors="coerce").astype(np.float64)
        arrays.append(pa.array(values.tolist() if pa.types.is_string(kind) else values.to_numpy(), type=kind, from_pandas=True))
        fields.append(pa.field(column, kind))
    out = Path(model_dir) / LABELS_FILE
    with atomic_path(out) as tmp:
        pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), tmp)
    return out


def merge_rows(table: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """``table`` with ``rows`` replacing any existing rows of the same features."""
    if not rows:
        return table
    new = pd.DataFrame(rows)
    kept = table[~table["feature"].isin(new["feature"])]
    return pd.concat([kept, new], ignore_index=True) if len(kept) else new


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed points (Sattolo's algorithm: one cycle), for shuffled-label baselines."""
    perm = np.arange(n)
    rng = np.random.default_rng(seed)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm
