"""The crosscode stage: a crosscoder on the first two configured models, and on each random-weights control.

Per pair: pool both harvests onto word units (``data``), train a BatchTopK crosscoder with the SAE trainer
(resume from ``checkpoints/``; ``model``), save it, classify its latents (``analysis``), map each latent
to its best-correlated SAE feature of each model and hold that against compare's matches (``posthoc``),
then write ``latents.parquet`` and the stage record ``crosscode.json`` (its summary holds every figure the
report shows) last. Control pairs (a real model against the other model's random-weights control, where
the controls stage harvested one) go through the same path: their shared fraction is the floor.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.table import Table

from autointerp.compare.inputs import ComparedModel, check_same_corpus, ready_inputs
from autointerp.compare.tables import write_parquet
from autointerp.config import RunConfig
from autointerp.crosscode.analysis import class_summary, encode_units, latent_table, per_model_metrics
from autointerp.crosscode.config import CrosscodeConfig
from autointerp.crosscode.data import common_scales, paired_units, training_batches
from autointerp.crosscode.latent_stage import Encoded, latent_step
from autointerp.crosscode.model import CrossCoder, save_crosscoder
from autointerp.crosscode.posthoc import agreement, best_features, disagreements
from autointerp.data.corpus import corpus_fingerprint
from autointerp.errors import UserError
from autointerp.fmt import pct
from autointerp.io import file_sha256, read_parquet
from autointerp.progress import console
from autointerp.rundir.layout import CrosscodeDir, ModelDir, RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.sae.config import TrainConfig
from autointerp.sae.trainer import train_sae

POOLINGS = {"mean": "mean over every harvested token overlapping the word unit, per model",
            "residual": "mean over every harvested token overlapping the word unit, minus the model's mean over every unit of the "
                        "same word type (casefolded), on units whose type recurs in two or more documents: the lexical part removed"}
# settings that do not change the crosscoder (the latent pages are derived data with their own records)
_NOT_SETTINGS = ("enabled", "controls", "device", "checkpoint_every", "latent_pages", "label_latents")
CONTROL_SUFFIX = "@random"


def pairs_for(cfg: RunConfig) -> list[tuple[ComparedModel, ComparedModel, str]]:
    """(A, B, role): the first two configured models ("pair"), then each random-weights control ("floor")."""
    if len(cfg.models) < 2:
        raise UserError("the crosscoder needs two [[models]] in the config; it crosscodes the first two")
    run = RunDir(cfg.run_path)
    ea, eb = cfg.models[:2]
    a, b = ready_inputs(run.model(ea.slug), ea.slug), ready_inputs(run.model(eb.slug), eb.slug)
    for entry, got in ((ea, a), (eb, b)):
        if got is None:
            raise UserError(f"{entry.slug} has no complete harvest and SAE in {run.model(entry.slug).root}; "
                            f"run `autointerp harvest` and `autointerp train --run-dir {cfg.run_path}` first")
    out = [(a, b, "pair")]
    if cfg.crosscode.controls:
        ra = ready_inputs(run.controls.random_model(ea.slug), ea.slug + CONTROL_SUFFIX)
        rb = ready_inputs(run.controls.random_model(eb.slug), eb.slug + CONTROL_SUFFIX)
        out += [(a, rb, "floor")] if rb is not None else []
        out += [(ra, b, "floor")] if ra is not None else []
    return out


def _settings(cfg: CrosscodeConfig) -> dict:
    out = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_SETTINGS}
    if out["pooling"] == "mean":  # records made before the setting existed used mean pooling
        del out["pooling"]
    return out


def _inputs(a: ComparedModel, b: ComparedModel, matches: Path) -> dict:
    one = lambda m: {"harvest": m.manifest.get("identity"), "shards": m.manifest.get("shards"),  # noqa: E731
                     "sae": file_sha256(ModelDir(m.model_dir).sae.weights)}
    return {"a": one(a), "b": one(b), "matches": file_sha256(matches) if matches.is_file() else None}


def crosscode_pair(run_dir: Path, a: ComparedModel, b: ComparedModel, out: CrosscodeDir, cfg: CrosscodeConfig, role: str,
                   *, overwrite: bool = False, progress: bool = True, keep: dict | None = None) -> tuple[dict, bool]:
    """Train (or reuse) the crosscoder of one pair; returns (summary, reused). A freshly trained crosscoder,
    its units and codes are left in ``keep["encoded"]`` (the latent pages are mined from them)."""
    docs = check_same_corpus(run_dir, a, b)
    matches = RunDir(run_dir).pair(a.slug, b.slug).matches
    settings, inputs = _settings(cfg), _inputs(a, b, matches)
    previous = StageRecord.load(out.record)
    decision = decide(previous, settings, inputs, overwrite=overwrite, where=out.root)
    if decision is Decision.REUSE and out.weights.is_file() and out.latents.is_file():
        return previous.summary, True
    if decision is Decision.REDO:
        shutil.rmtree(out.root, ignore_errors=True)
    started = time.perf_counter()
    data = paired_units(a, b, docs, cfg.eval_fraction, cfg.seed, progress, cfg.pooling)
    train_rows = np.flatnonzero(~data.is_eval)
    scales = common_scales(data.x_a[train_rows], data.x_b[train_rows])
    pooled_s = time.perf_counter() - started
    torch.manual_seed(cfg.seed)
    cc = CrossCoder(data.x_a.shape[1], data.x_b.shape[1], cfg.d_sae, cfg.k, scales)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, device=cfg.device,
                       checkpoint_every=cfg.checkpoint_every, ce_contexts=0).for_rows(len(train_rows))
    t0 = time.perf_counter()
    result = train_sae(cc, training_batches(data, train_rows, cfg.epochs, cfg.batch_size, cfg.seed), tcfg,
                       checkpoint_dir=out.checkpoints, progress=progress)
    train_s = time.perf_counter() - t0
    save_crosscoder(cc, out.root, {"models": [a.slug, b.slug], "hook_names": [a.manifest.get("hook_name"), b.manifest.get("hook_name")],
                                   "pooling": POOLINGS[cfg.pooling], "scale_rule": "each model's mean centred norm -> sqrt((d_a + d_b) / 2)"})
    enc = encode_units(cc, data)
    table = pd.DataFrame(latent_table(cc, enc, cfg))
    for m, key in ((a, "a"), (b, "b")):
        best, corr, _ = best_features(enc.codes, m, data, docs, progress)
        table[f"best_{key}"], table[f"corr_{key}"] = best, corr
    frame = read_parquet(matches) if role == "pair" and matches.is_file() else None
    table, agree = agreement(table, frame, cfg.min_corr)
    listed = disagreements(table, enc.codes, data, data.words.texts(docs), cfg.n_disagreements) if agree["available"] else []
    write_parquet(table, out.latents)
    summary = {
        "role": role, "model_a": a.slug, "model_b": b.slug, "d_a": cc.d_a, "d_b": cc.d_b, "d_sae": cfg.d_sae, "k": cfg.k,
        "pooling": POOLINGS[cfg.pooling], "pooling_mode": cfg.pooling, "scales": [float(s) for s in cc.scales], "n_units": data.n, "n_train_units": int(len(train_rows)),
        "n_eval_units": int(data.is_eval.sum()), "n_documents": len(docs), "corpus": corpus_fingerprint(docs),
        "training": {"steps": result.steps, "units": result.tokens, "completed": result.completed, "resumed_from_step": result.resumed_from_step,
                     "seconds": round(train_s, 2), "units_per_s": round(result.tokens / max(train_s, 1e-9), 1),
                     "fvu_train": result.fvu, "history": result.history},
        "metrics": per_model_metrics(enc, result.dead_fraction, (a.slug, b.slug), table["relative_norm"].to_numpy(), cfg.exclusive_below),
        "classes": class_summary(table.to_dict("series"), cfg),
        "relative_norms": table["relative_norm"][table["class"] != "dead"].round(4).tolist(),
        "posthoc": agree, "disagreements": listed,
        "seconds": {"pool": round(pooled_s, 2), "train": round(train_s, 2), "total": round(time.perf_counter() - started, 2)},
    }
    StageRecord("crosscode", settings, inputs, summary=summary).save(out.record)
    shutil.rmtree(out.checkpoints, ignore_errors=True)  # the record is written: nothing left to resume
    if keep is not None:
        keep["encoded"] = Encoded(cc, data, enc.codes, docs)
    return summary, False


def crosscode_stage(cfg: RunConfig, *, overwrite: bool = False, progress: bool = True) -> list[tuple[dict, bool]]:
    """Every crosscoder of the run (pair first, then controls), under the run lock; the pair's paged latents
    get word windows, labels and scores (``latent_stage``)."""
    cfg.crosscode.validate()
    with run_lock(cfg.run_path):
        rundir = RunDir(cfg.run_path)
        results = []
        for a, b, role in pairs_for(cfg):
            out, keep = rundir.crosscoder(a.slug, b.slug), {}
            results.append(crosscode_pair(cfg.run_path, a, b, out, cfg.crosscode, role, overwrite=overwrite, progress=progress, keep=keep))
            if role == "pair":
                latent_step(cfg, a, b, out, keep.get("encoded"), progress)
        return results


def print_summary(results: list[tuple[dict, bool]]) -> None:
    table = Table(title="crosscode: shared / exclusive latents (relative decoder norm + Latent Scaling)")
    for col in ("pair", "role", "pooling", "units", "FVU A / B", "L0 A / B", "shared", "A-only", "B-only", "norm only", "post-hoc agree"):
        table.add_column(col)
    share = functools.partial(pct, digits=0, missing="-")
    for s, reused in results:
        f, fvu, post = s["classes"]["fractions"], list(s["metrics"]["fvu"].values()), s["posthoc"]
        l0 = " / ".join(f"{v['l0']:.1f}" for v in (s["metrics"].get("per_model") or {}).values()) or "-"
        table.add_row(f"{s['model_a']} x {s['model_b']}" + (" (cached)" if reused else ""), s["role"], s.get("pooling_mode", "mean"),
                      f"{s['n_units']:,}", f"{fvu[0]:.3f} / {fvu[1]:.3f}", l0, share(f["shared"]), share(f["a_only"]), share(f["b_only"]), share(f["norm_only"]),
                      share(post.get("crosscoder_shared_in_posthoc")) if post.get("available") else "-")
    console.print(table)


def run(cfg: RunConfig, *, overwrite: bool = False, models=None) -> StageResult:
    """Every crosscoder of the run, and a table of them (the stage contract: ``autointerp.stages``; the pair
    is the first two configured models, so ``models`` is unused). ``autointerp run`` calls it only when
    ``[crosscode] enabled = true`` (``Stage.gate``); the command always does. The result's detail is the
    list of (summary, reused) per crosscoder."""
    results = crosscode_stage(cfg, overwrite=overwrite)
    print_summary(results)
    names = [f"{s['model_a']} x {s['model_b']} ({s['role']})" for s, _ in results]
    return StageResult("crosscode", tuple(n for n, (_, r) in zip(names, results) if not r),
                       tuple(n for n, (_, r) in zip(names, results) if r), results)
