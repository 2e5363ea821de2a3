"""Beyond the anchors: each model's level of abstraction (concept domains: ``compare.domains``).

Abstraction is measured, not asserted: for each live feature, how many distinct entities (factbook
doc_ids are ``factbook/<country>/<section>``, so the country) — and documents — its top exemplar windows
come from, over features with a full set of top windows (so rarer features, e.g. of a larger dictionary,
are not penalised for having fewer windows). An entity-level feature ("France") fires in a few documents of
one country; a thematic one ("inflation") in many documents across countries. The two models'
distributions are compared with a two-sided Mann-Whitney U test. Label specificity, when labels exist, is
1 - the label's mean cosine to the other labels of its model (generic labels resemble many others).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy.stats import mannwhitneyu

from autointerp.exemplars.kinds import ACTIVATING_KINDS
from autointerp.io import parquet_errors


def label_specificity(embeddings: np.ndarray) -> np.ndarray:
    """1 - mean cosine to the model's other labels (NaN with fewer than two labels)."""
    n = len(embeddings)
    if n < 2:
        return np.full(n, np.nan, dtype=np.float32)
    mean_other = (embeddings @ embeddings.sum(0) - 1.0) / (n - 1)
    return (1.0 - mean_other).astype(np.float32)


def entities_of(docs) -> dict[str, str]:
    """doc_id -> entity (``Document.entity``, from the corpus); a document without one is its own entity."""
    return {d.doc_id: d.entity or d.doc_id for d in docs}


def exemplar_spans(path: Path | None, d_sae: int, entities: dict[str, str] | None = None) -> pd.DataFrame:
    """Per feature: distinct documents and entities among its activating exemplar windows (top + quantile),
    and among its top windows alone (``n_top_windows`` of them). NA everywhere when exemplars are missing.
    ``entities``: doc_id -> entity (``entities_of``); documents not in it are their own entity."""
    cols = ("n_docs_spanned", "n_entities_spanned", "n_top_windows", "top_docs_spanned", "top_entities_spanned")
    out = pd.DataFrame({"feature": np.arange(d_sae, dtype=np.int32), **{c: 0 for c in cols}})
    if path is None:
        return out.assign(**{c: pd.NA for c in cols})
    with parquet_errors(path):
        frame = pq.read_table(path, columns=["feature", "kind", "doc_id"]).to_pandas()
    frame = frame[frame["kind"].isin(ACTIVATING_KINDS) & (frame["feature"] < d_sae)]
    entities = entities or {}
    frame = frame.assign(entity=[entities.get(d, d) for d in frame["doc_id"]])
    spans = frame.groupby("feature").agg(n_docs_spanned=("doc_id", "nunique"), n_entities_spanned=("entity", "nunique"))
    top = frame[frame["kind"] == "top"].groupby("feature").agg(
        n_top_windows=("doc_id", "size"), top_docs_spanned=("doc_id", "nunique"), top_entities_spanned=("entity", "nunique"))
    for part in (spans, top):
        for col in part.columns:
            out.loc[part.index, col] = part[col].to_numpy()
    return out


def abstraction_sample(spans: pd.DataFrame, column: str = "top_entities_spanned") -> tuple[np.ndarray, int]:
    """Values of ``column`` for features with a full set of top windows (the most common count, i.e. n_top).

    Comparing a fixed number of windows per feature keeps dictionary size and feature density out of the
    measure: a rarer feature has fewer windows and would otherwise span fewer entities for that reason alone.
    """
    n_top = pd.to_numeric(spans["n_top_windows"], errors="coerce").fillna(0).to_numpy(int)
    if not (n_top > 0).any():
        return np.zeros(0), 0
    full = int(n_top.max())
    return pd.to_numeric(spans[column], errors="coerce").to_numpy(float)[n_top == full], full


@dataclass
class AbstractionResult:
    metric: str
    a: dict
    b: dict
    test: str
    statistic: float | None
    p_value: float | None
    effect: float | None  # P(a feature of A spans more than one of B) + half the ties
    finding: str
    min_effect: float | None = None  # a difference is claimed only when |effect - 0.5| exceeds this

    def as_dict(self) -> dict:
        return {"metric": self.metric, "a": self.a, "b": self.b, "test": self.test, "statistic": self.statistic,
                "p_value": self.p_value, "common_language_effect": self.effect, "min_effect": self.min_effect,
                "finding": self.finding}


def _summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"mean": None, "median": None, "n_features": 0}
    return {"mean": float(np.mean(values)), "median": float(np.median(values)), "n_features": len(values)}


def compare_abstraction(name_a: str, spans_a: np.ndarray, name_b: str, spans_b: np.ndarray,
                        metric: str = "top_entities_spanned", alpha: float = 0.01, min_effect: float = 0.06) -> AbstractionResult:
    """Mann-Whitney U on features' spans (features with no activating window are left out).

    A difference is claimed only when it is significant (p < ``alpha``) AND large: the common-language
    effect P(A > B) outside [0.5 - min_effect, 0.5 + min_effect]. With thousands of features a negligible
    shift is significant, and "A is the more thematic model" must not rest on that."""
    xa, xb = spans_a[spans_a > 0], spans_b[spans_b > 0]
    if len(xa) < 2 or len(xb) < 2:
        return AbstractionResult(metric, _summary(xa), _summary(xb), "mann-whitney-u", None, None, None,
                                 "not measured: exemplars are missing for at least one model (run `autointerp exemplars`)")
    test = mannwhitneyu(xa, xb, alternative="two-sided")
    effect = float(test.statistic) / (len(xa) * len(xb))
    what = metric.removeprefix("n_").removeprefix("top_").removesuffix("_spanned").replace("_", " ")
    ma, mb = float(np.median(xa)), float(np.median(xb))
    stats = (f"median {name_a} {ma:g} vs {name_b} {mb:g}, mean {xa.mean():.2f} vs {xb.mean():.2f}; "
             f"Mann-Whitney U={test.statistic:.0f}, p={test.pvalue:.2g}, P({name_a} > {name_b})={effect:.2f}")
    band = f"[{0.5 - min_effect:.2f}, {0.5 + min_effect:.2f}]"
    if test.pvalue >= alpha:
        finding = (f"{name_a} and {name_b} features span similar numbers of distinct {what} ({stats}, not significant at "
                   f"alpha={alpha:g}): the data do "
                   "not support calling one model entity-level and the other thematic.")
    elif abs(effect - 0.5) <= min_effect:
        finding = (f"{name_a} and {name_b} features span similar numbers of distinct {what} ({stats}): significant at "
                   f"alpha={alpha:g} but the effect is inside {band}, too small to call one model entity-level and the "
                   "other thematic (no meaningful difference).")
    else:
        broad, narrow = (name_a, name_b) if effect > 0.5 else (name_b, name_a)
        finding = (f"{broad} features span more distinct {what} than {narrow} features ({stats}; significant at alpha={alpha:g} "
                   f"and the effect is outside {band}): {broad} is the more thematic model, {narrow} the more entity-level one.")
    return AbstractionResult(metric, _summary(xa), _summary(xb), "mann-whitney-u (two-sided)", float(test.statistic),
                             float(test.pvalue), effect, finding, min_effect)


def compare_specificity(spec_a: np.ndarray | None, spec_b: np.ndarray | None) -> dict | None:
    """Mann-Whitney U between the models' label specificities (None without labels on both sides)."""
    if spec_a is None or spec_b is None:
        return None
    xa, xb = spec_a[np.isfinite(spec_a)], spec_b[np.isfinite(spec_b)]
    if len(xa) < 2 or len(xb) < 2:
        return None
    test = mannwhitneyu(xa, xb, alternative="two-sided")
    return {"a": _summary(xa), "b": _summary(xb), "test": "mann-whitney-u (two-sided)",
            "statistic": float(test.statistic), "p_value": float(test.pvalue)}
