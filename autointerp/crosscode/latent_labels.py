"""Labels of the paged crosscoder latents, through the explain and score path every SAE feature goes through.

The explainer sees each latent's TRAINING word windows (``latent_windows``) exactly as it sees a feature's
token windows: best-of-n LLM candidates from the configured backend (``[llm]``, ``[explain]``) competing
with the lexical label made from the latent's lexical profile, the final one chosen on training windows.
Then the embedding scorer (``[score]`` settings, no LLM) scores the LLM label, the lexical label and a label
shuffled in from another paged latent (seeded derangement) on the held-out windows: a label that does not
beat the shuffled one says nothing specific about its latent. ``[explain] labeller = "lexical"`` makes
lexical labels only (no LLM), as in the explain stage.

Not incremental: the whole set (tens of latents) is labelled again when its windows or settings change;
the LLM's answers come from the run's response cache when the prompts are the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path

import pandas as pd

from autointerp.eval.config import ScoreConfig
from autointerp.eval.pipeline import add_final_scores, baseline_labels, score_features
from autointerp.eval.scorers.embedding import EmbeddingScorer
from autointerp.exemplars.profile import compute_profiles, profiles_from_frame
from autointerp.explain.config import LABEL_FIELDS, ExplainConfig
from autointerp.explain.labels import lexical_labels, llm_labels
from autointerp.explain.pipeline import explain_features
from autointerp.explain.prompts import explainer_templates, prompt_sha
from autointerp.llm.base import Usage
from autointerp.rundir.windows import Window, load_windows

SCORER = "embedding"


def label_settings(explain: ExplainConfig, score: ScoreConfig, backend: str, model: str | None) -> dict:
    """What shapes the labels and their scores (the record's settings)."""
    llm = explain.labeller == "llm"
    return {"backend": backend if llm else "none", "model": (model or "default") if llm else "none",
            "prompt_sha": prompt_sha("".join(t.text for t in explainer_templates(explain))),
            "explain": {k: v for k, v in dataclasses.asdict(explain).items() if k in LABEL_FIELDS},
            "score": {k: v for k, v in dataclasses.asdict(score).items() if k not in ("scorers",)}}


def _profiles(windows_path: Path, documents: pd.DataFrame | None, latents: list[int]) -> dict:
    frame = compute_profiles(windows_path, documents, latents)
    return profiles_from_frame(frame) if not frame.empty else {}


async def label_and_score(client, windows_path: Path, documents: pd.DataFrame | None, latents: list[int], explain: ExplainConfig,
                          score: ScoreConfig, *, concurrency: int) -> tuple[pd.DataFrame, Usage]:
    """One row per latent (column ``feature`` = the latent): the explain stage's label columns plus
    ``score_embedding`` (LLM label), ``lexical_embedding``, ``baseline_embedding`` (shuffled) and
    ``final_embedding`` (the final label), each the held-out embedding AUROC."""
    windows: dict[int, list[Window]] = await asyncio.to_thread(load_windows, windows_path, latents)
    train = {j: [w for w in ws if w.split == "train"] for j, ws in windows.items()}
    test = {j: [w for w in ws if w.split == "test"] for j, ws in windows.items()}
    profiles = await asyncio.to_thread(_profiles, windows_path, documents, latents)
    rows: list[dict] = []

    def keep(row: dict) -> None:
        row.pop("_candidates", None)
        rows.append(row)

    await explain_features(client, explainer_templates(explain), train, latents, explain, concurrency=concurrency, on_done=keep,
                           description="explain crosscoder latents", profiles=profiles,
                           score_window=(score.window_before, score.window_after), embedder=score.embedder)
    table = pd.DataFrame(rows).sort_values("feature").reset_index(drop=True)
    labels, lexical = llm_labels(table), lexical_labels(table)
    baselines = baseline_labels(labels or lexical, score.seed) if score.shuffled_baseline else {}
    scored: list[dict] = []
    usage = Usage()

    def done(row: dict) -> None:
        usage.add(row.pop("_usage", Usage()))
        scored.append(row)

    todo = sorted(set(labels) | set(lexical))
    await score_features(None, EmbeddingScorer(score), test, labels, baselines, todo, concurrency=concurrency, on_done=done,
                         description="score crosscoder latents", lexical=lexical)
    if scored:
        table = table.merge(pd.DataFrame(scored), on="feature", how="left")
    for column in (f"score_{SCORER}", f"lexical_{SCORER}", f"baseline_{SCORER}"):
        if column not in table.columns:
            table[column] = math.nan
    table["baseline_label"] = [baselines.get(int(j)) for j in table["feature"]]
    return add_final_scores(table, SCORER), usage


def score_summary(table: pd.DataFrame) -> dict:
    """Mean held-out embedding AUROC per label kind, and how often the final label beats its shuffled one."""
    def mean(column: str):
        values = pd.to_numeric(table.get(column), errors="coerce").dropna() if column in table.columns else pd.Series(dtype=float)
        return round(float(values.mean()), 4) if len(values) else None

    both = table[[f"final_{SCORER}", f"baseline_{SCORER}"]].apply(pd.to_numeric, errors="coerce").dropna() if len(table) else table
    return {"n_latents": int(len(table)), "n_labelled": int((table["status"] == "ok").sum()) if len(table) else 0,
            "label_sources": {str(k): int(v) for k, v in table["label_source"].value_counts().items()} if len(table) else {},
            "mean_final": mean(f"final_{SCORER}"), "mean_llm": mean(f"score_{SCORER}"), "mean_lexical": mean(f"lexical_{SCORER}"),
            "mean_shuffled": mean(f"baseline_{SCORER}"), "n_compared": int(len(both)),
            "final_beats_shuffled": float((both[f"final_{SCORER}"] > both[f"baseline_{SCORER}"]).mean()) if len(both) else None,
            "definition": EmbeddingScorer.definition + "; shuffled: another paged latent's label on this latent's windows"}
