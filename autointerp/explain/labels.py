"""The labels table, ``<model>/labels.parquet``, and its metadata, ``<model>/labels.json`` (agreed contract).

The table has one row per labelled feature.

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

from autointerp.io import atomic_path, read_json, write_json
from autointerp.rundir.layout import ModelDir

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
    path = ModelDir(Path(model_dir)).labels
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
    out = ModelDir(Path(model_dir)).labels
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


def read_meta(model_dir: Path) -> dict:
    """labels.json: how the labels and each scorer's scores were made, LLM usage, column definitions."""
    path = ModelDir(Path(model_dir)).labels_meta
    return read_json(path) if path.is_file() else {}


def write_meta(model_dir: Path, meta: dict) -> None:
    """The one writer of labels.json; column definitions are kept (scorers add theirs) and completed here."""
    meta["definitions"] = {**(meta.get("definitions") or {}), **DEFINITIONS}
    write_json(ModelDir(Path(model_dir)).labels_meta, meta)
