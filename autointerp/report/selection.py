"""Which pairs report.md lists, which features get an HTML page, and who each feature's partners are.

A page per feature for a 5k-latent SAE would be thousands of files nobody reads; the pages that matter
are every feature and both sides of every pair report.md lists (``listed_pairs``: the matched-concepts,
disagreement and beyond-words tables; ``shared_sections.listed``), so every pair the report names has its
side-by-side page whatever ``page_max_per_model`` says; then the labelled features, both sides of the best
and the shared matched pairs, and the densest live features, up to the cap. Everything else stays
reachable through the artifacts.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from autointerp.report.artifacts import PairInputs, RunInputs
from autointerp.report.config import ReportConfig
from autointerp.report.shared_sections import listed


class Partner(NamedTuple):
    """A matched feature in another model, seen from one side of a pair."""

    model: str
    feature: int
    method: str
    activation_corr: float
    label_similarity: float
    shared: bool
    combined_rank: int


def top_matches(matches: pd.DataFrame | None, n: int) -> pd.DataFrame:
    """The matched-concepts table's rows: the best ``n`` pairs by combined rank."""
    if matches is None or n <= 0:
        return pd.DataFrame()
    return matches.sort_values(["combined_rank", "feature_a"]).head(n)


def disagreements(matches: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The disagreement tables' rows: the ``n`` most correlated shared pairs only activation matching chose,
    and the ``n`` most similar label pairs only label matching chose."""
    act_only = matches[(matches["method"] == "activation") & matches["shared"].astype(bool)].sort_values("activation_corr", ascending=False)
    label_only = matches[matches["method"] == "label"].sort_values("label_similarity", ascending=False)
    return act_only.head(n), label_only.head(n)


def listed_pairs(p: PairInputs, cfg: ReportConfig) -> pd.DataFrame:
    """Every matched pair report.md lists for ``p`` (feature_a, feature_b), in table order, no repeats."""
    if p.matches is None or p.matches.empty:
        return pd.DataFrame(columns=["feature_a", "feature_b"])
    frames = [top_matches(p.matches, cfg.max_matches), pd.DataFrame(listed(p)[1], columns=["feature_a", "feature_b"])]
    if ((p.stats or {}).get("label") or {}).get("available"):
        frames += list(disagreements(p.matches, cfg.max_disagreements))
    return pd.concat(frames)[["feature_a", "feature_b"]].drop_duplicates().astype("int64")


def chosen_pairs(matches: pd.DataFrame | None, n: int) -> pd.DataFrame:
    """The best ``n`` pairs by combined_rank plus the ``n`` most correlated shared pairs."""
    if matches is None or n <= 0 or matches.empty:
        return pd.DataFrame(columns=["feature_a", "feature_b"])
    best = matches.sort_values(["combined_rank", "feature_a"]).head(n)
    shared = matches[matches["shared"].astype(bool)].sort_values("activation_corr", ascending=False).head(n)
    return pd.concat([best, shared]).drop_duplicates(subset=["feature_a", "feature_b", "method"])


def page_features(run: RunInputs, cfg: ReportConfig) -> dict[str, list[int]]:
    """Per model slug: the features to write pages for, in priority order: both sides of every listed pair
    (never capped), then the others up to ``page_max_per_model`` pages in all."""
    required: dict[str, list[int]] = {m.slug: [] for m in run.models}
    for p in run.pairs:
        pairs = listed_pairs(p, cfg)
        required[p.a] += pairs["feature_a"].tolist()
        required[p.b] += pairs["feature_b"].tolist()
        for model, features in listed(p)[0].items():  # the features "what one model has alone" lists
            required[model] += features
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
    out = {}
    for slug, features in ordered.items():
        must = list(dict.fromkeys(required[slug]))
        seen = set(must)
        others = [f for f in dict.fromkeys(features) if f not in seen]
        out[slug] = must + others[: max(0, cfg.page_max_per_model - len(must))]
    return out


def partners(run: RunInputs) -> dict[tuple[str, int], list[Partner]]:
    """(model, feature) -> its matched partners across every compared pair, best combined_rank first."""
    out: dict[tuple[str, int], list[Partner]] = {}
    for p in run.pairs:
        if p.matches is None:
            continue
        for r in p.matches.itertuples(index=False):
            common = dict(method=str(r.method), activation_corr=float(r.activation_corr), label_similarity=float(r.label_similarity),
                          shared=bool(r.shared), combined_rank=int(r.combined_rank))
            out.setdefault((p.a, int(r.feature_a)), []).append(Partner(p.b, int(r.feature_b), **common))
            out.setdefault((p.b, int(r.feature_b)), []).append(Partner(p.a, int(r.feature_a), **common))
    for value in out.values():
        value.sort(key=lambda x: x.combined_rank)
    return out
