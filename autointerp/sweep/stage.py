"""The sweep stage: every layer of the first two configured models against every layer of the other.

One forward pass per batch and model hooks every block (models.forward.forward_all_blocks); activations
are mean-pooled onto the shared word units of a seeded subsample of the run's saved documents (whole
documents, until ``max_units`` word units), and debiased CKA, SVCCA and mutual kNN are computed for each
(layer of A, layer of B) pair over the units both models cover (compare.representation.measure_grid).
Cells carry no permutation null; the best cell of each metric gets the document-derangement null of
``representation_baselines``. Output: ``<run>/sweep/sweep.json`` (the stage record, results in its
summary) and one heatmap PNG per metric.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from autointerp.compare.representation import measure_grid, representation_baselines
from autointerp.compare.units import WordIndex, aligned_pairs
from autointerp.config import ModelEntry, RunConfig
from autointerp.data.corpus import corpus_fingerprint, load_saved_documents
from autointerp.errors import UserError
from autointerp.progress import console
from autointerp.rundir.layout import RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.sweep.plots import heatmap
from autointerp.sweep.pool import pooled_layers


@dataclass
class SweepOutcome:
    skipped: bool
    summary: dict


def _settings(cfg: RunConfig, a: ModelEntry, b: ModelEntry) -> dict:
    sweep = {k: v for k, v in dataclasses.asdict(cfg.sweep).items() if k != "in_run"}  # where it runs does not change it
    return {"sweep": sweep, "models": [a.model, b.model], "ctx_len": cfg.harvest.ctx_len, "compute_dtype": cfg.harvest.compute_dtype}


def _plain(v):
    return float(v) if math.isfinite(v) else None


def _best(grid: np.ndarray) -> dict:
    """The best-aligned pair, and for each layer of either model its best partner."""
    if not np.isfinite(grid).any():
        return {"best": None, "best_b_for_each_a": None, "best_a_for_each_b": None}
    i, j = np.unravel_index(np.nanargmax(grid), grid.shape)
    filled = np.where(np.isfinite(grid), grid, -np.inf)
    return {"best": {"layer_a": int(i), "layer_b": int(j), "value": _plain(grid[i, j])},
            "best_b_for_each_a": filled.argmax(1).tolist(), "best_a_for_each_b": filled.argmax(0).tolist()}


def _pool(entry: ModelEntry, cfg: RunConfig, docs, words: WordIndex, progress: bool):
    from autointerp.models.load import load_model

    lm = load_model(entry.model, device=cfg.harvest.device, dtype=cfg.harvest.compute_dtype)
    layers, covered = pooled_layers(lm, docs, words, cfg.harvest.ctx_len, cfg.harvest.batch_size, progress)
    info = {"spec": entry.model, "slug": entry.slug, "n_layers": lm.n_layers, "blocks": lm.blocks_path, "d_model": lm.d_model}
    del lm
    return layers, covered, info


def sweep_stage(cfg: RunConfig, *, overwrite: bool = False, progress: bool = True) -> SweepOutcome:
    """Sweep the first two configured models layer by layer (a no-op when nothing changed)."""
    if len(cfg.models) < 2:
        raise UserError("the sweep needs two [[models]] in the config; it compares the first two")
    a, b = cfg.models[:2]
    run = RunDir(cfg.run_path)
    out = run.sweep
    docs = load_saved_documents(run.corpus)
    settings, inputs = _settings(cfg, a, b), {"corpus": corpus_fingerprint(docs)}
    previous = StageRecord.load(out.record)
    outputs = [out.record, *(out.heatmap(m) for m in cfg.sweep.metrics)]
    if decide(previous, settings, inputs, overwrite=overwrite, where=out.root) is Decision.REUSE and all(p.is_file() for p in outputs):
        return SweepOutcome(True, previous.summary)
    started = time.perf_counter()
    sub = [docs[i] for i in WordIndex.build(docs).subsample(cfg.sweep.max_units, cfg.sweep.seed)]
    words = WordIndex.build(sub)
    layers_a, covered_a, info_a = _pool(a, cfg, sub, words, progress)
    layers_b, covered_b, info_b = _pool(b, cfg, sub, words, progress)
    pooled_s = time.perf_counter() - started
    rows, _ = aligned_pairs(covered_a, covered_b)
    if len(rows) < 4:
        raise UserError(f"only {len(rows)} word units are covered by both models; the corpus is too small for a sweep")
    every = len(rows) == words.n_units  # else: only covered rows (a copy of every layer)
    pick = (lambda zs: zs) if every else (lambda zs: [z[rows] for z in zs])
    grids = measure_grid(pick(layers_a), pick(layers_b), metrics=tuple(cfg.sweep.metrics), max_units=cfg.sweep.knn_max_units,
                         knn_k=cfg.sweep.knn_k, seed=cfg.sweep.seed, progress=progress)
    grid_s = time.perf_counter() - started - pooled_s
    metrics = {name: {"values": [[_plain(v) for v in row] for row in grid], **_best(grid)} for name, grid in grids.items()}
    nulls = []
    cells = sorted({(m["best"]["layer_a"], m["best"]["layer_b"]) for m in metrics.values() if m["best"]})
    if cfg.sweep.null_permutations and len(sub) >= 2:
        for i, j in cells:
            baselines = representation_baselines(layers_a[i], layers_b[j], words.doc_offsets, covered_a=covered_a, covered_b=covered_b,
                                                 seed=cfg.sweep.seed, n_permutations=cfg.sweep.null_permutations,
                                                 max_units=cfg.sweep.knn_max_units, knn_k=cfg.sweep.knn_k)
            best_of = [name for name, m in metrics.items() if m["best"] and (m["best"]["layer_a"], m["best"]["layer_b"]) == (i, j)]
            nulls.append({"layer_a": i, "layer_b": j, "best_for": best_of, **baselines})
    out.root.mkdir(parents=True, exist_ok=True)
    for name, grid in grids.items():
        heatmap(grid, name, info_a["slug"], info_b["slug"], out.heatmap(name))
    summary = {
        "model_a": info_a, "model_b": info_b,
        "n_documents": len(sub), "n_corpus_documents": len(docs), "n_units": words.n_units, "n_aligned_units": int(len(rows)),
        "max_units": cfg.sweep.max_units, "seed": cfg.sweep.seed, "site": "resid (output of every block)", "pooling": "mean over each word unit's tokens",
        "mutual_knn_units": min(int(len(rows)), cfg.sweep.knn_max_units), "knn_k": cfg.sweep.knn_k,
        "metrics": metrics,
        "null": nulls,
        "null_note": "cells carry no permutation null; only the best cell of each metric is tested (document derangement)",
        "seconds": {"pool": round(pooled_s, 2), "grid": round(grid_s, 2), "null_and_plots": round(time.perf_counter() - started - pooled_s - grid_s, 2),
                    "total": round(time.perf_counter() - started, 2)},
    }
    StageRecord("sweep", settings, inputs, summary=summary).save(out.record)
    return SweepOutcome(False, summary)


def run(cfg: RunConfig, *, overwrite: bool = False, models=None) -> StageResult:
    """The sweep under the run lock, and a table of the best-aligned pair per metric (the stage contract:
    ``autointerp.stages``; it sweeps the first two configured models, so ``models`` is unused). ``autointerp
    run`` calls it only when ``[sweep] in_run = true`` (``Stage.gate``); the command always does."""
    with run_lock(cfg.run_path):
        outcome = sweep_stage(cfg, overwrite=overwrite)
    s = outcome.summary
    table = Table(title=f"sweep: {s['model_a']['slug']} ({s['model_a']['n_layers']} blocks) x {s['model_b']['slug']} ({s['model_b']['n_layers']} blocks), "
                        f"{s['n_aligned_units']:,} word units" + (" (cached)" if outcome.skipped else ""))
    for col in ("metric", "best A block", "best B block", "value", "null mean", "p"):
        table.add_column(col)
    for name, m in s["metrics"].items():
        best = m["best"] or {}
        null = next((n[name] for n in s["null"] if name in n["best_for"]), {})
        fmt = lambda v, spec=".3f": "-" if v is None else format(v, spec)  # noqa: E731
        table.add_row(name, str(best.get("layer_a", "-")), str(best.get("layer_b", "-")), fmt(best.get("value")),
                      fmt(null.get("null_mean")), fmt(null.get("p_value")))
    console.print(table)
    pair = f"{s['model_a']['slug']} x {s['model_b']['slug']}"
    return StageResult("sweep", () if outcome.skipped else (pair,), (pair,) if outcome.skipped else (), outcome)
