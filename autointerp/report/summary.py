"""The final console summary of a run (rich tables): per model, its label scores, then per compared pair.

Per model: latents, dead, labelled, and the level its labels were scored at (token, or sequence: whole
documents). Label scores: per model and scorer the mean held-out score of each label kind side by side —
LLM, lexical, shuffled, and final (marked: per feature it is the LLM or the lexical label, so it is not a
third independent label) — with the share of features whose LLM label beats its lexical one, as in the
report's label-quality tables (``autointerp.eval.paired.compare_kinds``); under each scorer a "vs hard" row
gives the same means against hard negatives (held-out windows with the feature's main words where it does not
fire), when the labels were scored against them. Per pair: shared pairs and how the
two matchings agree, and its best matched pairs by name (label, else lexical name: ``explain.names``).
Numbers sit in their own short cells so an 80-column terminal wraps text, never a number.
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from autointerp.explain.names import LEGEND
from autointerp.report.artifacts import ModelInputs, RunInputs
from autointerp.report.label_quality import label_counts, score_level
from autointerp.report.selection import top_matches

TOP_PAIRS = 5  # matched pairs shown per compared pair, best combined rank first
NAME_CHARS = 60  # a name longer than this is cut (its "(lexical)" marker kept)
KIND_COLUMNS = (("llm", "LLM"), ("lexical", "lexical"), ("shuffled", "shuffled"), ("final", "final*"))
SCORES_CAPTION = ("shuffled: the same scorer on labels shuffled across features. final*: per feature the LLM or "
                  "the lexical label, whichever scored higher on its training windows. LLM>lex: features whose "
                  "LLM label beats its lexical one. vs hard: the row above against hard negatives (windows with "
                  "the feature's main words where it does not fire), over the features that have them.")


def summary_table(run: RunInputs) -> Group:
    models = Table(title=f"autointerp summary: {run.run_dir}")
    for col in ("model", "latents", "dead", "labelled", "level"):
        models.add_column(col, justify="right" if col in ("latents", "dead") else "left", no_wrap=col != "model",
                          min_width=10 if col == "model" else None)
    for m in run.models:
        n_features = len(m.stats) if m.stats is not None else (m.metrics or {}).get("d_sae")
        dead = f"{int(m.stats['dead'].sum()):,}" if m.stats is not None else "n/a"
        models.add_row(m.slug, f"{n_features:,}" if n_features is not None else "n/a", dead, _labelled(m), score_level(m))
    parts = [models, score_table(run)]
    if run.pairs:
        parts += [_pairs(run), top_pairs(run)]
    return Group(*parts)


def score_table(run: RunInputs) -> Table:
    """Per model and scorer: mean held-out score of the LLM, lexical, shuffled and final labels."""
    from autointerp.eval.paired import compare_kinds

    table = Table(title="label scores: mean held-out score per label kind", caption=SCORES_CAPTION)
    table.add_column("model", min_width=10)
    table.add_column("scorer", no_wrap=True)
    for _, header in KIND_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("LLM>lex", justify="right", no_wrap=True)
    for m in run.models:
        scorers = m.scorers if m.labels is not None else []
        if not scorers:
            table.add_row(m.slug, "—", *[""] * (len(KIND_COLUMNS) + 1), end_section=True)
            continue
        rows = []
        for scorer in scorers:
            rows.append((scorer, compare_kinds(m.labels, scorer)))
            hard = compare_kinds(m.labels, f"{scorer}_hard")
            if any(hard.counts.values()):  # a row of its own under its scorer: the table keeps to 80 columns
                rows.append(("  vs hard", hard))
        for i, (name, c) in enumerate(rows):
            cells = [_mean(c.means[kind]) for kind, _ in KIND_COLUMNS]
            beats = f"{c.llm_beats_lexical:.0%}" if c.n and not math.isnan(c.llm_beats_lexical) else "—"
            table.add_row(m.slug if i == 0 else "", name, *cells, beats, end_section=i == len(rows) - 1)
    return table


def _pairs(run: RunInputs) -> Table:
    pairs = Table(title="cross-model matching", caption="shared: activation correlation above the null; both: chosen by label and activation matching")
    for col in ("models", "shared", "act. pairs", "mean r", "both"):
        pairs.add_column(col, justify="left" if col == "models" else "right", no_wrap=col != "models")
    for p in run.pairs:
        s = p.stats or {}
        act, agree = s.get("activation") or {}, s.get("agreement") or {}
        cells = [_int(s.get("n_shared")), _int(act.get("n_pairs")), _float(act.get("mean_corr")), _int(agree.get("n_both"))]
        pairs.add_row(f"{p.a} vs {p.b}", *cells)
    return pairs


def top_pairs(run: RunInputs, n: int = TOP_PAIRS) -> Table:
    """The best ``n`` matched pairs of each compared pair (combined rank) with both features' names."""
    table = Table(title="best matched pairs", caption=LEGEND)
    for col in ("models", "A", "name A", "B", "name B", "r"):
        table.add_column(col, justify="right" if col in ("A", "B", "r") else "left", no_wrap=col in ("A", "B", "r"))
    for p in run.pairs:
        best = top_matches(p.matches, n)
        for i, r in enumerate(best.itertuples(index=False)):
            table.add_row(f"{p.a} vs {p.b}" if i == 0 else "", str(int(r.feature_a)), escape(p.name(p.a, int(r.feature_a), NAME_CHARS)),
                          str(int(r.feature_b)), escape(p.name(p.b, int(r.feature_b), NAME_CHARS)), _float(r.activation_corr),
                          end_section=i == len(best) - 1)
    return table


def _labelled(m: ModelInputs) -> str:
    if m.labels is None:
        return "—"
    n, ok, failed = label_counts(m)
    return f"{ok:,}/{n:,}" + (f" ({failed} failed)" if failed else "")


def _mean(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.3f}"


def _int(value) -> str:
    return "—" if value is None else f"{int(value):,}"


def _float(value) -> str:
    return "—" if value is None else f"{float(value):.3f}"
