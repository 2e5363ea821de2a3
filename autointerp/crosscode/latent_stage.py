"""The crosscode stage's second half, for the model pair (not the controls): paged latents' windows and labels.

Two steps after the crosscoder is trained (or reused), each with its own record next to its output:

1. ``latent_exemplars.parquet`` (record ``latent_exemplars.json``): the selection (``selection``) and each
   selected latent's word windows with both models' reads (``latent_windows``). Made from the crosscoder,
   latents.parquet and the word units; the units are pooled again only when the crosscoder was reused.
2. ``latent_labels.parquet`` (record ``latent_labels.json``): labels and embedding scores (``latent_labels``).

Both are derived data: when their settings or inputs change they are simply made again (never refused,
never mixed), so changing ``latent_pages`` or ``[explain]`` does not retrain the crosscoder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from autointerp.compare.inputs import ComparedModel, check_same_corpus
from autointerp.compare.tables import write_parquet
from autointerp.config import RunConfig
from autointerp.crosscode.data import PairedUnits, paired_units
from autointerp.crosscode.latent_labels import label_and_score, label_settings, score_summary
from autointerp.crosscode.latent_windows import SCHEMA, mine_latent_windows
from autointerp.crosscode.model import CrossCoder
from autointerp.crosscode.selection import GROUPS, select_latents
from autointerp.data.corpus import Document
from autointerp.io import atomic_path, file_sha256, read_parquet
from autointerp.progress import console
from autointerp.rundir.layout import CrosscodeDir, RunDir
from autointerp.rundir.record import StageRecord

_EXEMPLAR_FIELDS = ("n_top", "n_quantiles", "per_quantile", "n_random", "window_before", "window_after", "test_fraction", "seed")


@dataclass
class Encoded:
    """What the windows are mined from; kept from training, or rebuilt from the saved crosscoder."""

    cc: CrossCoder
    data: PairedUnits
    codes: sp.csr_matrix
    docs: list[Document]


def _current(record: StageRecord | None, settings: dict, inputs: dict, *outputs) -> bool:
    return (record is not None and record.complete and record.settings == settings and record.inputs == inputs
            and all(p.is_file() for p in outputs))


def _rebuild(cfg: RunConfig, a: ComparedModel, b: ComparedModel, out: CrosscodeDir, progress: bool) -> Encoded:
    from autointerp.crosscode.analysis import encode_units
    from autointerp.crosscode.model import load_crosscoder

    docs = check_same_corpus(cfg.run_path, a, b)
    data = paired_units(a, b, docs, cfg.crosscode.eval_fraction, cfg.crosscode.seed, progress, cfg.crosscode.pooling)
    cc = load_crosscoder(out.root)
    return Encoded(cc, data, encode_units(cc, data).codes, docs)


def latent_exemplars(cfg: RunConfig, a: ComparedModel, b: ComparedModel, out: CrosscodeDir, memo: Encoded | None,
                     progress: bool = True) -> dict:
    """Select the paged latents and mine their windows (or reuse them); returns the record's summary."""
    cc_cfg = cfg.crosscode
    settings = {"latent_pages": cc_cfg.latent_pages, "seed": cc_cfg.seed,
                "exemplars": {k: v for k, v in dataclasses.asdict(cfg.exemplars).items() if k in _EXEMPLAR_FIELDS}}
    inputs = {"crosscoder": file_sha256(out.weights), "latents": file_sha256(out.latents)}
    previous = StageRecord.load(out.latent_exemplars_record)
    if _current(previous, settings, inputs, out.latent_exemplars):
        return previous.summary
    started = time.perf_counter()
    chosen = select_latents(read_parquet(out.latents), cc_cfg.latent_pages, cc_cfg.seed)
    latents = [int(j) for j in chosen["latent"]]
    if latents and memo is None:
        memo = _rebuild(cfg, a, b, out, progress)
    table = mine_latent_windows(memo.cc, memo.data, memo.codes, memo.docs, latents, cfg.exemplars) if latents else SCHEMA.empty_table()
    with atomic_path(out.latent_exemplars) as tmp:
        pq.write_table(table, tmp, row_group_size=20_000)
    kinds = pd.Series(table.column("kind").to_pylist(), dtype=object).value_counts() if table.num_rows else pd.Series(dtype=int)
    summary = {"n_latents": len(latents), "latents": latents, "groups": [str(g) for g in chosen["group"]],
               "group_titles": GROUPS, "n_windows": table.num_rows, "windows_by_kind": {str(k): int(v) for k, v in kinds.items()},
               "window_unit": "word unit (compare.units); window_before / window_after of [exemplars] count words",
               "reads": "read_a / read_b: the part of the latent's pre-activation computed from each model's pooled activation "
                        "((s_m x_m - b_dec_m) . W_enc_m[:, j]); act = relu(read_a + read_b + b_enc_j) where the latent fires",
               "seconds": round(time.perf_counter() - started, 2)}
    StageRecord("crosscode latent exemplars", settings, inputs, summary=summary).save(out.latent_exemplars_record)
    return summary


def latent_labels(cfg: RunConfig, out: CrosscodeDir, latents: list[int]) -> dict:
    """Label and score the paged latents (or reuse); {} when ``label_latents`` is off or none are paged."""
    if not cfg.crosscode.label_latents or not latents:
        _remove(out.latent_labels, out.latent_labels_record)  # no stale labels left for the report to show
        return {}
    settings = label_settings(cfg.explain, cfg.score, cfg.llm.backend, cfg.llm.model)
    inputs = {"windows": file_sha256(out.latent_exemplars)}
    previous = StageRecord.load(out.latent_labels_record)
    if _current(previous, settings, inputs, out.latent_labels):
        return previous.summary
    run = RunDir(cfg.run_path)
    documents = read_parquet(run.documents) if run.documents.is_file() else None
    started = time.perf_counter()
    table, usage = asyncio.run(_label(cfg, out, documents, latents))
    write_parquet(table, out.latent_labels)
    summary = score_summary(table) | {"seconds": round(time.perf_counter() - started, 2), "usage": usage}
    StageRecord("crosscode latent labels", settings, inputs, summary=summary).save(out.latent_labels_record)
    return summary


async def _label(cfg: RunConfig, out: CrosscodeDir, documents, latents: list[int]) -> tuple[pd.DataFrame, dict]:
    from autointerp.llm.accounting import usage_summary

    async def run(client):
        return await label_and_score(client, out.latent_exemplars, documents, latents, cfg.explain, cfg.score,
                                     concurrency=cfg.llm.concurrency)

    if cfg.explain.labeller != "llm":
        table, _ = await run(None)
        return table, {}
    from autointerp.llm.factory import open_client

    async with open_client(cfg.llm, cfg.run_path) as client:
        table, _ = await run(client)
        return table, usage_summary(client.usage, model=client.model_name, backend=client.backend, price=client.price)


def latent_step(cfg: RunConfig, a: ComparedModel, b: ComparedModel, out: CrosscodeDir, memo: Encoded | None,
                progress: bool = True) -> dict:
    """Both steps for the pair; the summary the stage prints."""
    if cfg.crosscode.latent_pages <= 0:
        _remove(out.latent_exemplars, out.latent_exemplars_record, out.latent_labels, out.latent_labels_record)
        return {}
    windows = latent_exemplars(cfg, a, b, out, memo, progress)
    labels = latent_labels(cfg, out, windows.get("latents", []))
    if labels:
        console.print(f"crosscode latents: {windows['n_latents']} paged, {labels['n_labelled']} labelled; held-out embedding AUROC "
                      f"final {_fmt(labels['mean_final'])} vs shuffled {_fmt(labels['mean_shuffled'])} (lexical {_fmt(labels['mean_lexical'])})")
    return {"exemplars": windows, "labels": labels}


def _remove(*paths) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"
