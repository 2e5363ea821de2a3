"""The report stage: read the run's artifacts, write report.md, plots/ and pages/, print the summary.

A no-op on re-run when the [report] config, the output options and every input file are unchanged: the
stage record (settings + sha256 of each input that exists) is ``report.json`` next to report.md, written
last, so an interrupted report simply runs again (all outputs are written atomically).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

from autointerp.config import RunConfig
from autointerp.io import atomic_path, file_sha256
from autointerp.progress import console
from autointerp.report.artifacts import RunInputs, load_run_inputs, require_run_dir
from autointerp.report.config import ReportConfig
from autointerp.report.cost import run_cost
from autointerp.report.crosscode import crosscode_plots, record_files
from autointerp.report.markdown import build_markdown
from autointerp.report.selection import top_matches
from autointerp.report.pages import page_link, shown_windows, write_pages
from autointerp.report.plots import all_plots
from autointerp.report.selection import page_features
from autointerp.report.class_sharing import class_sharing
from autointerp.report.matrix import by_scale, matrix_console, sharing_matrix
from autointerp.report.universal import MAX_ROWS as UNIVERSAL_ROWS
from autointerp.report.universal import universal_of
from autointerp.report.shared_sections import listed
from autointerp.report.summary import summary_table
from autointerp.report.verdict import verdict_console, verdict_of
from autointerp.rundir.layout import ReportDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.rundir.stage_cost import charge

log = logging.getLogger("autointerp")



class ReportOutcome(NamedTuple):
    report: Path
    pages_index: Path | None
    plots: list[Path]
    pages: dict[str, int]  # pages written per model (empty when pages are off)
    skipped: bool  # inputs and config unchanged: nothing rewritten
    run: RunInputs


def _inputs(run: RunInputs) -> dict:
    inputs = {}
    for path in run.input_files() + record_files(run.run_dir):  # + the crosscoders (opt-in stage)
        if path.is_file():
            stat = path.stat()
            inputs[str(path.relative_to(run.run_dir))] = f"{stat.st_size}:{file_sha256(path)}"
    return inputs


def report_stage(cfg: RunConfig, out_dir: Path | None = None, *, overwrite: bool = False, progress: bool = True) -> ReportOutcome:
    """Write the report for ``cfg``'s run into ``out_dir`` (default: the run directory)."""
    rcfg = cfg.report
    rcfg.validate()
    run = load_run_inputs(cfg)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    where = ReportDir(out)
    settings = {"report": dataclasses.asdict(rcfg), "models": [m.slug for m in run.models], "out_dir": str(out.resolve())}
    inputs = _inputs(run)
    previous = StageRecord.load(where.record)
    if decide(previous, settings, inputs, overwrite=overwrite, where=where.markdown) is Decision.REUSE and where.markdown.is_file():
        done = previous.summary
        outputs = [Path(p) for p in done.get("plots", [])] + ([Path(done["pages_index"])] if done.get("pages_index") else [])
        if all(p.is_file() for p in outputs):
            return ReportOutcome(where.markdown, Path(done["pages_index"]) if done.get("pages_index") else None,
                                 [Path(p) for p in done.get("plots", [])], done.get("pages", {}), True, run)

    plots = {**all_plots(run, out), **crosscode_plots(run.run_dir, out)} if rcfg.plots else {}
    _remove_stale_plots(out, plots)
    universal = universal_of(run)  # read once: the windows, report.md and report.json all use it
    windows = _load_windows(run, rcfg, universal)
    pages = write_pages(run, rcfg, out, progress=progress, windows=windows, universal=universal) if rcfg.pages else None
    if not rcfg.pages:
        _remove_tree(where.pages)
    paged = {model: set(features) for model, features in pages.features.items()} if pages else {}

    def link(model: str, feature: int) -> str | None:
        return page_link(model, feature) if feature in paged.get(model, ()) else None

    exemplars = {(model, f): ws[0] for model, per in windows.items() for f, ws in per.items() if ws and ws[0].kind == "top"}
    cost = run_cost(run.run_dir, charge(where.record))  # the report's own cost up to here, under `autointerp run`
    text = build_markdown(run, rcfg, plots, exemplars, link, page_link() if pages else None, str(run.run_dir), cost, universal)
    with atomic_path(where.markdown) as tmp:
        tmp.write_text(text, encoding="utf-8")
    plot_paths = [out / x.path for group in plots.values() for x in group]
    pages_index = pages.index if pages else None
    summary = {"pages_index": str(pages_index) if pages_index else None, "plots": [str(p) for p in plot_paths], "pages": pages.counts if pages else {}}
    verdicts = {p.key: v for p in run.pairs if (v := verdict_of(p))}
    extra = {"verdict": next(iter(verdicts.values()), None), "verdicts": verdicts}  # "verdict": the first pair's (the two-model case)
    extra |= {"cost": cost} if cost is not None else {}
    classes = {m.slug: frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
               for m in run.models if (frame := class_sharing(run.run_dir, m.slug)) is not None}
    extra |= {"classes": classes} if classes else {}  # per model and class: count, shared / beyond-words in pair, ceiling, floor
    matrix = sharing_matrix(run)
    extra |= {"matrix": matrix} if matrix else {}  # three or more models: the verdict columns of every pair
    scale = by_scale(run, matrix)
    extra |= {"scale": scale} if scale else {}  # sharing with the first model against the others' parameter counts
    extra |= {"universal": universal} if universal else {}  # three or more models: the features every model has
    StageRecord("report", settings, inputs, summary=summary, extra=extra).save(where.record)
    return ReportOutcome(where.markdown, pages_index, plot_paths, pages.counts if pages else {}, False, run)


def _load_windows(run: RunInputs, rcfg: ReportConfig, universal: dict | None) -> dict[str, dict[int, list]]:
    """One read of each exemplars.parquet for both the matched-concepts table (the top window of each
    feature in it) and the feature pages (top and quantile windows)."""
    wanted: dict[str, set[int]] = {m.slug: set() for m in run.models}
    for p in run.pairs:
        best = top_matches(p.matches, rcfg.max_matches)
        if not best.empty:
            wanted[p.a] |= {int(f) for f in best["feature_a"]}
            wanted[p.b] |= {int(f) for f in best["feature_b"]}
        for model, features in listed(p)[0].items():  # the beyond-words and alone sections' windows
            wanted[model] |= set(features)
    for chain in (universal or {}).get("chains", [])[:UNIVERSAL_ROWS]:  # the universal features' windows
        for model, f in chain["features"].items():
            wanted.setdefault(model, set()).add(int(f))
    if rcfg.pages:
        for model, features in page_features(run, rcfg).items():
            wanted[model] |= set(features)
    n_top = max(1, rcfg.page_top_windows if rcfg.pages else 1)
    n_quantile = rcfg.page_quantile_windows if rcfg.pages else 0
    return {m.slug: shown_windows(m.exemplars_path, wanted[m.slug], n_top, n_quantile) for m in run.models}


def _remove_stale_plots(out: Path, plots: dict) -> None:
    """PNGs in plots/ that this report did not write (e.g. a pair no longer configured)."""
    keep = {Path(x.path).name for group in plots.values() for x in group}
    folder = ReportDir(out).plots
    if folder.is_dir():
        for png in folder.glob("*.png"):
            if png.name not in keep:
                png.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)


def run(cfg: RunConfig, *, overwrite: bool = False, models=None, out: Path | None = None) -> StageResult:
    """Write the report into ``out`` (default: the run directory) and print the summary table and paths (the
    stage contract: ``autointerp.stages``; the report covers every model of the run, so ``models`` is unused).
    Only a report written into the run directory takes its lock; ``--out`` elsewhere just reads the run.
    The result's detail is the ``ReportOutcome``."""
    require_run_dir(cfg.run_path)  # before the lock, which would create it
    with run_lock(cfg.run_path, enabled=out is None or Path(out).resolve().is_relative_to(cfg.run_path.resolve())):
        outcome = report_stage(cfg, out, overwrite=overwrite)
    for table in verdict_console(outcome.run):
        console.print(table)
    console.print(summary_table(outcome.run))
    if (matrix := matrix_console(sharing_matrix(outcome.run))) is not None:
        console.print(matrix)
    state = "unchanged (inputs and settings as before)" if outcome.skipped else "written"
    console.print(f"report {state}: [bold]{outcome.report}[/]", highlight=False, soft_wrap=True)
    if outcome.pages_index is not None:
        console.print(f"feature pages: [bold]{outcome.pages_index}[/] ({sum(outcome.pages.values()):,} pages)", highlight=False, soft_wrap=True)
    for hint in sorted({x.hint() for x in _missing(outcome.run)}):
        console.print(f"[yellow]note:[/] {hint}", highlight=False, soft_wrap=True)
    where = str(outcome.report.parent)
    return StageResult("report", () if outcome.skipped else (where,), (where,) if outcome.skipped else (), outcome)


def _missing(run):
    return [*run.missing, *(x for m in run.models for x in m.missing), *(x for p in run.pairs for x in p.missing)]
