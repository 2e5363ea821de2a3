"""Label quality per feature class (issue 23): does a label say *when* a word fires?

Per class (token / contextual / topical / other, from the exemplars' ``feature_class``), the held-out scores of
the final, word-only and shuffled labels against random windows and against hard negatives, and the paired
test of final vs word-only labels against hard negatives. On a contextual feature a word-only label should score
near chance against hard negatives (the windows hold its words); a final label that beats it there says when
the word fires. Token features are labelled by their words (no LLM), so their final and word rows differ only by
the lexical label's context phrases.
"""

from __future__ import annotations

import math

import pandas as pd

from autointerp.eval.paired import paired_difference
from autointerp.report.fmt import count, md_table, num

CLASS_ORDER = ("contextual", "topical", "token", "other")


def class_rows(labels: pd.DataFrame, scorer: str) -> list[list[str]]:
    """One row per class present among the scored features."""
    if "feature_class" not in labels.columns or f"final_{scorer}" not in labels.columns:
        return []
    rows = []
    for cls in CLASS_ORDER:
        mask = labels["feature_class"].astype(str) == cls
        if not mask.any():
            continue
        frame = labels[mask]
        mean = lambda c: pd.to_numeric(frame[c], errors="coerce").mean() if c in frame.columns else math.nan  # noqa: E731
        hard = paired_difference(labels, f"{scorer}_hard", "final", "word", mask)
        test = f"{num(hard.difference)} (p = {hard.p_value:.3g}, r = {hard.effect_size:+.2f}, n = {hard.n})" if hard.n else "-"
        rows.append([cls, count(int(mask.sum())), num(mean(f"final_{scorer}")), num(mean(f"word_{scorer}")), num(mean(f"baseline_{scorer}")),
                     num(mean(f"final_{scorer}_hard")), num(mean(f"word_{scorer}_hard")), num(mean(f"baseline_{scorer}_hard")), test])
    return rows


def class_table(labels: pd.DataFrame, scorer: str) -> list[str]:
    """The per-class table of one scorer, with what it means (empty without classes)."""
    rows = class_rows(labels, scorer)
    if not rows:
        return []
    head = ["class", "features", "final (random)", "word-only (random)", "shuffled (random)", "final (hard)", "word-only (hard)",
            "shuffled (hard)", "final − word-only, hard (Wilcoxon p, rank-biserial r)"]
    return [f"Per feature class ({scorer}; classes from the feature's activations, `exemplars.json` feature_classes.rule):", "",
            md_table(head, rows), "",
            "- Against hard negatives (windows holding the feature's words where it is silent) a word-only label scores near "
            "chance; the final label beats it only by saying when the word fires.", ""]
