"""LLM vs lexical vs shuffled labels, per scorer: means, a paired test over features, and an effect size.

Why paired: every feature is scored with each kind of label on the same held-out windows, so the question
"does the LLM label say more than the feature's own words?" is a within-feature difference. The test is the
Wilcoxon signed-rank test (two-sided, zero differences dropped) over features with both scores; the effect
size is the matched-pairs rank-biserial correlation r = (W+ - W-) / (W+ + W-), in [-1, 1] (positive: LLM
better), which needs no normality and reads as "how consistently one beats the other".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata, wilcoxon

KINDS = {"llm": "score", "lexical": "lexical", "word": "word", "shuffled": "baseline", "final": "final"}  # row -> column prefix


@dataclass
class KindComparison:
    scorer: str
    n: int  # features with both an LLM and a lexical score
    means: dict  # kind -> mean held-out score (NaN when that kind was not scored)
    counts: dict  # kind -> features scored
    llm_beats_lexical: float  # share of paired features where the LLM label scores higher (ties count half)
    p_value: float  # Wilcoxon signed-rank, LLM vs lexical
    effect_size: float  # matched-pairs rank-biserial correlation (positive: LLM better)

    def to_dict(self) -> dict:
        return asdict(self)

    def verdict(self) -> str:
        """One plain sentence: do the LLM labels beat the lexical baseline on this scorer?"""
        if self.n < 2:
            return f"{self.scorer}: too few features with both labels scored to compare LLM and lexical labels."
        diff = self.means["llm"] - self.means["lexical"]
        if not math.isnan(self.p_value) and self.p_value < 0.05:
            side = "beat" if diff > 0 else "lose to"
            return (f"{self.scorer}: the LLM labels {side} the lexical baseline ({self.means['llm']:.3f} vs {self.means['lexical']:.3f}, "
                    f"Wilcoxon p = {self.p_value:.3g}, rank-biserial r = {self.effect_size:+.2f}, n = {self.n}).")
        return (f"{self.scorer}: the LLM labels do not differ detectably from the lexical baseline ({self.means['llm']:.3f} vs "
                f"{self.means['lexical']:.3f}, Wilcoxon p = {self.p_value:.3g}, rank-biserial r = {self.effect_size:+.2f}, n = {self.n}).")


def _column(table: pd.DataFrame, prefix: str, scorer: str) -> pd.Series:
    name = f"{prefix}_{scorer}"
    if name not in table.columns:
        return pd.Series(np.nan, index=table.index)
    return pd.to_numeric(table[name], errors="coerce")


def rank_biserial(diff: np.ndarray) -> float:
    d = diff[diff != 0]
    if not len(d):
        return 0.0
    ranks = rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def compare_kinds(table: pd.DataFrame, scorer: str, name: str | None = None) -> KindComparison:
    """The three (four, with final) label kinds of one scorer on one model's labels table. ``scorer`` names the
    columns (``"embedding"``; ``"embedding_hard"`` for the scores against hard negatives), ``name`` the
    comparison in its verdict (default: ``scorer``)."""
    cols = {kind: _column(table, prefix, scorer) for kind, prefix in KINDS.items()}
    means = {kind: float(c.mean()) if c.notna().any() else math.nan for kind, c in cols.items()}
    counts = {kind: int(c.notna().sum()) for kind, c in cols.items()}
    both = cols["llm"].notna() & cols["lexical"].notna()
    diff = (cols["llm"][both] - cols["lexical"][both]).to_numpy(dtype=float)
    n = int(both.sum())
    beats = float(np.mean((diff > 0) + 0.5 * (diff == 0))) if n else math.nan
    p = math.nan
    if n >= 2 and np.any(diff != 0):
        p = float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)
    return KindComparison(name or scorer, n, means, counts, beats, p, rank_biserial(diff) if n else math.nan)


@dataclass
class PairedDifference:
    """Kind ``a`` minus kind ``b`` on the features scored with both (e.g. final vs word-only labels against hard
    negatives, on contextual features)."""

    n: int
    mean_a: float
    mean_b: float
    p_value: float  # Wilcoxon signed-rank, two-sided (NaN below 2 features or when every difference is 0)
    effect_size: float  # matched-pairs rank-biserial correlation (positive: a better)

    @property
    def difference(self) -> float:
        return self.mean_a - self.mean_b


def paired_difference(table: pd.DataFrame, scorer: str, a: str, b: str, rows: pd.Series | None = None) -> PairedDifference:
    """Kind ``a`` vs kind ``b`` (keys of ``KINDS``) of one scorer column (``"embedding_hard"``...), on ``rows``."""
    frame = table if rows is None else table[rows.to_numpy(dtype=bool)]
    x, y = _column(frame, KINDS[a], scorer), _column(frame, KINDS[b], scorer)
    both = x.notna() & y.notna()
    diff = (x[both] - y[both]).to_numpy(dtype=float)
    n = int(both.sum())
    p = float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue) if n >= 2 and np.any(diff != 0) else math.nan
    return PairedDifference(n, float(x[both].mean()) if n else math.nan, float(y[both].mean()) if n else math.nan, p,
                            rank_biserial(diff) if n else math.nan)


def scorers_in(table: pd.DataFrame) -> list[str]:
    return sorted(c[len("score_"):] for c in table.columns if c.startswith("score_") and not c.endswith("_hard"))
