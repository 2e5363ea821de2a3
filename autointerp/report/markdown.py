"""Assemble report.md from the sections; every number is read from the run's artifacts.

Sections whose inputs are missing print the command that produces them instead (labels ->
`autointerp explain` / `autointerp score`, comparison -> `autointerp compare`), so a report can be made
at any point of a run.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path

from autointerp import __version__
from autointerp.report.artifacts import RunInputs
from autointerp.report.caveats import caveats_section
from autointerp.report.config import ReportConfig
from autointerp.report.cost import cost_section
from autointerp.report.crosscode import crosscode_section
from autointerp.report.fmt import md_text
from autointerp.report.headline import sweep_line
from autointerp.report.label_quality import label_section
from autointerp.report.matches import (
    abstraction_section,
    disagreement_section,
    domain_section,
    matched_table,
    summary_lines,
)
from autointerp.report.overview import metrics_section, setup_section
from autointerp.report.plots import Plot
from autointerp.report.class_sharing import class_section
from autointerp.report.matrix import by_scale, matrix_section, scale_section, sharing_matrix
from autointerp.report.universal import universal_section
from autointerp.report.universal_pages import report_href as universal_href
from autointerp.report.shared_sections import alone_section, beyond_words_section
from autointerp.report.verdict import calibration_details, verdict_markdown
from autointerp.rundir.layout import PAIR_PAGES_DIR, pair_page_name
from autointerp.rundir.windows import Window

LinkLookup = Callable[[str, int], str | None]


def build_markdown(run: RunInputs, cfg: ReportConfig, plots: dict[str, list[Plot]], exemplars: dict[tuple[str, int], Window],
                   link: LinkLookup, pages_index: str | None, source: str, cost: dict | None = None, universal: dict | None = None) -> str:
    """The full report. ``exemplars``: (model, feature) -> top window; ``link``: page path of a feature or None;
    ``cost``: the run's cost ledger (``autointerp.report.cost.run_cost``); ``universal``: ``report.universal.universal_of``
    (three or more models)."""
    names = " and ".join(f"`{m.slug}`" for m in run.models)
    out = [f"# Do {names} learn the same concepts?", "",
           f"Report on run `{md_text(run.run_dir.name)}` ({md_text(source)}), generated {_dt.date.today().isoformat()} by autointerp {__version__}. "
           "All numbers are read from the run's artifacts.", ""]
    if pages_index:
        out += [f"Browse the features: [feature pages]({pages_index}).", ""]
    verdicts = [(p, lines) for p in run.pairs if (lines := verdict_markdown(p))]
    if verdicts:
        out += ["## The verdict", ""]
        for p, lines in verdicts:
            out += ([f"### `{p.a}` vs `{p.b}`", ""] if len(run.pairs) > 1 else []) + lines + calibration_details(p) + [""]
        out += [sweep_line(run.sweep, {m.slug: m.layer for m in run.models}), ""]
    elif run.pairs:
        out += ["## The verdict", "", "_No verdict yet: run `autointerp compare` (and `autointerp controls` for the ceiling and floor)._", ""]
    matrix = sharing_matrix(run)
    out += matrix_section(matrix, next((x.path for x in plots.get("run", []) if Path(x.path).name.startswith("sharing_matrix")), None))
    out += scale_section(by_scale(run, matrix))

    def window(model: str, f: int) -> Window | None:
        return exemplars.get((model, f))

    def pair_link(p, fa: int, fb: int) -> str | None:
        ha, hb = link(p.a, fa), link(p.b, fb)
        return f"{ha.rsplit('/', 2)[0]}/{PAIR_PAGES_DIR}/{p.key}/{pair_page_name(fa, fb)}" if ha and hb else None

    compared = [p for p in run.pairs if p.matches is not None and p.stats is not None]
    if compared:
        out += ["## What is shared beyond words", ""]
        for p in compared:
            out += beyond_words_section(p, window, link, pair_link, cfg.exemplar_chars)
        out += ["## What one model has alone", ""]
        for p in compared:
            out += alone_section(p, window, link, cfg.exemplar_chars)
    out += universal_section(universal, run, window, link, cfg.exemplar_chars, universal_href if pages_index else None)
    out += class_section(run.run_dir, [m.slug for m in run.models])
    missing = [x for x in run.missing] + [x for m in run.models for x in m.missing] + [x for p in run.pairs for x in p.missing]
    if missing:
        out += ["**Not yet available** (the report shows everything else):", ""] + [f"- {x.md_hint()}" for x in missing] + [""]
    out += [setup_section(run), "", metrics_section(run), ""]
    out += _figures(plots.get("run", []), "density")
    out += [label_section(run), ""]
    out += _figures(plots.get("run", []), "label_scores")
    out += ["## Cross-model matching", ""]
    if not run.pairs:
        out += ["_Only one model configured: nothing to compare. Add a second [[models]] entry._", ""]
    for p in run.pairs:
        out += [f"### `{p.a}` vs `{p.b}`", ""]
        if p.matches is None or p.stats is None:
            out += [f"> {p.missing[0].md_hint()}", ""]
            continue
        out += summary_lines(p) + [""]
        out += [f"#### Matched concepts (best {min(cfg.max_matches, len(p.matches))} of {len(p.matches):,} pairs by combined rank)", ""]
        out += ["Exemplars: the feature's top window, its max-activating token in **bold**.", ""]
        out += [matched_table(p, cfg.max_matches, lambda model, f: exemplars.get((model, f)), link, cfg.exemplar_chars), ""]
        out += _figures(plots.get(p.key, []), "null_")
        out += _figures(plots.get(p.key, []), "similarity_")
        out += [disagreement_section(p, cfg.max_disagreements, link), domain_section(p)]
        out += _figures(plots.get(p.key, []), "domains_")
        out += [abstraction_section(p)]
    out += crosscode_section(run.run_dir, plots, pages_index)  # empty unless a crosscoder was trained (opt-in)
    out += cost_section(cost)
    out += [caveats_section(run)]
    return "\n".join(out).rstrip() + "\n"


def _figures(plots: list[Plot], stem: str) -> list[str]:
    return [line for x in plots if Path(x.path).name.startswith(stem) for line in (f"![{x.title}]({x.path})", "")]
