"""The labels table, ``<model>/labels.parquet``, and its metadata, ``<model>/labels.json`` (agreed contract).

The table has one row per labelled feature.

Columns: feature int32, label string (null when failed), raw string, status "ok"|"failed", error
string|null, explainer_model string, prompt_tokens / completion_tokens int64, cost_usd float64, and per
scorer S that ran: score_<S>, baseline_<S> float64 (baseline = same scorer, label shuffled in from another
feature), plus status_<S> ("ok"|"failed"), error_<S> and scorer details (e.g. auroc_<S>); against hard
negatives score_<S>_hard, lexical_<S>_hard, baseline_<S>_hard, final_<S>_hard float64, with n_hard_negatives
and hard_negatives_missing (string: why there are none). Written atomically after every batch, so an
interrupted stage resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autointerp.io import atomic_path, read_json, read_parquet, write_json
from autointerp.rundir.layout import ModelDir

BASE_COLUMNS = {
    "feature": pa.int32(), "label": pa.string(), "raw": pa.string(), "status": pa.string(), "error": pa.string(),
    "explainer_model": pa.string(), "prompt_tokens": pa.int64(), "completion_tokens": pa.int64(), "cost_usd": pa.float64(),
}
STRING_COLUMNS = ("label_source", "llm_label", "lexical_label",  # issue 13: where the final label came from
                  "word_label",  # issue 23: the word-only baseline
                  "hard_negatives_missing",  # issue 23: why a feature has no hard-negative scores
                  "feature_class")  # issue 23: token / contextual / topical / other (exemplars' feature_stats)
CANDIDATE_SCHEMA = pa.schema([("feature", pa.int64()), ("candidate", pa.string()), ("source", pa.string()),
                              ("train_score", pa.float64()), ("kept", pa.bool_()), ("restates", pa.bool_()), ("template_copy", pa.bool_())])
DEFINITIONS = {
    "label": "the final label: the kept LLM candidate, or the lexical label where it scores higher on the feature's TRAINING windows, or the word-only label where it leads both by more than 0.05 there (label_source says which; null when labelling failed)",
    "llm_label": "the kept LLM candidate (best of n_candidates on training windows; template copies rejected)",
    "lexical_label": "a deterministic label from the feature's lexical profile (its dominant words and contexts), no LLM",
    "label_source": "llm, lexical or word: which label became the final label",
    "word_label": "the word-only baseline: the feature's main words and nothing about when they fire (scored as word_<scorer>, word_<scorer>_hard)",
    "feature_class": "the feature's class from its activations (token / contextual / topical / other; exemplars.json feature_classes.rule)",
    "llm_skipped": "1 when no LLM was asked: a token-class feature gets its lexical label ([explain] llm_for_tokens = false)",
    "train_score_llm": "training-window embedding AUROC of llm_label (used only to choose; reported scores are held-out)",
    "train_score_lexical": "training-window embedding AUROC of lexical_label",
    "restates_window": "1 when llm_label is a substring of a window shown to the explainer",
    "cached_calls": "explainer answers of this label served from the response cache (their original tokens are kept in prompt_tokens / completion_tokens)",
    "raw": "the explainer's full answer, before parsing",
    "status": "ok: a usable label; failed: the request or the parse failed (reason in error); failed features are retried on the next run",
    "baseline_<scorer>": "the same scorer on the same held-out windows with a label shuffled in from another feature (seeded derangement)",
    "prompt_tokens": "explainer + scorer prompt tokens spent on this feature (cache hits included)",
}


def empty_table() -> pd.DataFrame:
    return pa.schema(list(BASE_COLUMNS.items())).empty_table().to_pandas()


def read_labels(model_dir: Path) -> pd.DataFrame:
    path = ModelDir(Path(model_dir)).labels
    return read_parquet(path) if path.is_file() else empty_table()


def _arrow_type(column: str, series: pd.Series) -> pa.DataType:
    if column in BASE_COLUMNS:
        return BASE_COLUMNS[column]
    if column.startswith(("status_", "error_")) or column in STRING_COLUMNS:
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


def write_candidates(model_dir: Path, rows: list[dict]) -> Path:
    """``label_candidates.parquet``: every candidate label of every labelled feature (merged by feature)."""
    path = ModelDir(Path(model_dir)).label_candidates
    new = pd.DataFrame(rows, columns=CANDIDATE_SCHEMA.names)
    if path.is_file():
        old = read_parquet(path)
        new = pd.concat([old[~old["feature"].isin(new["feature"])], new], ignore_index=True) if len(new) else old
    new = new.sort_values(["feature", "source", "train_score"], ascending=[True, True, False], kind="stable").reset_index(drop=True)
    for col in ("kept", "restates", "template_copy"):
        new[col] = new[col].fillna(False).astype(bool)
    table = pa.Table.from_pandas(new.astype({"feature": "int64", "train_score": "float64"}), schema=CANDIDATE_SCHEMA, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def llm_labels(table: pd.DataFrame) -> dict[int, str]:
    """{feature: the LLM's label} of the ok rows (``llm_label``; ``label`` in tables made before it existed)."""
    ok = table[table["status"] == "ok"]
    column = "llm_label" if "llm_label" in ok.columns else "label"
    return {int(f): str(v) for f, v in zip(ok["feature"], ok[column]) if isinstance(v, str) and v}


def lexical_labels(table: pd.DataFrame, column: str = "lexical_label") -> dict[int, str]:
    """{feature: label} of the ok rows from a deterministic label column (``lexical_label``, ``word_label``)."""
    if column not in table.columns:
        return {}
    ok = table[table["status"] == "ok"]
    return {int(f): str(v) for f, v in zip(ok["feature"], ok[column]) if isinstance(v, str) and v}


def read_meta(model_dir: Path) -> dict:
    """labels.json: how the labels and each scorer's scores were made, LLM usage, column definitions."""
    path = ModelDir(Path(model_dir)).labels_meta
    return read_json(path) if path.is_file() else {}


def write_meta(model_dir: Path, meta: dict) -> None:
    """The one writer of labels.json; column definitions are kept (scorers add theirs) and completed here."""
    meta["definitions"] = {**(meta.get("definitions") or {}), **DEFINITIONS}
    write_json(ModelDir(Path(model_dir)).labels_meta, meta)


def store_usage(client, before, model_dir: Path, stage_name: str, seconds: float, n_features: int) -> dict:
    """This invocation's LLM usage (returned, for the console), added to the stage's totals in labels.json
    (the explain and score stages both keep theirs there, next to the labels they paid for)."""
    from autointerp.llm.accounting import add_usage, invocation_usage

    summary = invocation_usage(client, before, seconds, n_features)
    meta = read_meta(model_dir)
    usage = meta.setdefault("usage", {})
    usage[stage_name] = add_usage(usage.get(stage_name), summary)
    meta["explainer_model"] = meta.get("explainer_model") or client.model_name
    write_meta(model_dir, meta)
    return summary
