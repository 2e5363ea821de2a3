"""What every label scorer shares: the held-out scoring set, the result type, and the small statistics.

A scorer answers "how well does this label predict where the feature fires?" on the feature's TEST
windows only (split "test": activating quantile windows + random non-activating windows), which the
explainer never saw. The pipeline runs each scorer twice per feature: with the feature's own label and
with a label shuffled in from another feature (the baseline a score has to beat).
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from autointerp.eval.config import ScoreConfig
from autointerp.explain.llm.base import LLMClient, TokenLogprob, Usage
from autointerp.explain.prompts import Template
from autointerp.explain.format import split_windows
from autointerp.rundir.windows import Window


@dataclass
class ScoreResult:
    value: float  # the score (NaN when undefined, e.g. a scoring set with one class)
    details: dict = field(default_factory=dict)  # extra per-scorer numbers (balanced accuracy, AUROC, ...)
    usage: Usage = field(default_factory=Usage)


class Scorer(ABC):
    name: str
    needs_llm: bool = True
    template_name: str | None = None
    definition: str = ""

    def __init__(self, settings: ScoreConfig, template: Template | None = None):
        self.settings = settings
        self.template = template

    @abstractmethod
    async def score(self, client: LLMClient | None, windows: list[Window], label: str) -> ScoreResult:
        """Score ``label`` against one feature's windows (all of them; the scorer picks the test set)."""

    def scoring_set(self, windows: list[Window]) -> list[Window]:
        """Test windows: ``n_activating`` quantile windows spread over strengths + ``n_random`` negatives,
        trimmed around their max token. Deterministic per feature, so the real and shuffled labels see the same set."""
        s = self.settings
        active = sorted(split_windows(windows, "test", ("quantile", "top")), key=lambda w: -w.max_act)
        negative = split_windows(windows, "test", ("random",))
        rng = np.random.default_rng([s.seed, zlib.crc32(str(windows[0].feature if windows else 0).encode())])
        chosen = _spread(active, s.n_activating) + [negative[i] for i in sorted(rng.permutation(len(negative))[: s.n_random])]
        return [w.trimmed(s.window_before, s.window_after) for w in chosen]


def _spread(items: list, n: int) -> list:
    """n items evenly spaced through a sorted list (all of them when there are fewer)."""
    if n >= len(items):
        return list(items)
    if n <= 0:
        return []
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


def auroc(labels: list[bool] | np.ndarray, scores: list[float] | np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN with one class."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_accuracy(labels: list[bool] | np.ndarray, predicted: list[bool] | np.ndarray) -> float:
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    if y.all() or (~y).all():
        return math.nan
    return float(((p & y).sum() / y.sum() + (~p & ~y).sum() / (~y).sum()) / 2)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; 0.0 when the prediction is constant (it carries no information), NaN when the truth is."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.std(y) == 0:
        return math.nan
    if np.std(x) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def answer_probability(top: dict[str, float], yes: str = "yes", no: str = "no") -> float | None:
    """P(yes) / (P(yes) + P(no)) from a position's top alternatives (case and spaces ignored); None if neither shows."""
    p_yes = sum(math.exp(v) for k, v in top.items() if k.strip().lower() == yes)
    p_no = sum(math.exp(v) for k, v in top.items() if k.strip().lower() == no)
    if p_yes + p_no == 0:
        return None
    return p_yes / (p_yes + p_no)


def parse_yes_no(text: str) -> bool | None:
    words = text.strip().lower().split()
    if not words:
        return None
    first = words[0].strip(".,!:;\"'")
    return True if first == "yes" else False if first == "no" else None


def with_offsets(records: list[TokenLogprob]) -> list[TokenLogprob]:
    """Fill missing ``text_offset`` values by accumulating token lengths (servers that omit offsets)."""
    if all(r.text_offset is not None for r in records):
        return records
    pos, out = 0, []
    for r in records:
        out.append(TokenLogprob(r.token, r.logprob, r.top, pos))
        pos += len(r.token)
    return out
