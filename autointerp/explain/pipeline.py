"""The async pipeline (delphi-style): features in parallel under one semaphore, each feature's steps in order.

``explain_features`` labels features; ``score_features`` runs scorers on existing labels, each with the
feature's own label and with the shuffled baseline label. Both hand finished rows to ``on_done`` as they
complete (the stage writes them out in batches), and neither raises on an LLM failure: the feature's row
says "failed" with the reason, so nothing is ever silently scored as 0 and the next run retries it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import numpy as np

from autointerp.explain.explainer import ExplainSettings, explain_feature
from autointerp.explain.llm.base import LLMClient, LLMError, Usage
from autointerp.explain.prompts import Template
from autointerp.explain.scorers import Scorer
from autointerp.explain.windows import Window
from autointerp.progress import progress_bar


async def _run_all(jobs: list, work, concurrency: int, on_done: Callable[[dict], None], description: str) -> None:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(job):
        async with gate:
            return await work(job)

    with progress_bar(description, total=len(jobs), unit="features") as advance:
        for finished in asyncio.as_completed([one(job) for job in jobs]):
            on_done(await finished)
            advance(1)


async def explain_features(client: LLMClient, template: Template, windows: dict[int, list[Window]], features: list[int], settings: ExplainSettings, *, concurrency: int, on_done: Callable[[dict], None], description: str = "explain") -> None:
    model_name = client.model_name

    async def work(feature: int) -> dict:
        result = await explain_feature(client, template, feature, windows.get(feature, []), settings)
        return {
            "feature": feature, "label": result.label, "raw": result.raw, "status": "ok" if result.label else "failed",
            "error": result.error, "explainer_model": model_name, "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens, "cost_usd": result.usage.cost_usd,
        }

    await _run_all(features, work, concurrency, on_done, description)


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

    await _run_all(features, work, concurrency, on_done, description)


def baseline_labels(labels: dict[int, str], seed: int) -> dict[int, str]:
    """Each feature gets another feature's label (seeded derangement over the sorted labelled features)."""
    from autointerp.explain.labels import derangement

    features = sorted(labels)
    if len(features) < 2:
        return {}
    perm = derangement(len(features), seed)
    return {f: labels[features[int(perm[i])]] for i, f in enumerate(features)}


def mean_or_nan(values) -> float:
    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=np.float64)
    return float(arr.mean()) if len(arr) else math.nan
