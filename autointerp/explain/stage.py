"""The explain stage: label features of each model with the secondary LLM -> ``<model>/labels.parquet``.

Resumable and idempotent: already-labelled features are skipped (failed ones retried). What shapes a label
is kept in labels.json (``explain_identity``) under the stage record's policy (``autointerp.rundir.record``):
other settings (explainer LLM, prompt text, ``[explain]`` values) are refused without ``--overwrite`` instead
of silently mixing labels made two ways; other exemplars (the SAE was retrained) mean labelling again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.config import RunConfig
from autointerp.errors import UserError
from autointerp.exemplars.feature_classes import read_classes
from autointerp.explain.config import ExplainConfig
from autointerp.explain.labels import empty_table, merge_rows, read_labels, read_meta, write_labels, write_meta
from autointerp.explain.llm.base import LLMClient
from autointerp.explain.pipeline import explain_features
from autointerp.explain.prompts import load_template
from autointerp.io import file_sha256, read_parquet
from autointerp.progress import console
from autointerp.rundir.layout import ModelDir, RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.rundir.windows import load_windows

SAVE_EVERY = 8  # features between checkpoint writes of labels.parquet
# [explain] fields that shape a label (n_features, select and seed only choose which features get one)
LABEL_FIELDS = ("n_top", "n_quantile", "window_before", "window_after", "max_tokens", "max_label_chars", "chat",
                "labeller", "n_candidates", "temperature", "lexical", "choose_by", "llm_for_tokens")


def check_inputs(model_dir: Path) -> None:
    """Exemplars must exist and come from the SAE now in ``<model>/sae`` (else labels describe other features)."""
    model = ModelDir(model_dir)
    if not model.exemplars.is_file():
        raise UserError(f"no exemplars in {model_dir}; run `autointerp exemplars` first")
    record = StageRecord.load(model.exemplars_record)
    if record is not None and model.sae.weights.is_file():
        mined_with = record.inputs.get("sae_sha256")
        if mined_with and mined_with != file_sha256(model.sae.weights):
            raise UserError(f"the exemplars in {model_dir} were mined from a different SAE than {model.sae_dir} holds now; run `autointerp exemplars --overwrite` first")


def select_features(model_dir: Path, cfg: ExplainConfig) -> list[int]:
    """Live features with held-out activating windows, chosen by ``[explain] select`` (seeded).

    ``contextual`` spends the LLM where words fail: both sides of the pairs shared beyond word identity, the
    most active topical features, then unshared ones (``contextual_features``); ``matched`` takes the features
    of the best activation-matched shared pairs. Both read the run's comparison (``autointerp compare`` must
    have run): labelling both sides of the same pairs lets the label matching be checked against the
    activation matching.
    """
    stats = read_parquet(ModelDir(model_dir).feature_stats, columns=["feature", "density", "dead", "n_contexts_active"])
    live = stats[(~stats["dead"]) & (stats["n_contexts_active"] >= 2)]
    live_ids = {int(f) for f in live["feature"]}
    if cfg.select in ("contextual", "matched"):
        classes = read_classes(ModelDir(model_dir).feature_stats)
        if cfg.select == "contextual" and classes:
            chosen = contextual_features(model_dir.parent, model_dir.name, cfg.n_features, live, classes, cfg.seed)
        else:  # no classes (sequence level, or mined before them): the best shared pairs
            chosen = matched_features(model_dir.parent, model_dir.name, cfg.n_features)
        return sorted(set(chosen) & live_ids)
    if cfg.select == "all" or cfg.n_features >= len(live):
        return sorted(live_ids)
    if cfg.select == "top_density":
        return sorted(int(f) for f in live.nlargest(cfg.n_features, "density")["feature"])
    if cfg.select != "random":
        raise UserError(f"[explain] select = {cfg.select!r} is unknown; use contextual, matched, random, top_density or all")
    rng = np.random.default_rng(cfg.seed)
    return sorted(int(f) for f in rng.choice(live["feature"].to_numpy(), size=cfg.n_features, replace=False))


def _pair_matches(run_dir: Path, slug: str) -> tuple[pd.DataFrame, str, str]:
    """The activation matches of the first comparison ``slug`` is in, which side it is ("feature_a"/"feature_b")
    and the other model's slug."""
    for pair in RunDir(run_dir).pairs():
        a, b = pair.names
        if slug not in (a, b) or not pair.matches.is_file():
            continue
        m = read_parquet(pair.matches)
        return m[m["method"].isin(["activation", "both"])], "feature_a" if slug == a else "feature_b", b if slug == a else a
    raise UserError(f"[explain] select labels the best activation-matched pairs, but {run_dir} has no comparison for {slug} yet; run `autointerp compare` first (or set select = \"random\")")


def matched_features(run_dir: Path, slug: str, n: int) -> list[int]:
    """``slug``'s features in the ``n`` highest-correlation shared pairs of the first comparison it is in
    (topped up with the best unshared pairs when fewer than ``n`` are shared, e.g. on a tiny corpus)."""
    m, side, _ = _pair_matches(run_dir, slug)
    m = m.sort_values(["shared", "activation_corr"], ascending=False).head(n)
    return [int(f) for f in m[side]]  # shared pairs first, then the best of the rest


def contextual_features(run_dir: Path, slug: str, n: int, live: pd.DataFrame, classes: dict[int, str], seed: int) -> list[int]:
    """Where words fail, in this order: ``slug``'s side of the pairs shared beyond word identity (matches kind
    "contextual", highest correlation beyond words first; the same pairs for both models), up to n - n // 4;
    its most active topical features (by density), up to n; more contextual pairs; then a seeded sample of its
    unshared features that are not token detectors (a token feature's word list is its label). Pairs where neither
    side is a token detector come first, then those with one."""
    m, side, other = _pair_matches(run_dir, slug)
    order = "contextual_corr" if "contextual_corr" in m.columns else "activation_corr"
    beyond = m[m["shared"] & (m.get("kind", pd.Series("", index=m.index)) == "contextual")].copy()
    # pairs of non-token features first: a token feature's label is its word list (no LLM), so a pair of two
    # token detectors that also agree beyond words comes last (the other model's classes keep both sides in step)
    others = read_classes(ModelDir(run_dir / other).feature_stats)
    classes_of = {"feature_a": classes if side == "feature_a" else others, "feature_b": classes if side == "feature_b" else others}
    beyond["_tokens"] = sum((beyond[col].map(cl) == "token").astype(int) for col, cl in classes_of.items())
    beyond = beyond.sort_values(["_tokens", order], ascending=[True, False], kind="stable")
    pairs = [int(f) for f in beyond[side]]
    topical = [int(f) for f in live.sort_values("density", ascending=False)["feature"] if classes.get(int(f)) == "topical"]
    shared = {int(f) for f in m.loc[m["shared"], side]}
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


def prompt_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def explain_identity(cfg: ExplainConfig, llm_backend: str, llm_model: str | None, model_dir: Path) -> dict:
    """{"settings": what the user chose that shapes a label, "inputs": the exemplars it is made from}."""
    texts = "".join(t.text for t in explainer_templates(cfg))
    record = StageRecord.load(ModelDir(model_dir).exemplars_record)
    settings = {"backend": llm_backend if cfg.labeller == "llm" else "none", "model": (llm_model or "default") if cfg.labeller == "llm" else "none", "prompt_sha": prompt_sha(texts),
                "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k in LABEL_FIELDS}}
    exemplars = {"settings": record.settings, "inputs": record.inputs} if record is not None else None
    return {"settings": settings, "inputs": {"exemplars": exemplars}}


def explainer_templates(cfg: ExplainConfig) -> list:
    """The prompt variants of the LLM candidates: the plain explainer, then the one shown the lexical profile."""
    return [load_template("explainer", cfg.prompts_dir), load_template("explainer_profile", cfg.prompts_dir)]


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
    from autointerp.explain.llm.accounting import usage_table
    from autointerp.explain.llm.factory import open_client

    jobs = []
    for entry in models:
        model_dir = cfg.run_path / entry.slug
        check_inputs(model_dir)
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


_ADDITIVE_USAGE = ("prompt_tokens", "completion_tokens", "cost_usd", "calls", "cached_calls", "retries", "failed_calls",
                   "requests_sent", "seconds", "n_features")


def _settle(client):
    """The response cache's ledger (``CachedClient.settle``) somewhere inside the client's wrappers."""
    from autointerp.explain.llm.base import Usage

    layer = client
    while layer is not None:
        if hasattr(layer, "settle"):
            return layer.settle()
        layer = getattr(layer, "inner", None)
    return Usage()


def store_usage(client, before, model_dir, stage_name: str, seconds: float, n_features: int) -> dict:
    """This invocation's LLM usage (returned, for the console), added to the stage's totals in labels.json."""
    from autointerp.explain.llm.accounting import usage_summary

    delta = client.usage.copy()
    for name in ("prompt_tokens", "completion_tokens", "cost_usd", "calls", "cached_calls", "retries", "failed_calls"):
        setattr(delta, name, getattr(delta, name) - getattr(before, name))
    recovered = _settle(client)  # calls paid by an interrupted run (kill -9) and served from the cache now: counted once, here
    delta.prompt_tokens += recovered.prompt_tokens
    delta.completion_tokens += recovered.completion_tokens
    delta.cost_usd += client.price.cost(recovered) if getattr(client, "price", None) is not None else 0.0
    summary = usage_summary(delta, model=client.model_name, backend=client.backend, price=client.price)
    summary |= {"seconds": round(seconds, 2), "n_features": n_features}
    meta = read_meta(model_dir)
    previous = meta.setdefault("usage", {}).get(stage_name)
    total = dict(summary)
    if previous and (previous.get("model"), previous.get("backend")) == (summary["model"], summary["backend"]):
        # labels.json keeps totals over every invocation since the labels were started: a re-run that only
        # retries failed features must not make the recorded cost of the labels look like zero
        for key in _ADDITIVE_USAGE:
            total[key] = round(previous.get(key, 0) + summary[key], 6)
    meta["usage"][stage_name] = total
    meta["explainer_model"] = meta.get("explainer_model") or client.model_name
    write_meta(model_dir, meta)
    return summary


def run(cfg: RunConfig, *, overwrite: bool = False, models=None) -> StageResult:
    """Label features of every configured model (the stage contract: ``autointerp.stages``); the result's
    detail holds each labelled model's LLM usage."""
    models = cfg.models if models is None else models
    with run_lock(cfg.run_path):
        summaries = asyncio.run(explain_models(cfg, models, overwrite))
    return StageResult("explain", tuple(summaries), tuple(m.slug for m in models if m.slug not in summaries), summaries)
