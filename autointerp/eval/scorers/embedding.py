"""Embedding scoring: offline and LLM-free. Does the label's sentence embedding sit closer to the windows
where the feature fires than to random windows? AUROC of cosine(label, window text), activating vs random.
At sequence level the texts are the whole held-out documents (``document_text``), not windows around a token.
Against hard negatives: the same AUROC with every held-out hard negative in place of the random windows."""

from __future__ import annotations

import asyncio
import math

import numpy as np

from autointerp.llm.base import LLMClient
from autointerp.eval.scorers.base import ScoreResult, Scorer, against_hard, document_text
from autointerp.explain.select import auroc
from autointerp.explain.format import split_windows
from autointerp.rundir.windows import Window


class EmbeddingScorer(Scorer):
    name = "embedding"
    needs_llm = False
    _window_vectors: dict = {}
    definition = "AUROC of cosine similarity between the label's sentence embedding and each held-out window's text embedding (all test windows: activating quantile vs random); no LLM"
    sequence_definition = "sequence level: AUROC of cosine similarity between the label's sentence embedding and each held-out whole document's embedding (all test documents: activating vs random); no LLM"

    def scoring_set(self, windows: list[Window]) -> list[Window]:
        return self.shown(split_windows(windows, "test", ("quantile", "top", "random")))

    async def score(self, client: LLMClient | None, windows: list[Window], label: str) -> ScoreResult:
        chosen, hard = self.scoring_set(windows), self.hard_negatives(windows, None)  # every held-out window
        texts = [document_text(w) if self.sequence else " ".join(w.text.split()) for w in chosen + hard]
        sims = await asyncio.to_thread(self._similarities, label, texts)
        value = auroc([w.activating for w in chosen], sims[: len(chosen)])
        against, truth = against_hard(chosen, len(hard))
        hard_value = auroc(truth, sims[against]) if hard else math.nan
        return ScoreResult(value, {"n_documents" if self.sequence else "n_windows": len(chosen)}, hard=hard_value, n_hard=len(hard))

    def _similarities(self, label: str, texts: list[str]) -> np.ndarray:
        from autointerp.models.embedder import embed_texts

        key = tuple(texts)  # the real and the shuffled label share one feature's windows: embed them once
        vectors = self._window_vectors.get(key)  # read once: other threads may replace the cache meanwhile
        if vectors is None:
            vectors = embed_texts(list(texts), spec=self.settings.embedder)
            self._window_vectors = {key: vectors}
        return vectors @ embed_texts([label], spec=self.settings.embedder)[0]
