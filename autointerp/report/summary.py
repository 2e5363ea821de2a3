"""The final console summary of a run: one row per model (rich table)."""

from __future__ import annotations

from rich.table import Table

from autointerp.report.artifacts import RunInputs
from autointerp.report.label_quality import label_counts, scorer_summaries


def summary_table(run: RunInputs) -> Table:
    table = Table(title=f"autointerp summary: {run.run_dir}")
    for col in ("model", "features", "dead", "labelled", "mean score vs shuffled baseline", "shared pairs"):
        table.add_column(col)
    for m in run.models:
        n_features = len(m.stats) if m.stats is not None else (m.metrics or {}).get("d_sae")
        dead = f"{int(m.stats['dead'].sum()):,}" if m.stats is not None else "n/a"
        if m.labels is None:
            labelled = "— (autointerp explain)"
        else:
            n, ok, failed = label_counts(m)
            labelled = f"{ok:,}/{n:,}" + (f" ({failed} failed)" if failed else "")
        scores = "\n".join(f"{s.scorer}: {s.mean_score:.3f} vs {s.mean_baseline:.3f}" for s in scorer_summaries(m.labels, m.scorers))
        if not scores:
            scores = "— (autointerp score)" if m.labels is not None else "—"
        shared = []
        for p in run.pairs:
            if m.slug not in (p.a, p.b):
                continue
            other = p.b if m.slug == p.a else p.a
            n_shared = (p.stats or {}).get("n_shared")
            shared.append(f"{n_shared:,} with {other}" if n_shared is not None else f"— with {other} (autointerp compare)")
        table.add_row(m.slug, f"{n_features:,}" if n_features is not None else "n/a", dead, labelled, scores, "\n".join(shared) or "—")
    return table
