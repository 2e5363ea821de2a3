"""Report section on label quality: per model and scorer, the mean score next to its shuffled-label baseline.

The baseline is the same scorer run on labels shuffled across features (computed by `autointerp score`);
a label is only informative to the extent its score beats that baseline, so the two are always shown
together, with the difference.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from autointerp.report.artifacts import ModelInputs, RunInputs
from autointerp.report.fmt import count, md_table, md_text, num


class ScorerSummary(NamedTuple):
    scorer: str
    n: int  # features with a score
    mean_score: float
    mean_baseline: float  # NaN when no baseline column / values
    n_beating: int  # features whose score exceeds their baseline


def scorer_summaries(labels: pd.DataFrame | None, scorers: list[str]) -> list[ScorerSummary]:
    if labels is None:
        return []
    out = []
    for s in scorers:
        score = pd.to_numeric(labels[f"score_{s}"], errors="coerce")
        base = pd.to_numeric(labels[f"baseline_{s}"], errors="coerce") if f"baseline_{s}" in labels.columns else pd.Series(float("nan"), index=labels.index)
        scored = score.notna()
        both = scored & base.notna()
        out.append(ScorerSummary(s, int(scored.sum()), float(score[scored].mean()) if scored.any() else float("nan"),
                                 float(base[base.notna()].mean()) if base.notna().any() else float("nan"),
                                 int((score[both] > base[both]).sum())))
    return out


def label_counts(m: ModelInputs) -> tuple[int, int, int]:
    """(rows, ok, failed) of labels.parquet."""
    if m.labels is None:
        return 0, 0, 0
    status = m.labels["status"].astype(str)
    return len(m.labels), int((status == "ok").sum()), int((status == "failed").sum())


def label_section(run: RunInputs, top_labels: int = 5) -> str:
    lines = ["## Label quality", ""]
    for m in run.models:
        lines.append(f"### `{m.slug}`")
        lines.append("")
        if m.labels is None:
            lines.append(f"> Labels are missing: {next(x.md_hint() for x in m.missing if x.what.startswith('labels'))}")
            lines.append("")
            continue
        n, ok, failed = label_counts(m)
        meta = m.labels_meta or {}
        explainer = meta.get("explainer_model") or _first(m.labels, "explainer_model")
        lines.append(f"{count(ok)} of {count(n)} labelled features have a label ({count(failed)} failed); explainer: {md_text(explainer)}.")
        lines += _usage_lines(meta.get("usage") or {})
        if failed:
            reasons = m.labels.loc[m.labels["status"] == "failed", "error"].fillna("unknown").astype(str) if "error" in m.labels.columns else pd.Series(["unknown"] * failed)
            common = reasons.value_counts().head(3)
            lines.append("Most common failure reasons: " + "; ".join(f"{md_text(r, 80)} ({c})" for r, c in common.items()) + ".")
        lines.append("")
        summaries = scorer_summaries(m.labels, m.scorers)
        if not summaries:
            lines.append(f"> Label scores are missing: run `autointerp score` to score the labels of `{m.slug}`.")
            lines.append("")
            continue
        rows = [[s.scorer, count(s.n), num(s.mean_score), num(s.mean_baseline), num(s.mean_score - s.mean_baseline), f"{s.n_beating}/{s.n}"]
                for s in summaries]
        lines.append(md_table(["scorer", "features", "mean score", "shuffled-label baseline", "score − baseline", "beat their baseline"], rows))
        lines.append("")
        lines += _best_labels(m, summaries[0].scorer, top_labels)
    definitions = {}
    for m in run.models:
        definitions.update({k: v for k, v in ((m.labels_meta or {}).get("definitions") or {}).items() if k.startswith(("score_", "baseline_"))})
    if definitions:
        lines.append("Scorer definitions (from labels.json):")
        lines.append("")
        lines += [f"- *{md_text(k)}*: {md_text(v)}" for k, v in sorted(definitions.items())]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _usage_lines(usage: dict) -> list[str]:
    """LLM usage, flat ({prompt_tokens, ...}) or per stage ({"explain": {...}, "score": {...}})."""
    stages = {k: v for k, v in usage.items() if isinstance(v, dict)} or ({"LLM": usage} if usage else {})
    return [f"{md_text(name)} usage: {count(u.get('prompt_tokens'))} prompt + {count(u.get('completion_tokens'))} completion tokens, "
            f"{count(u.get('calls'))} calls, ${num(u.get('cost_usd') or 0.0, 4)}." for name, u in stages.items()]


def _best_labels(m: ModelInputs, scorer: str, n: int) -> list[str]:
    if n <= 0:
        return []
    frame = m.labels[m.labels["status"] == "ok"].copy()
    frame["best_score"] = pd.to_numeric(frame[f"score_{scorer}"], errors="coerce")
    frame = frame.dropna(subset=["best_score"]).sort_values("best_score", ascending=False).head(n)
    if frame.empty:
        return []
    rows = [[str(int(r.feature)), md_text(r.label, 100), num(r.best_score)] for r in frame.itertuples()]
    return [f"Best-scored labels ({scorer}):", "", md_table(["feature", "label", scorer], rows, ["r", "l", "r"]), ""]


def _first(frame: pd.DataFrame, column: str):
    if column not in frame.columns:
        return None
    values = frame[column].dropna()
    return None if values.empty else values.iloc[0]
