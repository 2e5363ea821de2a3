"""`autointerp report` and ``report_all`` (the last step of `autointerp run`).

Both write report.md, plots/ and pages/ (into the run directory, or --out DIR) and print a summary
table per model: features, dead, labelled, mean label scores against their shuffled-label baselines,
and shared pairs, followed by the paths to open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autointerp.cli_common import (
    ConfigOpt,
    NameOpt,
    OverwriteOpt,
    RunDirOpt,
    friendly_errors,
    load_run_config,
    with_flags,
)
from autointerp.config import RunConfig
from autointerp.progress import console

OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write report.md, plots/ (and pages/) into this directory instead of the run directory, e.g. reports/.")]
PagesOpt = Annotated[Optional[bool], typer.Option("--pages/--no-pages", help="Write the HTML feature pages (default: the run config's report.pages, true).")]


@friendly_errors
def report(
    out: OutOpt = None,
    pages: PagesOpt = None,
    max_matches: Annotated[Optional[int], typer.Option(help="Rows of the matched-concepts table.")] = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Write the markdown report (with plots) and HTML feature pages from a run's artifacts."""
    cfg = load_run_config(config, run_dir, name)
    cfg.report = with_flags(cfg.report, pages=pages, max_matches=max_matches)
    _report(cfg, out, overwrite)


def report_all(cfg: RunConfig, overwrite: bool = False) -> None:
    """The report step of `autointerp run`: everything into the run directory."""
    _report(cfg, None, overwrite)


def _report(cfg: RunConfig, out: Path | None, overwrite: bool) -> None:
    from autointerp.report.stage import report_stage
    from autointerp.report.summary import summary_table

    outcome = report_stage(cfg, out, overwrite=overwrite)
    console.print(summary_table(outcome.run))
    state = "unchanged (inputs and settings as before)" if outcome.skipped else "written"
    console.print(f"report {state}: [bold]{outcome.report}[/]", highlight=False, soft_wrap=True)
    if outcome.pages_index is not None:
        console.print(f"feature pages: [bold]{outcome.pages_index}[/] ({sum(outcome.pages.values()):,} pages)", highlight=False, soft_wrap=True)
    for hint in sorted({x.hint() for x in _missing(outcome.run)}):
        console.print(f"[yellow]note:[/] {hint}", highlight=False, soft_wrap=True)


def _missing(run):
    return [*run.missing, *(x for m in run.models for x in m.missing), *(x for p in run.pairs for x in p.missing)]
