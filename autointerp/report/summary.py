"""The final console summary of a run (rich tables): per model, then per compared pair.

Per model: latents, dead, labelled, and one row per scorer with the mean score next to its
shuffled-label baseline. Per pair: shared pairs and how the two matchings agree. Numbers sit in their
own short cells so an 80-column terminal wraps text, never a number.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from autointerp.report.artifacts import ModelInputs, RunInputs
from autointerp.report.label_quality import label_counts, scorer_summaries


def summary_table(run: RunInputs) -> Group:
    models = Table(title=f"autointerp summary: {run.run_dir}", caption="baseline: the same scorer on labels shuffled across features")
    for col in ("model", "latents", "dead", "labelled", "scorer", "score", "baseline"):
        models.add_column(col, justify="right" if col in ("latents", "dead", "score", "baseline") else "left",
                          no_wrap=col != "model", min_width=10 if col == "model" else None)
    for m in run.models:
        n_features = len(m.stats) if m.stats is not None else (m.metrics or {}).get("d_sae")
        dead = f"{int(m.stats['dead'].sum()):,}" if m.stats is not None else "n/a"
        first = [m.slug, f"{n_features:,}" if n_features is not None else "n/a", dead, _labelled(m)]
        scores = [(s.scorer, f"{s.mean_score:.3f}", f"{s.mean_baseline:.3f}") for s in scorer_summaries(m.labels, m.scorers)] or [("—", "", "")]
        for i, score in enumerate(scores):
            models.add_row(*(first if i == 0 else ["", "", "", ""]), *score, end_section=i == len(scores) - 1)
    pairs = Table(title="cross-model matching", caption="shared: activation correlation above the null; both: chosen by label and activation matching")
    for col in ("models", "shared", "act. pairs", "mean r", "both"):
        pairs.add_column(col, justify="left" if col == "models" else "right", no_wrap=col != "models")
    for p in run.pairs:
        s = p.stats or {}
        act, agree = s.get("activation") or {}, s.get("agreement") or {}
        cells = [_int(s.get("n_shared")), _int(act.get("n_pairs")), _float(act.get("mean_corr")), _int(agree.get("n_both"))]
        pairs.add_row(f"{p.a} vs {p.b}", *cells)
    return Group(models, pairs) if run.pairs else Group(models)


def _labelled(m: ModelInputs) -> str:
    if m.labels is None:
        return "—"
    n, ok, failed = label_counts(m)
    return f"{ok:,}/{n:,}" + (f" ({failed} failed)" if failed else "")


def _int(value) -> str:
    return "—" if value is None else f"{int(value):,}"


def _float(value) -> str:
    return "—" if value is None else f"{float(value):.3f}"
