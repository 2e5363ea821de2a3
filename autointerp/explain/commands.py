"""``autointerp explain`` and ``autointerp score`` (and ``explain_all`` / ``score_all`` for ``autointerp run``).

explain: label features of each configured model with the secondary LLM -> ``<model>/labels.parquet``.
score: score existing labels with the chosen scorers, each next to a shuffled-label baseline, WITHOUT
re-explaining (``--scorer embedding`` needs no LLM at all). Both resume and are no-ops when up to date.
Heavy imports stay inside functions so ``autointerp --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, ModelsOpt, NameOpt, OverwriteOpt, RunDirOpt, friendly_errors, load_run_config, select_models, with_flags
from autointerp.config import RunConfig
from autointerp.errors import UserError
from autointerp.progress import console

BackendOpt = Annotated[Optional[str], typer.Option("--backend", help="LLM backend: local (in-process, default) or openai (any OpenAI-compatible server).")]
LLMModelOpt = Annotated[Optional[str], typer.Option("--llm-model", help="Explainer/scorer LLM (local: model spec; openai: the server's model name).")]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="Requests / features in flight at once.")]
NFeaturesOpt = Annotated[Optional[int], typer.Option("--n-features", help="Features labelled per model.")]
ScorerOpt = Annotated[Optional[list[str]], typer.Option("--scorer", "-s", help="Scorer to run (repeatable): simulation, detection, fuzzing, embedding.")]


def _with_llm_overrides(cfg: RunConfig, backend, llm_model, base_url, concurrency) -> RunConfig:
    cfg.llm = with_flags(cfg.llm, backend=backend, model=llm_model, base_url=base_url, concurrency=concurrency)
    return cfg


async def _explain_async(cfg: RunConfig, models, overwrite: bool) -> dict:
    from autointerp.explain import stage
    from autointerp.explain.llm.accounting import usage_table
    from autointerp.explain.llm.factory import open_client

    jobs = []
    for entry in models:
        model_dir = cfg.run_path / entry.slug
        stage.check_inputs(model_dir)
        features = stage.select_features(model_dir, cfg.explain)
        identity = stage.explain_identity(cfg.explain, cfg.llm.backend, cfg.llm.model, model_dir)
        table, todo = stage.explain_todo(model_dir, features, identity, overwrite)
        jobs.append((entry, model_dir, table, todo, identity))
    if not any(todo for *_, todo, _ in jobs):
        console.print("explain: labels are up to date (nothing to do)")
        return {}
    summaries = {}
    async with open_client(cfg.llm, cfg.run_path) as client:
        for entry, model_dir, table, todo, identity in jobs:
            if not todo and not overwrite:
                continue
            before = client.usage.copy()
            started = time.perf_counter()
            done = await stage.run_explain(client, model_dir, cfg.explain, table, todo, identity, concurrency=cfg.llm.concurrency, label=entry.slug)
            summaries[entry.slug] = _store_usage(client, before, model_dir, "explain", time.perf_counter() - started, len(todo))
            failed = int((done["status"] != "ok").sum())
            console.print(f"explain {entry.slug}: {int((done['status'] == 'ok').sum())} labelled, {failed} failed (retried on the next run)")
        console.print(usage_table([s for s in summaries.values()], title="explain: LLM usage"))
    return summaries


def _store_usage(client, before, model_dir, stage_name: str, seconds: float, n_features: int) -> dict:
    from autointerp.explain import stage
    from autointerp.explain.llm.accounting import usage_summary

    delta = client.usage.copy()
    for name in ("prompt_tokens", "completion_tokens", "cost_usd", "calls", "cached_calls", "retries", "failed_calls"):
        setattr(delta, name, getattr(delta, name) - getattr(before, name))
    summary = usage_summary(delta, model=client.model_name, backend=client.backend, price=client.price)
    summary |= {"seconds": round(seconds, 2), "n_features": n_features}
    meta = stage.load_meta(model_dir)
    meta.setdefault("usage", {})[stage_name] = summary
    meta["explainer_model"] = meta.get("explainer_model") or client.model_name
    stage.save_meta(model_dir, meta)
    return summary


async def _score_async(cfg: RunConfig, models, names: list[str], overwrite: bool) -> dict:
    from autointerp.explain import stage
    from autointerp.explain.labels import LABELS_FILE
    from autointerp.explain.llm.accounting import usage_table
    from autointerp.explain.llm.factory import open_client
    from autointerp.explain.scorers import SCORERS

    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise UserError(f"unknown scorer(s) {', '.join(unknown)}; choose from {', '.join(SCORERS)}")
    identities = {n: stage.scorer_identity(n, cfg.score, cfg.explain.prompts_dir, cfg.llm.backend, cfg.llm.model) for n in names}
    jobs = []
    for entry in models:
        model_dir = cfg.run_path / entry.slug
        if not (model_dir / LABELS_FILE).is_file():
            raise UserError(f"no labels in {model_dir}; run `autointerp explain` first")
        stage.check_inputs(model_dir)
        _, _, _, plans = stage.score_plan(model_dir, cfg.score, names, identities, overwrite)
        jobs.append((entry, model_dir, plans))
    llm_work = any(plans[n] for _, _, plans in jobs for n in names if SCORERS[n].needs_llm)
    if not any(plans[n] for _, _, plans in jobs for n in names):
        console.print("score: scores are up to date (nothing to do)")
        return {}
    summaries = {}

    async def score_models(client) -> None:
        for entry, model_dir, plans in jobs:
            if not any(plans.values()):
                continue
            before = client.usage.copy() if client is not None else None
            started = time.perf_counter()
            table = await stage.run_score(client, model_dir, cfg.score, cfg.explain.prompts_dir, names, identities, overwrite=overwrite, concurrency=cfg.llm.concurrency, label=entry.slug)
            if client is not None:
                summaries[entry.slug] = _store_usage(client, before, model_dir, "score", time.perf_counter() - started, len(table))
            console.print(_score_line(entry.slug, table, names))

    if llm_work:
        async with open_client(cfg.llm, cfg.run_path) as client:
            await score_models(client)
            console.print(usage_table(list(summaries.values()), title="score: LLM usage"))
    else:
        await score_models(None)
    return summaries


def _score_line(slug: str, table, names: list[str]) -> str:
    parts = []
    for n in names:
        if f"score_{n}" in table.columns:
            parts.append(f"{n} {table[f'score_{n}'].mean():.3f} (baseline {table.get(f'baseline_{n}', table[f'score_{n}'] * float('nan')).mean():.3f})")
    return f"score {slug}: mean " + ", ".join(parts)


def explain_all(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Label features of every configured model (used by ``autointerp run``)."""
    return asyncio.run(_explain_async(cfg, cfg.models, overwrite))


def score_all(cfg: RunConfig, overwrite: bool = False, scorers: list[str] | None = None) -> dict:
    """Score the labels of every configured model with ``[score] scorers`` (used by ``autointerp run``)."""
    return asyncio.run(_score_async(cfg, cfg.models, list(scorers or cfg.score.scorers), overwrite))


@friendly_errors
def explain(
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, model: ModelsOpt = None,
    backend: BackendOpt = None, llm_model: LLMModelOpt = None, base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None, n_features: NFeaturesOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Label SAE features with a secondary LLM (default: the embedded Gemma, in-process) -> <model>/labels.parquet."""
    cfg = _with_llm_overrides(load_run_config(config, run_dir, name), backend, llm_model, base_url, concurrency)
    cfg.explain = with_flags(cfg.explain, n_features=n_features)
    asyncio.run(_explain_async(cfg, select_models(cfg, model), overwrite))


@friendly_errors
def score(
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, model: ModelsOpt = None,
    scorer: ScorerOpt = None, backend: BackendOpt = None, llm_model: LLMModelOpt = None, base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Score existing labels (no re-explaining), each next to a shuffled-label baseline; `--scorer embedding` needs no LLM."""
    cfg = _with_llm_overrides(load_run_config(config, run_dir, name), backend, llm_model, base_url, concurrency)
    asyncio.run(_score_async(cfg, select_models(cfg, model), list(scorer or cfg.score.scorers), overwrite))
