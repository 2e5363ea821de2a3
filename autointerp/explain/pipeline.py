"""The async pipeline (delphi-style): features in parallel under one semaphore, each feature's steps in order.

``explain_features`` labels features (``autointerp.eval.pipeline.score_features`` scores them through the
same ``run_all``). Finished rows go to ``on_done`` as they complete (the stage writes them out in batches),
and an LLM failure never raises: the feature's row says "failed" with the reason, so nothing is ever
silently scored as 0 and the next run retries it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from autointerp.explain.config import ExplainConfig
from autointerp.explain.explainer import explain_feature
from autointerp.explain.llm.base import LLMClient
from autointerp.explain.prompts import Template
from autointerp.rundir.windows import Window
from autointerp.progress import progress_bar


async def run_all(jobs: list, work, concurrency: int, on_done: Callable[[dict], None], description: str) -> None:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(job):
        async with gate:
            return await work(job)

    with progress_bar(description, total=len(jobs), unit="features") as advance:
        for finished in asyncio.as_completed([one(job) for job in jobs]):
            on_done(await finished)
            advance(1)


async def explain_features(client: LLMClient, template: Template, windows: dict[int, list[Window]], features: list[int], settings: ExplainConfig, *, concurrency: int, on_done: Callable[[dict], None], description: str = "explain") -> None:
    model_name = client.model_name

    async def work(feature: int) -> dict:
        result = await explain_feature(client, template, feature, windows.get(feature, []), settings)
        return {
            "feature": feature, "label": result.label, "raw": result.raw, "status": "ok" if result.label else "failed",
            "error": result.error, "explainer_model": model_name, "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens, "cost_usd": result.usage.cost_usd,
        }

    await run_all(features, work, concurrency, on_done, description)
