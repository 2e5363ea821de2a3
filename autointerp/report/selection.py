"""Which features get an HTML page, and who each feature's partners are in the other models.

A page per feature for a 5k-latent SAE would be thousands of files nobody reads; the pages that matter
are the labelled features, both sides of the best and the shared matched pairs, and the densest live
features. Everything else stays reachable through the artifacts.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from autointerp.report.artifacts import RunInputs
from autointerp.report.config import ReportConfig


class Partner(NamedTuple):
    """A matched feature in another model, seen from one side of a pair."""

    model: str
    feature: int
    method: str
    activation_corr: float
    label_similarity: float
    shared: bool
    combined_rank: int
    label: str | None


def chosen_pairs(matches: pd.DataFrame | None, n: int) -> pd.DataFrame:
    """The best ``n`` pairs by combined_rank plus the ``n`` most correlated shared pairs."""
    if matches is None or n <= 0 or matches.empty:
        return pd.DataFrame(columns=["feature_a", "feature_b"])
    best = matches.sort_values(["combined_rank", "feature_a"]).head(n)
    shared = matches[matches["shared"].astype(bool)].sort_values("activation_corr", ascending=False).head(n)
    return pd.concat([best, shared]).drop_duplicates(subset=["feature_a", "feature_b", "method"])


def page_features(run: RunInputs, cfg: ReportConfig) -> dict[str, list[int]]:
    """Per model slug: the features to write pages for, in priority order, capped per model."""
    ordered: dict[str, list[int]] = {m.slug: [] for m in run.models}
    for p in run.pairs:
        pairs = chosen_pairs(p.matches, cfg.page_top_matches)
        ordered[p.a] += [int(f) for f in pairs["feature_a"]]
        ordered[p.b] += [int(f) for f in pairs["feature_b"]]
    for m in run.models:
        if m.labels is not None:
            ordered[m.slug] += [int(f) for f in m.labels.loc[m.labels["status"] == "ok", "feature"]]
        if m.stats is not None and cfg.page_top_density > 0:
            live = m.stats[~m.stats["dead"].astype(bool)].sort_values(["density", "feature"], ascending=[False, True])
            ordered[m.slug] += [int(f) for f in live["feature"].head(cfg.page_top_density)]
    return {slug: list(dict.fromkeys(features))[: cfg.page_max_per_model] for slug, features in ordered.items()}


def partners(run: RunInputs) -> dict[tuple[str, int], list[Partner]]:
    """(model, feature) -> its matched partners across every compared pair, best combined_rank first."""
    out: dict[tuple[str, int], list[Partner]] = {}
    for p in run.pairs:
        if p.matches is None:
            continue
        for r in p.matches.itertuples(index=False):
            common = dict(method=str(r.method), activation_corr=float(r.activation_corr), label_similarity=float(r.label_similarity),
                          shared=bool(r.shared), combined_rank=int(r.combined_rank))
            out.setdefault((p.a, int(r.feature_a)), []).append(Partner(p.b, int(r.feature_b), label=_text(r.label_b), **common))
            out.setdefault((p.b, int(r.feature_b)), []).append(Partner(p.a, int(r.feature_a), label=_text(r.label_a), **common))
    for value in out.values():
        value.sort(key=lambda x: x.combined_rank)
    return out


def _text(value) -> str | None:
    return value if isinstance(value, str) else None
