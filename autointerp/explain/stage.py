"""The explain stage: label features of each model with the secondary LLM -> ``<model>/labels.parquet``.

Resumable and idempotent: already-labelled features are skipped (failed ones retried). What shapes a label
is kept in labels.json (``explain_identity``) under the stage record's policy (``autointerp.rundir.record``):
other settings (explainer LLM, prompt text, ``[explain]`` values) are refused without ``--overwrite`` instead
of silently mixing labels made two ways; other exemplars (the SAE was retrained) mean labelling again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.config import RunConfig
from autointerp.errors import UserError
from autointerp.exemplars.current import require_exemplars
from autointerp.exemplars.feature_classes import read_classes
from autointerp.explain.config import LABEL_FIELDS, ExplainConfig
from autointerp.explain.labels import empty_table, merge_rows, read_labels, read_meta, store_usage, write_labels, write_meta
from autointerp.explain.pipeline import explain_features
from autointerp.explain.prompts import explainer_templates, prompt_sha
from autointerp.io import read_json, read_parquet
from autointerp.llm.base import LLMClient
from autointerp.progress import console
from autointerp.rundir.layout import ModelDir, RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.rundir.windows import load_windows

SAVE_EVERY = 8  # features between checkpoint writes of labels.parquet

def select_features(model_dir: Path, cfg: ExplainConfig) -> list[int]:
    """Live features with held-out activating windows, chosen by ``[explain] select`` (seeded).

    ``contextual`` spends the LLM where words fail: both sides of the pairs shared beyond word identity, the
    most active topical features, then unshared ones (``contextual_features``); ``matched`` takes the features
    of the best activation-matched shared pairs. Both read the run's comparison (``autointerp compare`` must
    have run; its rankings in label_priority.json): labelling both sides of the same pairs lets the label
    matching be checked against the activation matching.
    """
    stats = read_parquet(ModelDir(model_dir).feature_stats, columns=["feature", "density", "dead", "n_contexts_active"])
    live = stats[(~stats["dead"]) & (stats["n_contexts_active"] >= 2)]
    live_ids = {int(f) for f in live["feature"]}
    if cfg.select in ("contextual", "matched"):
        priority = pair_priority(model_dir.parent, model_dir.name)
        classes = read_classes(ModelDir(model_dir).feature_stats)
        if cfg.select == "contextual" and classes:
            chosen = contextual_features(priority, cfg.n_features, live, classes, cfg.seed)
        else:  # no classes (sequence level, or mined before them): the best shared pairs
            chosen = priority["matched"][:cfg.n_features]  # shared pairs first, then the best of the rest
        return sorted(set(chosen) & live_ids)
    if cfg.select == "all" or cfg.n_features >= len(live):
        return sorted(live_ids)
    if cfg.select == "top_density":
        return sorted(int(f) for f in live.nlargest(cfg.n_features, "density")["feature"])
    if cfg.select != "random":
        raise UserError(f"[explain] select = {cfg.select!r} is unknown; use contextual, matched, random, top_density or all")
    rng = np.random.default_rng(cfg.seed)
    return sorted(int(f) for f in rng.choice(live["feature"].to_numpy(), size=cfg.n_features, replace=False))


def pair_priority(run_dir: Path, slug: str) -> dict:
    """``slug``'s rankings (``compare.label_priority``: matched, contextual, shared) in the first comparison it is in."""
    for pair in RunDir(run_dir).pairs():
        if slug not in pair.names:
            continue
        if pair.label_priority.is_file():
            return read_json(pair.label_priority)["models"][slug]
        if pair.matches.is_file():
            raise UserError(f"the comparison in {pair.root} predates label_priority.json, which [explain] select = \"contextual\" / \"matched\" reads; rerun `autointerp compare` (it only adds the file)")
    raise UserError(f"[explain] select labels the best activation-matched pairs, but {run_dir} has no comparison for {slug} yet; run `autointerp compare` first (or set select = \"random\")")


def contextual_features(priority: dict, n: int, live: pd.DataFrame, classes: dict[int, str], seed: int) -> list[int]:
    """Where words fail, in this order: the model's side of the pairs shared beyond word identity (``priority``
    "contextual": pairs where neither side is a token detector first, the same pairs for both models), up to
    n - n // 4; its most active topical features (by density), up to n; more contextual pairs; then a seeded
    sample of its unshared features that are not token detectors (a token feature's word list is its label)."""
    pairs = priority["contextual"]
    topical = [int(f) for f in live.sort_values("density", ascending=False)["feature"] if classes.get(int(f)) == "topical"]
    shared = set(priority["shared"])
    rest = [int(f) for f in live["feature"] if int(f) not in shared and classes.get(int(f)) not in ("token", "dead")]
    rest = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
    chosen: list[int] = []
    for source, upto in ((pairs, n - n // 4), (topical, n), (pairs, n), (rest, n)):
        for f in source:
            if len(chosen) >= upto:
                break
            if f not in chosen:
                chosen.append(f)
    return chosen


def explain_identity(cfg: ExplainConfig, llm_backend: str, llm_model: str | None, model_dir: Path) -> dict:
    """{"settings": what the user chose that shapes a label, "inputs": the exemplars it is made from}."""
    texts = "".join(t.text for t in explainer_templates(cfg))
    record = StageRecord.load(ModelDir(model_dir).exemplars_record)
    settings = {"backend": llm_backend if cfg.labeller == "llm" else "none", "model": (llm_model or "default") if cfg.labeller == "llm" else "none", "prompt_sha": prompt_sha(texts),
                "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k in LABEL_FIELDS}}
    exemplars = {"settings": record.settings, "inputs": record.inputs} if record is not None else None
    return {"settings": settings, "inputs": {"exemplars": exemplars}}


def load_profiles(model_dir: Path, features: list[int]) -> dict:
    """The features' lexical profiles (computed from the training windows when the file is missing)."""
    from autointerp.exemplars.profile import compute_profiles, read_profiles, write_profiles

    model = ModelDir(model_dir)
    if not model.lexical_profile.is_file():
        run = RunDir(model.root.parent)
        docs = read_parquet(run.documents) if run.documents.is_file() else None
        write_profiles(compute_profiles(model.exemplars, docs), model.lexical_profile)
    return read_profiles(model.lexical_profile, features) if features else {}


def explain_todo(model_dir: Path, features: list[int], identity: dict, overwrite: bool) -> tuple[pd.DataFrame, list[int]]:
    """The existing table (empty when starting over) and the features still needing a label."""
    old = read_meta(model_dir).get("explain_identity")
    table = read_labels(model_dir)
    previous = StageRecord("explain", old["settings"], old["inputs"], complete=False) if old and "settings" in old else None
    if previous is None and not table.empty and not overwrite:
        raise UserError(f"{ModelDir(model_dir).labels} holds labels without a record of how they were made; pass --overwrite to relabel (or use another --run-dir)")
    if decide(previous, identity["settings"], identity["inputs"], overwrite=overwrite, where=ModelDir(model_dir).labels) is not Decision.RUN or previous is None:
        return empty_table(), list(features)  # starting over (new, overwritten, or made from other exemplars)
    ok = table["status"] == "ok"
    if "llm_label" in table.columns and identity["settings"]["settings"].get("labeller") == "llm":
        skipped = table["llm_skipped"].fillna(0).astype(bool) if "llm_skipped" in table.columns else False
        ok &= table["llm_label"].notna() | skipped  # a lexical fallback for a failed LLM label is retried
    done = set(table.loc[ok, "feature"].astype(int))
    return table, [f for f in features if f not in done]


async def run_explain(client: LLMClient | None, model_dir: Path, cfg: ExplainConfig, table: pd.DataFrame, todo: list[int], identity: dict, *, concurrency: int, label: str, score_cfg=None) -> pd.DataFrame:
    """Label ``todo`` features, writing labels.parquet every few features (so an interrupt loses little)."""
    from autointerp.eval.config import ScoreConfig
    from autointerp.explain.labels import write_candidates

    score_cfg = score_cfg or ScoreConfig()
    templates = explainer_templates(cfg)
    # the explainer and the choice among candidates see TRAINING windows only: held-out ones are never read here
    windows = await asyncio.to_thread(load_windows, ModelDir(model_dir).exemplars, todo, splits=("train",))
    profiles = await asyncio.to_thread(load_profiles, model_dir, todo)
    classes = read_classes(ModelDir(model_dir).feature_stats)
    pending: list[dict] = []
    candidates: list[dict] = []
    state = {"table": table}
    meta = read_meta(model_dir)
    if meta.get("explain_identity") != identity:  # starting over: scores of old labels are meaningless
        meta = {"explain_identity": identity, "scorers": {}}
    write_meta(model_dir, meta | {"explainer_model": client.model_name if client is not None else "lexical"})

    def flush() -> None:
        state["table"] = merge_rows(state["table"], pending)
        pending.clear()
        write_labels(model_dir, state["table"])
        if candidates:
            write_candidates(model_dir, candidates)
            candidates.clear()

    def on_done(row: dict) -> None:
        candidates.extend(row.pop("_candidates", []))
        pending.append(row)
        if len(pending) >= SAVE_EVERY:
            flush()

    try:
        await explain_features(client, templates, windows, todo, cfg, concurrency=concurrency, on_done=on_done, description=f"explain {label}",
                               profiles=profiles, score_window=(score_cfg.window_before, score_cfg.window_after), embedder=score_cfg.embedder,
                               classes=classes)
    finally:
        if pending or not ModelDir(model_dir).labels.is_file():
            flush()
    return state["table"]


async def explain_models(cfg: RunConfig, models, overwrite: bool) -> dict:
    from autointerp.llm.accounting import usage_table
    from autointerp.llm.factory import open_client

    jobs = []
    for entry in models:
        model_dir = cfg.run_path / entry.slug
        require_exemplars(model_dir)
        features = select_features(model_dir, cfg.explain)
        identity = explain_identity(cfg.explain, cfg.llm.backend, cfg.llm.model, model_dir)
        table, todo = explain_todo(model_dir, features, identity, overwrite)
        jobs.append((entry, model_dir, table, todo, identity))
    if not any(todo for *_, todo, _ in jobs):
        console.print("explain: labels are up to date (nothing to do)")
        return {}
    summaries = {}

    async def label_models(client) -> None:
        for entry, model_dir, table, todo, identity in jobs:
            if not todo and not overwrite:
                continue
            before = client.usage.copy() if client is not None else None
            started = time.perf_counter()
            done = await run_explain(client, model_dir, cfg.explain, table, todo, identity, concurrency=cfg.llm.concurrency, label=entry.slug, score_cfg=cfg.score)
            if client is not None:
                summaries[entry.slug] = store_usage(client, before, model_dir, "explain", time.perf_counter() - started, len(todo))
            store_copy_checks(model_dir, done)
            failed = int((done["status"] != "ok").sum())
            console.print(f"explain {entry.slug}: {int((done['status'] == 'ok').sum())} labelled, {failed} failed (retried on the next run){_source_note(done)}")

    if cfg.explain.labeller == "lexical":
        await label_models(None)
        return summaries
    async with open_client(cfg.llm, cfg.run_path) as client:
        await label_models(client)
        console.print(usage_table([s for s in summaries.values()], title="explain: LLM usage"))
    return summaries


def _source_note(table: pd.DataFrame) -> str:
    if "label_source" not in table.columns:
        return ""
    counts = table["label_source"].value_counts()
    skipped = int(pd.to_numeric(table["llm_skipped"], errors="coerce").fillna(0).sum()) if "llm_skipped" in table.columns else 0
    return (f"; final label from the LLM for {int(counts.get('llm', 0))}, lexical for {int(counts.get('lexical', 0))}"
            + (f" ({skipped} token features labelled by their words, no LLM call)" if skipped else ""))


def store_copy_checks(model_dir: Path, table: pd.DataFrame) -> dict:
    """How often the kept LLM label restates a shown window, and how many candidates copied the template (labels.json)."""
    from autointerp.explain.labels import read_meta as _read, write_meta as _write

    checks = {}
    if "restates_window" in table.columns:
        restates = pd.to_numeric(table["restates_window"], errors="coerce").dropna()
        checks = {"restating_rate": round(float(restates.mean()), 4) if len(restates) else None, "n_llm_labels": int(len(restates)),
                  "template_copies_rejected": int(pd.to_numeric(table.get("n_template_copies"), errors="coerce").fillna(0).sum()),
                  "n_llm_candidates": int(pd.to_numeric(table.get("n_llm_candidates"), errors="coerce").fillna(0).sum())}
        meta = _read(model_dir)
        meta["copy_checks"] = checks
        _write(model_dir, meta)
    return checks


def run(cfg: RunConfig, *, overwrite: bool = False, models=None) -> StageResult:
    """Label features of every configured model (the stage contract: ``autointerp.stages``); the result's
    detail holds each labelled model's LLM usage."""
    models = cfg.models if models is None else models
    with run_lock(cfg.run_path):
        summaries = asyncio.run(explain_models(cfg, models, overwrite))
    return StageResult("explain", tuple(summaries), tuple(m.slug for m in models if m.slug not in summaries), summaries)
