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
from autointerp.explain.llm.base import LLMClient, LLMError, Usage
from autointerp.explain.pipeline import run_all
from autointerp.rundir.windows import Window


async def score_features(client: LLMClient | None, scorer: Scorer, windows: dict[int, list[Window]], labels: dict[int, str], baselines: dict[int, str | None], features: list[int], *, concurrency: int, on_done: Callable[[dict], None], description: str) -> None:
    """Score each feature's label and its baseline label; ``on_done`` gets {feature, score_S, baseline_S, status_S, ...}."""
    name = scorer.name

    async def work(feature: int) -> dict:
        row: dict = {"feature": feature}
        usage = Usage()
        try:
            own = await scorer.score(client, windows[feature], labels[feature])
            usage.add(own.usage)
            row[f"score_{name}"] = own.value
            for key, value in own.details.items():
                if key in ("auroc", "balanced_accuracy"):
                    row[f"{key}_{name}"] = value
            other = baselines.get(feature)
            if other is not None:
                base = await scorer.score(client, windows[feature], other)
                usage.add(base.usage)
                row[f"baseline_{name}"] = base.value
                for key, value in base.details.items():
                    if key in ("auroc", "balanced_accuracy"):
                        row[f"baseline_{key}_{name}"] = value
            else:
                row[f"baseline_{name}"] = math.nan
            row[f"status_{name}"], row[f"error_{name}"] = "ok", None
        except LLMError as exc:
            usage.add(exc.usage)
            row.update({f"score_{name}": math.nan, f"baseline_{name}": math.nan, f"status_{name}": "failed", f"error_{name}": exc.reason})
        row["_usage"] = usage
        return row

    await run_all(features, work, concurrency, on_done, description)


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
