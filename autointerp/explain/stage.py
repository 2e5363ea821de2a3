"""The explain and score stages for one model directory: inputs checked, work chosen, tables written.

Resumable and idempotent: already-labelled features are skipped (failed ones retried), scores are only
computed where ``status_<scorer>`` is not "ok", and the identity of everything that shapes a label
(explainer model, prompt text, settings, the SAE behind the exemplars) is kept in labels.json; a change
needs ``--overwrite`` instead of silently mixing labels made two different ways.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.errors import UserError
from autointerp.explain.config import ExplainConfig, ScoreConfig
from autointerp.explain.explainer import ExplainSettings
from autointerp.explain.labels import DEFINITIONS, LABELS_FILE, LABELS_META, empty_table, merge_rows, read_labels, write_labels
from autointerp.explain.llm.base import LLMClient, Usage
from autointerp.explain.pipeline import baseline_labels, explain_features, score_features
from autointerp.explain.prompts import load_template
from autointerp.explain.scorers import SCORERS, ScoreSettings, make_scorer
from autointerp.explain.windows import load_windows
from autointerp.io import file_sha256, read_json, write_json

SAVE_EVERY = 8  # features between checkpoint writes of labels.parquet


def check_inputs(model_dir: Path) -> None:
    """Exemplars must exist and come from the SAE now in ``<model>/sae`` (else labels describe other features)."""
    from autointerp.training.sae import WEIGHTS_FILE

    if not (model_dir / "exemplars.parquet").is_file():
        raise UserError(f"no exemplars in {model_dir}; run `autointerp exemplars` first")
    record, weights = model_dir / "exemplars_stage.json", model_dir / "sae" / WEIGHTS_FILE
    if record.is_file() and weights.is_file():
        mined_with = read_json(record).get("identity", {}).get("sae_sha256")
        current = file_sha256(weights)
        if mined_with and mined_with != current:
            raise UserError(f"the exemplars in {model_dir} were mined from a different SAE than {weights.parent} holds now; run `autointerp exemplars --overwrite` first")


def select_features(model_dir: Path, cfg: ExplainConfig) -> list[int]:
    """Live features with held-out activating windows, chosen by ``[explain] select`` (seeded).

    ``matched`` takes the features of the best activation-matched shared pairs from the run's comparison
    (``autointerp compare`` must have run): labelling both sides of the same pairs is what lets the label
    matching be checked against the activation matching.
    """
    stats = pd.read_parquet(model_dir / "feature_stats.parquet", columns=["feature", "density", "dead", "n_contexts_active"])
    live = stats[(~stats["dead"]) & (stats["n_contexts_active"] >= 2)]
    if cfg.select == "matched":
        chosen = matched_features(model_dir.parent, model_dir.name, cfg.n_features)
        return sorted(set(chosen) & {int(f) for f in live["feature"]})
    if cfg.select == "all" or cfg.n_features >= len(live):
        return sorted(int(f) for f in live["feature"])
    if cfg.select == "top_density":
        return sorted(int(f) for f in live.nlargest(cfg.n_features, "density")["feature"])
    if cfg.select != "random":
        raise UserError(f"[explain] select = {cfg.select!r} is unknown; use matched, random, top_density or all")
    rng = np.random.default_rng(cfg.seed)
    return sorted(int(f) for f in rng.choice(live["feature"].to_numpy(), size=cfg.n_features, replace=False))


def matched_features(run_dir: Path, slug: str, n: int) -> list[int]:
    """``slug``'s features in the ``n`` highest-correlation shared pairs of the first comparison it is in
    (topped up with the best unshared pairs when fewer than ``n`` are shared, e.g. on a tiny corpus)."""
    for pair_dir in sorted((run_dir / "compare").glob("*__*")):
        a, _, b = pair_dir.name.partition("__")
        if slug not in (a, b) or not (pair_dir / "matches.parquet").is_file():
            continue
        m = pd.read_parquet(pair_dir / "matches.parquet", columns=["feature_a", "feature_b", "method", "activation_corr", "shared"])
        m = m[m["method"].isin(["activation", "both"])].sort_values(["shared", "activation_corr"], ascending=False).head(n)
        return [int(f) for f in m["feature_a" if slug == a else "feature_b"]]  # shared pairs first, then the best of the rest
    raise UserError(f"[explain] select = \"matched\" labels the best activation-matched pairs, but {run_dir} has no comparison for {slug} yet; run `autointerp compare` first (or set select = \"random\")")


def explain_settings(cfg: ExplainConfig) -> ExplainSettings:
    return ExplainSettings(n_top=cfg.n_top, n_quantile=cfg.n_quantile, window_before=cfg.window_before, window_after=cfg.window_after, max_tokens=cfg.max_tokens, max_label_chars=cfg.max_label_chars, chat=cfg.chat)


def score_settings(cfg: ScoreConfig) -> ScoreSettings:
    names = {f.name for f in dataclasses.fields(ScoreSettings)}
    return ScoreSettings(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def explain_identity(cfg: ExplainConfig, llm_backend: str, llm_model: str | None, model_dir: Path) -> dict:
    template = load_template("explainer", cfg.prompts_dir)
    record = model_dir / "exemplars_stage.json"
    return {
        "backend": llm_backend, "model": llm_model or "default", "prompt_sha": _sha(template.text),
        "settings": dataclasses.asdict(explain_settings(cfg)),
        "exemplars": read_json(record).get("identity") if record.is_file() else None,
    }


def scorer_identity(name: str, cfg: ScoreConfig, prompts_dir: str | None, llm_backend: str, llm_model: str | None) -> dict:
    cls = SCORERS[name]
    identity = {"settings": dataclasses.asdict(score_settings(cfg)), "shuffled_baseline": cfg.shuffled_baseline}
    if cls.needs_llm:
        identity |= {"backend": llm_backend, "model": llm_model or "default", "prompt_sha": _sha(load_template(cls.template_name, prompts_dir).text)}
    return identity


def load_meta(model_dir: Path) -> dict:
    path = model_dir / LABELS_META
    return read_json(path) if path.is_file() else {}


def save_meta(model_dir: Path, meta: dict) -> None:
    meta["definitions"] = DEFINITIONS | {f"score_{n}": cls.definition for n, cls in SCORERS.items()}
    write_json(model_dir / LABELS_META, meta)


def explain_todo(model_dir: Path, features: list[int], identity: dict, overwrite: bool) -> tuple[pd.DataFrame, list[int]]:
    """The existing table (empty when starting over) and the features still needing a label."""
    meta = load_meta(model_dir)
    table = read_labels(model_dir)
    if overwrite or (meta.get("explain_identity") is None and table.empty):
        return empty_table(), list(features)
    if meta.get("explain_identity") != identity:
        changed = [k for k in identity if (meta.get("explain_identity") or {}).get(k) != identity[k]]
        raise UserError(f"{model_dir / LABELS_FILE} holds labels made with different {', '.join(changed)}; pass --overwrite to relabel (or use another --run-dir)")
    done = set(table.loc[table["status"] == "ok", "feature"].astype(int))
    return table, [f for f in features if f not in done]


async def run_explain(client: LLMClient, model_dir: Path, cfg: ExplainConfig, table: pd.DataFrame, todo: list[int], identity: dict, *, concurrency: int, label: str) -> pd.DataFrame:
    """Label ``todo`` features, writing labels.parquet every few features (so an interrupt loses little)."""
    template = load_template("explainer", cfg.prompts_dir)
    windows = await asyncio.to_thread(load_windows, model_dir / "exemplars.parquet", todo)
    pending: list[dict] = []
    state = {"table": table}
    meta = load_meta(model_dir)
    if meta.get("explain_identity") != identity:  # starting over: scores of old labels are meaningless
        meta = {"explain_identity": identity, "scorers": {}}
    save_meta(model_dir, meta | {"explainer_model": client.model_name})

    def flush() -> None:
        state["table"] = merge_rows(state["table"], pending)
        pending.clear()
        write_labels(model_dir, state["table"])

    def on_done(row: dict) -> None:
        pending.append(row)
        if len(pending) >= SAVE_EVERY:
            flush()

    try:
        await explain_features(client, template, windows, todo, explain_settings(cfg), concurrency=concurrency, on_done=on_done, description=f"explain {label}")
    finally:
        if pending or not (model_dir / LABELS_FILE).is_file():
            flush()
    return state["table"]


def score_plan(model_dir: Path, score_cfg: ScoreConfig, names: list[str], identities: dict[str, dict], overwrite: bool):
    """(table without stale score columns, ok labels, baseline labels, {scorer: features still to score})."""
    table = read_labels(model_dir)
    meta = load_meta(model_dir)
    ok = table[table["status"] == "ok"]
    labels = {int(f): str(lbl) for f, lbl in zip(ok["feature"], ok["label"])}
    baselines = baseline_labels(labels, score_cfg.seed) if score_cfg.shuffled_baseline else {}
    plans = {}
    for name in names:
        if (meta.get("scorers") or {}).get(name, {}).get("identity") != identities[name] or overwrite:
            table = table.drop(columns=[c for c in table.columns if c.endswith(f"_{name}")])
        status = table[f"status_{name}"] if f"status_{name}" in table.columns else pd.Series([None] * len(table), index=table.index)
        done = set(table.loc[status == "ok", "feature"].astype(int))
        plans[name] = [f for f in sorted(labels) if f not in done]
    return table, labels, baselines, plans


async def run_score(client: LLMClient | None, model_dir: Path, score_cfg: ScoreConfig, prompts_dir: str | None, names: list[str], identities: dict[str, dict], *, overwrite: bool, concurrency: int, label: str) -> pd.DataFrame:
    """Run each scorer on the ok labels that lack an ok score under the same identity (own + baseline label)."""
    table, labels, baselines, plans = score_plan(model_dir, score_cfg, names, identities, overwrite)
    meta = load_meta(model_dir)
    meta.setdefault("scorers", {})
    needed = sorted({f for todo in plans.values() for f in todo})
    windows = await asyncio.to_thread(load_windows, model_dir / "exemplars.parquet", needed) if needed else {}
    for name in names:
        todo = plans[name]
        meta["scorers"][name] = {"identity": identities[name], "definition": SCORERS[name].definition}
        if not todo:
            continue
        scorer = make_scorer(name, score_settings(score_cfg), prompts_dir)
        updates: list[dict] = []

        def flush() -> None:
            nonlocal table
            table = _apply_updates(table, updates)
            updates.clear()
            write_labels(model_dir, table)

        def on_done(row: dict) -> None:
            updates.append(row)
            if len(updates) >= SAVE_EVERY:
                flush()

        try:
            await score_features(client if scorer.needs_llm else None, scorer, windows, labels, baselines, todo, concurrency=concurrency, on_done=on_done, description=f"{name} {label}")
        finally:
            flush()
            save_meta(model_dir, meta)
    save_meta(model_dir, meta)
    return table


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
                table[key] = None if key.startswith(("status_", "error_")) else math.nan
            table.at[feature, key] = value
        table.at[feature, "prompt_tokens"] = int(table.at[feature, "prompt_tokens"]) + usage.prompt_tokens
        table.at[feature, "completion_tokens"] = int(table.at[feature, "completion_tokens"]) + usage.completion_tokens
        table.at[feature, "cost_usd"] = float(table.at[feature, "cost_usd"]) + usage.cost_usd
    return table.reset_index(drop=True)
