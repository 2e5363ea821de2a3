"""The report stage: read the run's artifacts, write report.md, plots/ and pages/.

A no-op on re-run when the [report] config, the output options and every input file are unchanged: the
identity (config + sha256 of each input that exists) is stored in ``report.json`` next to report.md,
written last, so an interrupted report simply runs again (all outputs are written atomically).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

from autointerp.config import RunConfig
from autointerp.io import atomic_path, file_sha256, read_json, write_json
from autointerp.report.artifacts import RunInputs, load_run_inputs
from autointerp.report.config import ReportConfig
from autointerp.report.markdown import build_markdown
from autointerp.report.matches import top_matches
from autointerp.report.pages import PAGES_DIR, write_pages
from autointerp.report.plots import PLOTS_DIR, all_plots
from autointerp.report.selection import page_features
from autointerp.report.windows import load_windows

log = logging.getLogger("autointerp")

REPORT_FILE = "report.md"
RECORD_FILE = "report.json"


class ReportOutcome(NamedTuple):
    report: Path
    pages_index: Path | None
    plots: list[Path]
    pages: dict[str, int]  # pages written per model (empty when pages are off)
    skipped: bool  # inputs and config unchanged: nothing rewritten
    run: RunInputs


def _identity(run: RunInputs, cfg: ReportConfig, out_dir: Path) -> dict:
    inputs = {}
    for path in run.input_files():
        if path.is_file():
            stat = path.stat()
            inputs[str(path.relative_to(run.run_dir))] = f"{stat.st_size}:{file_sha256(path)}"
    return {"report": dataclasses.asdict(cfg), "models": [m.slug for m in run.models], "out_dir": str(out_dir.resolve()),
            "inputs": inputs, "version": 1}


def report_stage(cfg: RunConfig, out_dir: Path | None = None, *, overwrite: bool = False, progress: bool = True) -> ReportOutcome:
    """Write the report for ``cfg``'s run into ``out_dir`` (default: the run directory)."""
    rcfg = cfg.report
    rcfg.validate()
    run = load_run_inputs(cfg)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    identity = _identity(run, rcfg, out)
    record_path = out / RECORD_FILE
    if not overwrite and record_path.is_file() and (out / REPORT_FILE).is_file():
        record = read_json(record_path)
        outputs = [Path(p) for p in record.get("plots", [])] + ([Path(record["pages_index"])] if record.get("pages_index") else [])
        if record.get("identity") == identity and all(p.is_file() for p in outputs):
            return ReportOutcome(out / REPORT_FILE, Path(record["pages_index"]) if record.get("pages_index") else None,
                                 [Path(p) for p in record.get("plots", [])], record.get("pages", {}), True, run)

    plots = all_plots(run, out) if rcfg.plots else {}
    _remove_stale_plots(out, plots)
    windows = _load_windows(run, rcfg)
    pages = write_pages(run, rcfg, out, progress=progress, windows=windows) if rcfg.pages else None
    if not rcfg.pages:
        _remove_tree(out / PAGES_DIR)
    paged = {model: set(features) for model, features in pages.features.items()} if pages else {}

    def link(model: str, feature: int) -> str | None:
        return f"{PAGES_DIR}/{model}/{feature}.html" if feature in paged.get(model, ()) else None

    exemplars = {(model, f): ws[0] for model, per in windows.items() for f, ws in per.items() if ws and ws[0].kind == "top"}
    text = build_markdown(run, rcfg, plots, exemplars, link, f"{PAGES_DIR}/index.html" if pages else None, str(run.run_dir))
    with atomic_path(out / REPORT_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")
    plot_paths = [out / x.path for group in plots.values() for x in group]
    pages_index = pages.index if pages else None
    write_json(record_path, {"identity": identity, "pages_index": str(pages_index) if pages_index else None,
                             "plots": [str(p) for p in plot_paths], "pages": pages.counts if pages else {}})
    return ReportOutcome(out / REPORT_FILE, pages_index, plot_paths, pages.counts if pages else {}, False, run)


def _load_windows(run: RunInputs, rcfg: ReportConfig) -> dict[str, dict[int, list]]:
    """One read of each exemplars.parquet for both the matched-concepts table (the top window of each
    feature in it) and the feature pages (top and quantile windows)."""
    wanted: dict[str, set[int]] = {m.slug: set() for m in run.models}
    for p in run.pairs:
        best = top_matches(p.matches, rcfg.max_matches)
        if not best.empty:
            wanted[p.a] |= {int(f) for f in best["feature_a"]}
            wanted[p.b] |= {int(f) for f in best["feature_b"]}
    if rcfg.pages:
        for model, features in page_features(run, rcfg).items():
            wanted[model] |= set(features)
    n_top = max(1, rcfg.page_top_windows if rcfg.pages else 1)
    n_quantile = rcfg.page_quantile_windows if rcfg.pages else 0
    return {m.slug: load_windows(m.exemplars_path, wanted[m.slug], n_top, n_quantile) for m in run.models}


def _remove_stale_plots(out: Path, plots: dict) -> None:
    """PNGs in plots/ that this report did not write (e.g. a pair no longer configured)."""
    keep = {Path(x.path).name for group in plots.values() for x in group}
    folder = out / PLOTS_DIR
    if folder.is_dir():
        for png in folder.glob("*.png"):
            if png.name not in keep:
                png.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
