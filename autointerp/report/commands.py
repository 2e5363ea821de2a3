"""``autointerp report``: the flags of the report stage (the work is in ``stage``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autointerp.cli_common import (
    ConfigOpt,
    NameOpt,
    OverwriteOpt,
    RunDirOpt,
    SaeOpt,
    check_sae_in_run,
    friendly_errors,
    load_run_config,
    with_flags,
)

OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write report.md, plots/ (and pages/) into this directory instead of the run directory, e.g. reports/.")]
PagesOpt = Annotated[Optional[bool], typer.Option("--pages/--no-pages", help="Write the HTML feature pages (default: the run config's report.pages, true).")]


@friendly_errors
def report(
    out: OutOpt = None,
    pages: PagesOpt = None,
    max_matches: Annotated[Optional[int], typer.Option(help="Rows of the matched-concepts table.")] = None,
    sae: SaeOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Write the markdown report (with plots) and HTML feature pages from a run's artifacts."""
    cfg = load_run_config(config, run_dir, name, sae=sae)
    cfg.report = with_flags(cfg.report, pages=pages, max_matches=max_matches)
    check_sae_in_run(cfg)
    from autointerp.report.stage import write_report

    write_report(cfg, out, overwrite)
