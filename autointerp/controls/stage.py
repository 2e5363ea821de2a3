"""The controls stage: what a cross-model sharing fraction is read against, made with exactly the machinery
that made it (the same harvest path, SAE trainer, word units, Hungarian matching, nulls).

The controls are registered (``controls.config.CONTROL_REGISTRY``): the same-model ceiling
(``controls.ceiling``: a second SAE seed) and the random-weights floor (``controls.floor``) are built in. Each
comparison a control makes is its own stage run (records, resume, reuse) in ``runs/<name>/controls/``; the
summaries go to ``controls.json``, the only file outside its control directories this stage writes: a real
pair's calibration with its controls is assembled on reading (``controls.calibration.pair_calibration``).
"""

from __future__ import annotations

import dataclasses

from rich.table import Table

from autointerp.config import RunConfig
from autointerp.controls.calibration import entries
from autointerp.controls.registry import controls
from autointerp.fmt import pct
from autointerp.io import read_json
from autointerp.progress import console
from autointerp.rundir.cost import combine
from autointerp.rundir.layout import RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import StageRecord, StageResult


def _keep_cost(new: dict, old: dict | None) -> dict:
    """A control reused from disk keeps the cost it had when it ran (unchanged, so controls.json is too)."""
    if new.get("seconds") is None and old:
        return new | {"seconds": old.get("seconds"), "cost": old.get("cost")}
    return new


def run(cfg: RunConfig, *, overwrite: bool = False, models=None) -> StageResult:
    """Every registered control the config asks for, summarised in controls.json, which each real pair's
    calibration reads (the stage contract: ``autointerp.stages``; controls concern every configured model, so
    ``models`` is unused). The result's detail is the controls record (controls.json)."""
    with run_lock(cfg.run_path):
        cfg.controls.validate()
        run = RunDir(cfg.run_path)
        try:
            old = {(e["control"], e["label"]): e for e in entries(read_json(run.controls.record))}
        except (OSError, ValueError, KeyError, TypeError):
            old = {}
        record: dict = {"controls": {}, "off": {}}
        done, reused = [], []
        for control in controls():
            jobs, off = control.jobs(cfg)
            if off:
                key = f"{control.role}_shared_fraction"
                record["off"][key] = "; ".join(filter(None, (record["off"].get(key), off)))
            made = []
            for job in jobs:
                summary = control.make(cfg, job, overwrite=overwrite) | {"control": control.name, "role": control.role, "title": control.title}
                (done if summary.get("seconds") is not None else reused).append(f"{control.name}: {summary['label']}")
                made.append(_keep_cost(summary, old.get((control.name, summary["label"]))))
            record["controls"][control.name] = made
        made = [e for made in record["controls"].values() for e in made]
        record["seconds"] = round(sum(e["seconds"] for e in made if e.get("seconds") is not None), 1)
        record["cost"] = combine(*(e.get("cost") for e in made))  # every control's, as recorded when it ran
        record["settings"] = dataclasses.asdict(cfg.controls)
        run.controls.root.mkdir(parents=True, exist_ok=True)
        _save(run, record, [m.slug for m in cfg.models])
        _print(record)
        return StageResult("controls", tuple(done), tuple(reused), record)


def _save(run: RunDir, record: dict, slugs: list[str]) -> None:
    """controls.json: a stage record (stage, settings, inputs, complete, cost) that also carries each control's
    summary at the top level, where the calibration and the report read them."""
    body = {k: v for k, v in record.items() if k != "settings"}
    # its "cost" is every control's, as recorded when it ran (each control's own records hold the measured parts)
    StageRecord("controls", record["settings"], {"models": slugs}, summary={"seconds": record["seconds"]}, extra=body,
                cost=record["cost"] or {}).save(run.controls.record)


def _print(record: dict) -> None:
    table = Table(title="controls: what the cross-model sharing is read against")
    for col in ("control", "pair", "shared", "beyond words", "seconds"):
        table.add_column(col)
    for e in entries(record):
        table.add_row(f"{e['role']} ({e['title']})", e["label"], pct(e.get("shared_fraction")),
                      pct(e.get("beyond_lexical_fraction")), _secs(e.get("seconds")))
    console.print(table)


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"
