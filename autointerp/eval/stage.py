"""The score stage: each scorer on the labels of each model, next to its shuffled-label baseline.

Resumable and idempotent: scores are only computed where ``status_<scorer>`` is not "ok" under the same
scorer identity (settings, prompt, LLM); the identity of each scorer is kept in labels.json.

Every scorer scores each label kind twice: against random negatives (``score_S``, ``lexical_S``, ``baseline_S``,
``final_S``) and against hard negatives (the same columns with ``_hard``; ``autointerp.eval.scorers.base``).
``n_hard_negatives`` counts a feature's held-out hard negatives; where it is 0 the hard columns are NaN and
``hard_negatives_missing`` says why. Scores made before hard negatives existed (no ``score_S_hard`` column) are
redone.

The level scorers work at comes from the model's own harvest record (``level`` in harvest.json; exemplars.json
when the harvest is gone), not from a setting: at sequence level every scorer predicts or classifies whole
documents (``autointerp.eval.scorers.base``). labels.json records it (``score_level`` and per scorer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autointerp.config import RunConfig
from autointerp.errors import UserError
from autointerp.eval.config import ScoreConfig
from autointerp.eval.scorers import LEVELS, SCORERS, make_scorer
from autointerp.eval.pipeline import add_final_scores, baseline_labels, score_features
from autointerp.exemplars.kinds import HARD_NEGATIVE
from autointerp.exemplars.current import require_exemplars
from autointerp.explain.labels import lexical_labels, llm_labels, read_labels, read_meta, store_usage, write_labels, write_meta
from autointerp.explain.prompts import load_template, prompt_sha
from autointerp.io import read_json
from autointerp.llm.base import LLMClient, Usage
from autointerp.progress import console
from autointerp.rundir.layout import ModelDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.rundir.windows import load_windows

SAVE_EVERY = 8  # features between checkpoint writes of labels.parquet


def scoring_level(model_dir: Path) -> str:
    """The level the model was harvested at ("token" or "sequence"): harvest.json's identity, else exemplars.json
    (a run whose harvest was deleted after mining), else "token"."""
    files = ModelDir(Path(model_dir))
    for path, read in ((files.manifest, lambda d: (d.get("identity") or {}).get("level")), (files.exemplars_meta, lambda d: d.get("level"))):
        if not path.is_file():
            continue
        try:
            level = read(read_json(path))
        except (OSError, ValueError, AttributeError):
            continue
        if level in LEVELS:
            return level
    return "token"


def scorer_identity(name: str, cfg: ScoreConfig, prompts_dir: str | None, llm_backend: str, llm_model: str | None, level: str = "token") -> dict:
    """What makes scores comparable: settings, shuffled baseline, the level's prompt and the LLM (token-level
    identities carry no ``level`` key, so scores recorded before levels existed stay valid)."""
    cls = SCORERS[name]
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("scorers", "shuffled_baseline")}
    identity = {"settings": settings, "shuffled_baseline": cfg.shuffled_baseline}
    if level != "token":
        identity["level"] = level
    if cls.needs_llm:
        identity |= {"backend": llm_backend, "model": llm_model or "default", "prompt_sha": prompt_sha(load_template(cls.template_for(level), prompts_dir).text)}
    return identity


@dataclass
class ScorePlan:
    """What one model's score stage will do, decided once (the stage record's policy per scorer)."""

    table: pd.DataFrame  # labels.parquet without the columns of scores about to be redone
    labels: dict[int, str]  # the ok LLM labels
    baselines: dict[int, str]  # each feature's shuffled-in (LLM) label
    lexical: dict[int, str]  # the lexical labels (the baseline an LLM label must beat to say more than the words)
    word: dict[int, str]  # the word-only labels (what a label must beat against hard negatives to say when the word fires)
    todo: dict[str, list[int]]  # scorer -> features still to score


def plan_scores(model_dir: Path, score_cfg: ScoreConfig, names: list[str], identities: dict[str, dict], overwrite: bool) -> ScorePlan:
    """Per scorer: reuse ok scores made the same way, redo all when ``--overwrite``, refuse other settings."""
    table = read_labels(model_dir)
    recorded = read_meta(model_dir).get("scorers") or {}
    labels, lexical = llm_labels(table), lexical_labels(table)
    baselines = baseline_labels(labels or lexical, score_cfg.seed) if score_cfg.shuffled_baseline else {}
    todo = {}
    for name in names:
        old = recorded.get(name, {}).get("identity")
        previous = StageRecord(f"score {name}", old, {}, complete=False) if old is not None else None
        if decide(previous, identities[name], {}, overwrite=overwrite, where=f"the {name} scores in {ModelDir(model_dir).labels}") is Decision.REDO:
            table = table.drop(columns=[c for c in table.columns if c.endswith((f"_{name}", f"_{name}_hard"))])
        status = table[f"status_{name}"] if f"status_{name}" in table.columns else pd.Series([None] * len(table), index=table.index)
        complete = f"score_{name}_hard" in table.columns and ("word_label" not in table.columns or f"word_{name}" in table.columns)
        done = set(table.loc[status == "ok", "feature"].astype(int)) if complete else set()  # scored before a kind existed: redone
        todo[name] = [f for f in sorted(set(labels) | set(lexical)) if f not in done]
    return ScorePlan(table, labels, baselines, lexical, lexical_labels(table, "word_label"), todo)


async def run_score(client: LLMClient | None, model_dir: Path, plan: ScorePlan, score_cfg: ScoreConfig, prompts_dir: str | None, names: list[str], identities: dict[str, dict], *, concurrency: int, label: str, level: str = "token") -> pd.DataFrame:
    """Run each scorer on the ok labels that lack an ok score under the same identity (own + baseline label)."""
    table, labels, baselines = plan.table, plan.labels, plan.baselines
    meta = read_meta(model_dir)
    meta.setdefault("scorers", {})
    meta["score_level"] = level
    meta.setdefault("definitions", {}).update({f"score_{n}": cls.describe(level) for n, cls in SCORERS.items()} | HARD_DEFINITIONS)
    needed = sorted({f for todo in plan.todo.values() for f in todo})
    windows = await asyncio.to_thread(load_windows, ModelDir(model_dir).exemplars, needed, splits=("test",)) if needed else {}  # scorers: held-out only
    n_hard = {f: sum(w.kind == HARD_NEGATIVE for w in ws) for f, ws in windows.items()}
    missing = hard_negatives_missing(model_dir, level)
    for name in names:
        todo = plan.todo[name]
        meta["scorers"][name] = {"identity": identities[name], "definition": SCORERS[name].describe(level), "level": level}
        if not todo:
            continue
        scorer = make_scorer(name, score_cfg, prompts_dir, level)
        updates: list[dict] = []

        def flush() -> None:
            nonlocal table
            table = add_final_scores(_apply_updates(table, updates), name)
            updates.clear()
            write_labels(model_dir, table)

        def on_done(row: dict) -> None:
            count = n_hard.get(row["feature"], 0)
            updates.append(row | {"n_hard_negatives": count, "hard_negatives_missing": None if count else missing})
            if len(updates) >= SAVE_EVERY:
                flush()

        try:
            await score_features(client if scorer.needs_llm else None, scorer, windows, labels, baselines, todo, concurrency=concurrency, on_done=on_done, description=f"{name} {label}", lexical=plan.lexical,
                                 word=plan.word)
        finally:
            flush()
            write_meta(model_dir, meta)
    write_meta(model_dir, meta)
    return table


HARD_DEFINITIONS = {
    "score_<S>_hard": "each scorer's score (and lexical_<S>_hard, baseline_<S>_hard, final_<S>_hard for the other label kinds) "
                      "with the feature's held-out hard negatives (windows holding its main words where it does not fire) in "
                      "place of the random non-activating windows; NaN when it has none",
    "n_hard_negatives": "held-out hard-negative windows of the feature in exemplars.parquet",
    "hard_negatives_missing": "why a feature with n_hard_negatives = 0 has none (its hard-negative scores are NaN, not chance)",
}


def hard_negatives_missing(model_dir: Path, level: str) -> str:
    """Why a feature of this model has no hard negatives to be scored against."""
    if level == "sequence":
        return "sequence level: hard negatives are mined at token level only"
    files = ModelDir(Path(model_dir))
    try:
        mined = (read_json(files.exemplars_meta).get("hard_negatives") or {}).get("mined")
    except (OSError, ValueError, AttributeError):
        mined = None
    if not mined:
        return "exemplars mined before hard negatives existed: run `autointerp exemplars --overwrite`, then `autointerp score --overwrite`"
    return "none in the harvest: the feature fires wherever its main words occur, or they occur in no other context"


def _apply_updates(table: pd.DataFrame, updates: list[dict]) -> pd.DataFrame:
    if not updates:
        return table
    table = table.set_index("feature", drop=False)
    for row in updates:
        usage: Usage = row.pop("_usage", Usage())
        feature = row["feature"]
        for key, value in row.items():
            if key == "feature":
                continue
            if key not in table.columns:
                table[key] = None if key.startswith(("status_", "error_", "hard_negatives_missing")) else math.nan
            table.at[feature, key] = value
        table.at[feature, "prompt_tokens"] = int(table.at[feature, "prompt_tokens"]) + usage.prompt_tokens
        table.at[feature, "completion_tokens"] = int(table.at[feature, "completion_tokens"]) + usage.completion_tokens
        table.at[feature, "cost_usd"] = float(table.at[feature, "cost_usd"]) + usage.cost_usd
    return table.reset_index(drop=True)


async def score_models_async(cfg: RunConfig, models, names: list[str], overwrite: bool) -> dict:
    from autointerp.llm.accounting import usage_table
    from autointerp.llm.factory import open_client

    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise UserError(f"unknown scorer(s) {', '.join(unknown)}; choose from {', '.join(SCORERS)}")
    jobs = []
    for entry in models:
        model_dir = cfg.run_path / entry.slug
        if not ModelDir(model_dir).labels.is_file():
            raise UserError(f"no labels in {model_dir}; run `autointerp explain` first")
        require_exemplars(model_dir)
        level = scoring_level(model_dir)
        identities = {n: scorer_identity(n, cfg.score, cfg.explain.prompts_dir, cfg.llm.backend, cfg.llm.model, level) for n in names}
        jobs.append((entry, model_dir, level, identities, plan_scores(model_dir, cfg.score, names, identities, overwrite)))
    llm_work = any(plan.todo[n] for *_, plan in jobs for n in names if SCORERS[n].needs_llm)
    if not any(plan.todo[n] for *_, plan in jobs for n in names):
        console.print("score: scores are up to date (nothing to do)")
        return {}
    summaries = {}

    async def score_models(client) -> None:
        for entry, model_dir, level, identities, plan in jobs:
            if not any(plan.todo.values()):
                continue
            before = client.usage.copy() if client is not None else None
            started = time.perf_counter()
            table = await run_score(client, model_dir, plan, cfg.score, cfg.explain.prompts_dir, names, identities, concurrency=cfg.llm.concurrency, label=entry.slug, level=level)
            summaries[entry.slug] = {} if client is None else store_usage(client, before, model_dir, "score", time.perf_counter() - started, len(table))
            console.print(_score_line(entry.slug, table, names, level))

    if llm_work:
        async with open_client(cfg.llm, cfg.run_path) as client:
            await score_models(client)
            console.print(usage_table(list(summaries.values()), title="score: LLM usage"))
    else:
        await score_models(None)
    return summaries


def _score_line(slug: str, table, names: list[str], level: str = "token"):
    """Per scorer: LLM / lexical / shuffled (/ final) mean held-out scores, and whether the LLM beats lexical."""
    from rich.table import Table

    from autointerp.eval.paired import compare_kinds

    scope = "whole documents (sequence level)" if level == "sequence" else "token level"
    out = Table(title=f"score {slug}: mean held-out score per label kind, {scope}")
    for col in ("scorer", "llm", "lexical", "shuffled", "final", "LLM > lexical", "Wilcoxon p", "rank-biserial r"):
        out.add_column(col)
    verdicts = []
    for n in names:
        if f"score_{n}" not in table.columns:
            continue
        for column, title in ((n, n), (f"{n}_hard", f"{n} vs hard neg.")):
            c = compare_kinds(table, column, title)
            if not any(c.counts.values()):
                continue
            out.add_row(title, *(f"{c.means[k]:.3f}" for k in ("llm", "lexical", "shuffled", "final")),
                        f"{c.llm_beats_lexical:.0%}" if c.n else "-", f"{c.p_value:.3g}", f"{c.effect_size:+.2f}")
            verdicts.append(c.verdict())
    from rich.console import Group

    return Group(out, *verdicts)


def run(cfg: RunConfig, *, overwrite: bool = False, models=None) -> StageResult:
    """Score the labels of every configured model with ``[score] scorers`` (the stage contract:
    ``autointerp.stages``); the result's detail holds each scored model's LLM usage."""
    models = cfg.models if models is None else models
    with run_lock(cfg.run_path):
        summaries = asyncio.run(score_models_async(cfg, models, list(cfg.score.scorers), overwrite))
    return StageResult("score", tuple(summaries), tuple(m.slug for m in models if m.slug not in summaries), summaries)


