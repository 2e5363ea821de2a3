"""The async pipeline (delphi-style): features in parallel under one semaphore, each feature's steps in order.

``explain_features`` labels features (``candidates``: best-of-n + lexical, chosen on training windows) (``autointerp.eval.pipeline.score_features`` scores them through the
same ``run_all``). Finished rows go to ``on_done`` as they complete (the stage writes them out in batches),
and an LLM failure never raises: the feature's row says "failed" with the reason, so nothing is ever
silently scored as 0 and the next run retries it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable

from autointerp.explain.config import ExplainConfig
from autointerp.explain.candidates import final_choice, label_feature
from autointerp.explain.lexical import word_label
from autointerp.llm.base import LLMClient
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


async def explain_features(client: LLMClient | None, templates: list[Template], windows: dict[int, list[Window]], features: list[int], settings: ExplainConfig, *, concurrency: int, on_done: Callable[[dict], None], description: str = "explain", profiles: dict | None = None, score_window: tuple[int, int] = (6, 1), embedder: str = "minilm-l6",
                           classes: dict[int, str] | None = None) -> None:
    """Label each feature (best-of-n LLM candidates + the lexical label, chosen on training windows).

    ``classes`` (``exemplars.feature_classes``): unless ``llm_for_tokens``, a token-class feature gets its
    lexical label without an LLM call - word identity explains its activation, so a word list is its label.

    Each row carries the final ``label`` and where it came from (``label_source``), the kept LLM candidate
    (``llm_label``), the lexical label, their training-window scores and the copy checks; every candidate
    goes along under ``_candidates`` (for label_candidates.parquet).
    """
    model_name = client.model_name if client is not None else "lexical"
    profiles, classes = profiles or {}, classes or {}
    words_only = dataclasses.replace(settings, labeller="lexical", lexical=True)

    async def work(feature: int) -> dict:
        own = words_only if classes.get(feature) == "token" and not settings.llm_for_tokens else settings
        result = await label_feature(client, templates, feature, windows.get(feature, []), own, profiles.get(feature),
                                     score_before=score_window[0], score_after=score_window[1], embedder=embedder)
        final, llm, lexical = final_choice(result), result.best("llm"), result.best("lexical")
        llm_errors = [c.error for c in result.candidates if c.source == "llm" and c.error]
        error = None if (llm is not None or own.labeller == "lexical") and final is not None else "; ".join(llm_errors[:2]) or "no usable label"
        return {
            "feature": feature, "label": final.text if final else None, "raw": (llm or final).raw if (llm or final) else "",
            "status": "ok" if final is not None else "failed", "error": error, "explainer_model": model_name,
            "prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens, "cost_usd": result.usage.cost_usd,
            "label_source": final.source if final else None, "llm_label": llm.text if llm else None,
            "feature_class": classes.get(feature), "llm_skipped": own is words_only,
            "lexical_label": lexical.text if lexical else None, "word_label": word_label(profiles.get(feature)),
            "train_score_llm": llm.train_score if llm else math.nan, "train_score_lexical": lexical.train_score if lexical else math.nan,
            "restates_window": float(llm.restates) if llm else math.nan,
            "n_template_copies": float(sum(c.template_copy for c in result.candidates)),
            "n_llm_candidates": float(sum(1 for c in result.candidates if c.source == "llm" and c.text)),
            "cached_calls": float(result.usage.cached_calls),  # answers served from the response cache (their original tokens are counted above)
            "_candidates": [{"feature": feature, "candidate": c.text, "source": c.source, "train_score": c.train_score, "kept": c.kept,
                             "restates": c.restates, "template_copy": c.template_copy} for c in result.candidates if c.text],
        }

    await run_all(features, work, concurrency, on_done, description)
