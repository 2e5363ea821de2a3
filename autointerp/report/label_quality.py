"""Report section on label quality: per model and scorer, LLM / lexical / shuffled (and final) label scores,
each against random negatives and, next to them, against hard negatives (issue 23: windows holding the
feature's main words where it does not fire), with the count of features that have none.

Three rows per scorer (issue 13): an LLM label is only worth reading if it beats both the shuffled-label
baseline (it says something about this feature) and the lexical label (it says more than the feature's words);
the paired test and effect size come from ``autointerp.eval.paired``.

The baseline is the same scorer run on labels shuffled across features (computed by `autointerp score`);
a label is only informative to the extent its score beats that baseline, so the two are always shown
together, with the difference.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from autointerp.report.artifacts import ModelInputs, RunInputs
from autointerp.report.fmt import count, md_table, md_text, num
from autointerp.report.label_classes import class_table


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


def score_level(m: ModelInputs) -> str:
    """The level the labels were scored at: labels.json's ``score_level`` (written by the score stage), else the
    harvest's level. "sequence": every scorer judged whole documents."""
    recorded = (m.labels_meta or {}).get("score_level")
    return str(recorded) if recorded else m.level


def _level_note(m: ModelInputs) -> list[str]:
    if score_level(m) != "sequence":
        return []
    return ["Scored at sequence level (the harvest has one activation per document): every scorer predicts or classifies "
            "whole held-out documents (how, per scorer: the scorer definitions below).", ""]


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
        if summaries:
            lines += _level_note(m)
        if not summaries:
            lines.append(f"> Label scores are missing: run `autointerp score` to score the labels of `{m.slug}`.")
            lines.append("")
            continue
        if any(f"lexical_{s.scorer}" in m.labels.columns for s in summaries):
            lines += kind_table(m, [s.scorer for s in summaries])
        else:
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


def kind_table(m: ModelInputs, scorers: list[str]) -> list[str]:
    """Per scorer, a row per label kind (LLM, lexical, shuffled, final) against random negatives and, next to
    it, against hard negatives (each compared with the shuffled labels on the same negatives); a verdict each."""
    from autointerp.eval.paired import compare_kinds

    rows, verdicts = [], []
    names = {"llm": "LLM labels", "lexical": "lexical labels", "word": "word-only labels", "shuffled": "shuffled labels",
             "final": "final labels (kept per feature)"}
    for scorer in scorers:
        comparisons = [(negatives, compare_kinds(m.labels, column, title))
                       for negatives, column, title in (("random", scorer, scorer), ("hard", f"{scorer}_hard", f"{scorer} against hard negatives"))]
        comparisons = [(negatives, c) for negatives, c in comparisons if any(c.counts.values())]
        for kind, name in names.items():
            for negatives, c in comparisons:
                if c.counts[kind] == 0:
                    continue
                margin = c.means[kind] - c.means["shuffled"] if kind != "shuffled" else float("nan")
                paired = f"{c.llm_beats_lexical:.0%} (p = {c.p_value:.3g}, r = {c.effect_size:+.2f})" if kind == "llm" and c.n else ""
                rows.append([scorer, name, negatives, count(c.counts[kind]), num(c.means[kind]), num(margin) if kind != "shuffled" else "", paired])
        verdicts += [c.verdict() for _, c in comparisons]
    out = [md_table(["scorer", "labels", "negatives", "features", "mean held-out score", "− shuffled", "LLM > lexical (Wilcoxon p, rank-biserial r)"], rows), ""]
    out += [f"- {v}" for v in verdicts]  # numbers only, no corpus text
    out += hard_negative_lines(m.labels)
    out += [""] + [line for scorer in scorers for line in class_table(m.labels, scorer)]
    source = m.labels["label_source"].value_counts() if "label_source" in m.labels.columns else pd.Series(dtype=int)
    if len(source):
        out.append(f"- Final label per feature (the LLM or the lexical label, whichever scored higher on the feature's *training* windows; "
                   f"the word-only label where it led that by a clear margin): LLM for {count(int(source.get('llm', 0)))}, "
                   f"lexical for {count(int(source.get('lexical', 0)))}, word-only for {count(int(source.get('word', 0)))}.")
    checks = (m.labels_meta or {}).get("copy_checks") or {}
    if checks.get("restating_rate") is not None:
        out.append(f"- Copy checks: {checks['restating_rate']:.0%} of kept LLM labels restate a fragment of a window shown to the explainer; "
                   f"{count(checks.get('template_copies_rejected', 0))} of {count(checks.get('n_llm_candidates', 0))} LLM candidates copied the prompt template and were rejected.")
    return out + [""]


def hard_negative_lines(labels: pd.DataFrame) -> list[str]:
    """What the hard-negative rows mean, and how many scored features have no hard negatives (and why)."""
    if "n_hard_negatives" not in labels.columns:
        return ["- Hard negatives: not scored (these labels were scored before hard negatives existed; run "
                "`autointerp exemplars --overwrite`, then `autointerp score --overwrite`)."]
    scored = labels[pd.to_numeric(labels["n_hard_negatives"], errors="coerce").notna()]
    none = scored[pd.to_numeric(scored["n_hard_negatives"], errors="coerce") == 0]
    out = ["- Hard negatives (the rows with negatives 'hard'): held-out windows holding the feature's main words where it does not "
           "fire, in place of the random windows; a label that only names the words scores near the shuffled labels there. "
           f"{count(len(none))} of {count(len(scored))} scored features have none, so they have no hard-negative scores "
           "(not chance scores) and the hard rows average the other features."]
    if len(none) and "hard_negatives_missing" in none.columns:
        reasons = none["hard_negatives_missing"].fillna("unknown").astype(str).value_counts()
        out.append("- Why: " + "; ".join(f"{md_text(r, 140)} ({c})" for r, c in reasons.items()) + ".")
    return out


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
    if "label_source" in frame.columns and f"final_{scorer}" in frame.columns:
        frame = m.labels[m.labels["status"] == "ok"].copy()
        frame["best_score"] = pd.to_numeric(frame[f"final_{scorer}"], errors="coerce")
        frame = frame.dropna(subset=["best_score"])
        frame = frame.sort_values("best_score", ascending=False).head(n)
        rows = [[str(int(r.feature)), md_text(r.label, 100), md_text(r.label_source), num(r.best_score)] for r in frame.itertuples()]
        return [f"Best-scored final labels ({scorer}):", "", md_table(["feature", "label", "kept", scorer], rows, ["r", "l", "l", "r"]), ""]
    rows = [[str(int(r.feature)), md_text(r.label, 100), num(r.best_score)] for r in frame.itertuples()]
    return [f"Best-scored labels ({scorer}):", "", md_table(["feature", "label", scorer], rows, ["r", "l", "r"]), ""]


def _first(frame: pd.DataFrame, column: str):
    if column not in frame.columns:
        return None
    values = frame[column].dropna()
    return None if values.empty else values.iloc[0]
