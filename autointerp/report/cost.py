"""The report's "Run cost" section and report.json's ``cost``: what each stage of the last ``autointerp run``
cost, read from the run's cost ledger (``autointerp.rundir.stage_cost``; cost.json is not a report input,
so a re-run that only re-measures leaves the report as it was)."""

from __future__ import annotations

from pathlib import Path

from autointerp.report.fmt import md_table, md_text
from autointerp.rundir.cost_table import cost_rows
from autointerp.rundir.stage_cost import load_ledger, with_stage


def run_cost(run_dir: Path, own: dict | None) -> dict | None:
    """The ledger with the report's own cost so far (``own``: measured now, under ``autointerp run``); None
    when nothing was ever measured (a run made by single-stage commands, or before costs were recorded)."""
    ledger = with_stage(load_ledger(run_dir), "report", own)
    return ledger if ledger["stages"] else None


def cost_section(cost: dict | None) -> list[str]:
    out = ["## Run cost", ""]
    if cost is None:
        return out + ["_Not measured: `autointerp run` records each stage's cost (cost.json)._", ""]
    header, rows = cost_rows(cost)
    rows = [[md_text(row[0]), *row[1:]] for row in rows]
    rss = ("the process's peak so far (this system cannot reset the mark)" if cost["total"].get("rss_scope") == "process"
           else "the stage's own peak (the kernel's high-water mark, reset at the stage's start; exact, not sampled)")
    return out + [
        "What each stage of the last `autointerp run` cost on this machine (`cost.json`; each record holds its own part). "
        "A reused stage (`reused`: its outputs were up to date) shows the cost it had when it ran; a stage with no row had "
        "nothing to do, or was made before costs were recorded; the report's own row runs up to writing this file. "
        f"Wall and CPU seconds (CPU: every thread, so it can exceed wall); peak RSS: the process's resident memory at its "
        f"highest during the stage, {rss}, including what earlier stages left loaded. The total adds the times and takes "
        "the largest peak." + (" CUDA: seconds between events recorded on the device at the stage's start and end; peak GPU: "
                               "`torch.cuda.max_memory_allocated` during the stage." if "CUDA (s)" in header else ""),
        "", md_table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2)), ""]
