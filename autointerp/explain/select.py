"""Choose among a feature's candidate labels on its TRAINING windows only.

Why training windows: the reported scores come from the held-out (test) windows; if the choice among
candidates looked at them, the reported score of the chosen label would be biased upwards. Here only windows
with ``split == "train"`` are ever read (the explain stage loads no others), and the score is the embedding
scorer's measure (AUROC of cosine(label, window text), activating top/quantile vs random windows), which
needs no LLM and costs milliseconds per candidate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from autointerp.explain.format import split_windows
from autointerp.rundir.windows import Window

CHOOSERS = ("embedding", "first")  # [explain] choose_by


def auroc(positive: list[bool], scores: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count half); NaN without both classes."""
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_texts(windows: list[Window], before: int, after: int) -> tuple[list[str], list[bool]]:
    """The training windows' texts (trimmed like the scorers' windows) and whether each is activating."""
    chosen = [w.trimmed(before, after) for w in windows if w.split == "train"]
    chosen = [w for w in chosen if w.text is not None]
    return [" ".join(w.text.split()) for w in chosen], [w.activating for w in chosen]


def train_scores(labels: list[str], windows: list[Window], *, before: int, after: int, embedder: str) -> list[float]:
    """Training-window embedding AUROC of each label (NaN when the feature lacks activating or random train windows)."""
    from autointerp.models.embedder import embed_texts

    if not labels:
        return []
    texts, positive = train_texts(windows, before, after)
    if not split_windows(windows, "train", ("random",)) or not any(positive) or all(positive):
        return [math.nan] * len(labels)
    sims = embed_texts(list(labels), spec=embedder) @ embed_texts(texts, spec=embedder).T
    return [auroc(positive, row) for row in sims]


def best_index(scores: list[float]) -> int | None:
    """Index of the highest score (the first one on ties; NaN never wins); None for an empty list."""
    if not scores:
        return None
    finite = [(s if not math.isnan(s) else -math.inf, -i) for i, s in enumerate(scores)]
    return -max(finite)[1]
