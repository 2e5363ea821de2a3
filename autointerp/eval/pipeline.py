"""Scoring in the async pipeline, and the shuffled-label baseline every score is reported against.

``score_features`` runs one scorer on existing labels, each with the feature's own label and with a label
shuffled in from another feature (a seeded derangement): a label that scores no better than a shuffled one
says nothing specific about its feature.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from autointerp.eval.scorers import Scorer
from autointerp.llm.base import LLMClient, LLMError, Usage
from autointerp.explain.pipeline import run_all
from autointerp.rundir.windows import Window


async def score_features(client: LLMClient | None, scorer: Scorer, windows: dict[int, list[Window]], labels: dict[int, str], baselines: dict[int, str | None], features: list[int], *, concurrency: int, on_done: Callable[[dict], None], description: str, lexical: dict[int, str] | None = None,
                         word: dict[int, str] | None = None) -> None:
    """Score each feature's labels of every kind; ``on_done`` gets {feature, score_S, lexical_S, baseline_S,
    score_S_hard, lexical_S_hard, baseline_S_hard, status_S, ...}.

    Kinds (column prefix: labels): ``score``: the LLM label; ``lexical``: the lexical label; ``word``: the
    word-only label; ``baseline``: a label shuffled in from another feature. Each against random negatives (``<prefix>_S``) and against hard
    negatives (``<prefix>_S_hard``, NaN when the feature has none). A feature lacking a kind's label gets NaN.
    """
    name = scorer.name
    kinds = {"score": labels, "lexical": lexical or {}, "word": word or {}, "baseline": baselines}

    async def work(feature: int) -> dict:
        row: dict = {"feature": feature}
        usage = Usage()
        try:
            for prefix, source in kinds.items():
                label = source.get(feature)
                row[f"{prefix}_{name}"] = row[f"{prefix}_{name}_hard"] = math.nan
                if label is None:
                    continue
                result = await scorer.score(client, windows[feature], label)
                usage.add(result.usage)
                row[f"{prefix}_{name}"], row[f"{prefix}_{name}_hard"] = result.value, result.hard
                for key, value in result.details.items():
                    if key in ("auroc", "balanced_accuracy"):
                        row[f"{key}_{name}" if prefix == "score" else f"{prefix}_{key}_{name}"] = value
            row[f"status_{name}"], row[f"error_{name}"] = "ok", None
        except LLMError as exc:
            usage.add(exc.usage)
            row.update({f"{p}_{name}{s}": math.nan for p in kinds for s in ("", "_hard")} | {f"status_{name}": "failed", f"error_{name}": exc.reason})
        row["_usage"] = usage
        return row

    await run_all(features, work, concurrency, on_done, description)


def add_final_scores(table, name: str):
    """``final_<S>`` and ``final_<S>_hard``: the held-out scores of the final label (the lexical one where
    label_source says so) against random and against hard negatives."""
    import pandas as pd

    for column in (name, f"{name}_hard"):
        if f"score_{column}" not in table.columns:
            continue
        own = pd.to_numeric(table[f"score_{column}"], errors="coerce")
        if "label_source" in table.columns and f"lexical_{column}" in table.columns:
            lexical = pd.to_numeric(table[f"lexical_{column}"], errors="coerce")
            own = own.where(table["label_source"] != "lexical", lexical)
        table[f"final_{column}"] = own.astype(float)
    return table


def baseline_labels(labels: dict[int, str], seed: int) -> dict[int, str]:
    """Each feature gets another feature's label (seeded derangement over the sorted labelled features)."""
    features = sorted(labels)
    if len(features) < 2:
        return {}
    perm = derangement(len(features), seed)
    return {f: labels[features[int(perm[i])]] for i, f in enumerate(features)}



def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed points (Sattolo's algorithm: one cycle), for shuffled-label baselines."""
    perm = np.arange(n)
    rng = np.random.default_rng(seed)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm
