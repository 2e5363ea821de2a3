"""The cost of each stage of ``autointerp run``, charged to the records the stage writes, and the run's cost
ledger ``cost.json``.

``RunCost.stage(name)`` measures a stage (``autointerp.rundir.cost``) and, while it runs, cuts its work into
segments at every stage-record write (``layout.STAGE_RECORDS``: harvest.json, train.json, labels.json, ...,
seen through ``autointerp.io.on_write``). A segment is charged to the record written at its end, so a stage
that works model by model or pair by pair gets one *part* per record directory (``gemma-3-270m/sae``,
``compare/A__B``) without the stage knowing, and ``StageRecord.save`` (and the harvest manifest) store their
part's cost in the record itself (``charge``). A stage writes a record exactly when it does work, so a
stage or part that wrote none reused its outputs: the ledger keeps the cost it had when it ran, with
``"ran": false``. cost.json (and report.json's ``cost``)::

    {"stages": [{"stage": "harvest", "ran": true, "wall_s": .., "cpu_s": .., "peak_rss_mb": ..,
                 ("cuda_s": .., "peak_gpu_mb": ..,) "parts": {"gemma-3-270m/harvest": {..., "ran": true}, ...}},
                ...],
     "total": {"wall_s": .., "cpu_s": .., "peak_rss_mb": .., ...}}

Stages are in the order the last run finished them; a stage appearing twice in one run (compare, before
and after explain) is one entry, the two added, placed where it last finished. The total adds the stages'
times and takes their largest peaks, reused stages at their recorded cost. A stage that neither ran nor
has a recorded cost (off, or reused from before costs were recorded) has no entry. ``autointerp run`` measures
from after each stage's module is imported. A stage run by its own command (``autointerp compare``, ...) is
measured the same way from the command's start (``command_cost``): its entry replaces the stage's in cost.json
and its records carry their cost; the other stages' entries stay as they were.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from autointerp.io import on_write, read_json, write_json
from autointerp.rundir.cost import Measurement, combine
from autointerp.rundir.layout import STAGE_RECORDS, RunDir

_ACTIVE: _StageMeter | None = None  # the stage `autointerp run` (or a stage command) is measuring now
_RUN_ROOT: Path | None = None  # the run directory the running command resolved (``note_run``)


def note_run(root: Path | str | None) -> None:
    """The run directory the command works on (set where every command's config is resolved), so a stage
    command's cost goes to that run's ledger."""
    global _RUN_ROOT
    _RUN_ROOT = Path(root) if root is not None else None


class _StageMeter:
    """One stage's segments, summed per part (the directory of the record each segment ended with)."""

    def __init__(self, root: Path | None) -> None:
        self._root = os.path.abspath(root) if root is not None else None
        self.parts: dict[str, dict] = {}
        self.lock = threading.Lock()  # records are also written from worker threads (harvest shards)
        self.segment = Measurement().start()
        self.charged: str | None = None  # the record charged just before its write (its cost is in it)

    @property
    def root(self) -> str:
        """The run directory (a stage command's is known once its config is resolved: ``note_run``)."""
        return self._root or os.path.abspath(_RUN_ROOT or ".")

    def part(self, record: Path) -> str:
        folder = os.path.abspath(Path(record).parent)
        rel = os.path.relpath(folder, self.root)
        return folder if rel.startswith("..") else Path(rel).as_posix()

    def charge(self, record: Path) -> dict:
        with self.lock:
            cost, self.segment = self.segment.stop(), Measurement().start()
            key, self.charged = self.part(record), os.path.abspath(record)
            self.parts[key] = combine(self.parts.get(key), cost)
            return dict(self.parts[key])

    def written(self, path: Path) -> None:
        """A record written: charge the segment to it, unless the writer charged it just before (then the
        record holds exactly its part's cost, and writing it counts towards the next segment)."""
        if path.name not in STAGE_RECORDS:
            return
        with self.lock:
            charged, self.charged = self.charged, None
        if os.path.abspath(path) != charged:
            self.charge(path)

    def close(self) -> None:
        self.segment.stop()


def charge(record: Path) -> dict | None:
    """What the running stage's work for ``record`` (its part) has cost so far; None outside ``autointerp run``."""
    meter = _ACTIVE
    return meter.charge(record) if meter is not None else None


def load_ledger(run_root: Path) -> dict:
    """cost.json of the run (empty when there is none or it is unreadable)."""
    try:
        ledger = read_json(RunDir(Path(run_root)).cost)
    except (OSError, ValueError):
        return {"stages": [], "total": {}}
    return {"stages": list(ledger.get("stages") or []), "total": ledger.get("total") or {}}


def _reused(entry: dict) -> dict:
    parts = {k: v | {"ran": False} for k, v in (entry.get("parts") or {}).items()}
    return entry | {"ran": False} | ({"parts": parts} if parts else {})


def _entry(name: str, measured: dict, parts: dict[str, dict], old: dict | None) -> dict | None:
    if not parts:  # no record written: the stage reused its outputs
        return _reused(old) if old else None
    kept = {k: v for k, v in _reused(old or {}).get("parts", {}).items() if k not in parts}
    return {"stage": name, **measured, "ran": True, "parts": kept | {k: v | {"ran": True} for k, v in parts.items()}}


def with_totals(stages: list[dict]) -> dict:
    return {"stages": stages, "total": combine(*stages)}


def with_stage(ledger: dict, name: str, cost: dict | None) -> dict:
    """``ledger`` with ``name``'s entry replaced by ``cost`` measured now (the report's own, before the run
    records it); unchanged when ``cost`` is None (not under ``autointerp run``)."""
    if cost is None:
        return ledger
    stages = [s for s in ledger["stages"] if s.get("stage") != name] + [{"stage": name, **cost, "ran": True}]
    return with_totals(stages)


class RunCost:
    """The stages of one ``autointerp run``: ``stage(name)`` measures one and keeps cost.json current."""

    def __init__(self, run_root: Path) -> None:
        self.root = Path(run_root)
        self.before = {s["stage"]: s for s in load_ledger(self.root)["stages"] if s.get("stage")}
        self.now: dict[str, tuple[dict, dict[str, dict]]] = {}  # stage -> (measured, parts) in this run, in order

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the stage in the block; a stage that raises is not recorded (its written records keep theirs)."""
        global _ACTIVE
        whole = Measurement().start()
        meter = _ACTIVE = _StageMeter(self.root)
        stop_watching = on_write(meter.written)
        try:
            yield
        finally:
            stop_watching()
            _ACTIVE = None
            meter.close()
            measured = whole.stop()
        measured_before, parts_before = self.now.pop(name, ({}, {}))
        parts = {k: combine(parts_before.get(k), meter.parts.get(k)) for k in parts_before.keys() | meter.parts.keys()}
        self.now[name] = (combine(measured_before, measured), parts)
        write_json(RunDir(self.root).cost, self.ledger())

    def ledger(self) -> dict:
        """This run's stages in order, then the stages it did not reach, kept with ``"ran": false``."""
        stages = [_entry(name, measured, parts, self.before.get(name)) for name, (measured, parts) in self.now.items()]
        stages += [_reused(old) for name, old in self.before.items() if name not in self.now]
        return with_totals([s for s in stages if s is not None])


@contextlib.contextmanager
def command_cost(name: str) -> Iterator[None]:
    """Measure a single-stage command (``name``: its stage) like a stage of ``autointerp run``: its records carry
    their part's cost and, when it did work, its entry in the run's cost.json is replaced (other stages kept as
    they are). A command that fails, or resolves no run directory, leaves the ledger untouched."""
    global _ACTIVE
    note_run(None)
    whole = Measurement().start()
    meter = _ACTIVE = _StageMeter(None)
    stop_watching = on_write(meter.written)
    ok = False
    try:
        yield
        ok = True
    finally:
        stop_watching()
        _ACTIVE = None
        meter.close()
        measured = whole.stop()
        if ok and _RUN_ROOT is not None and meter.parts and RunDir(_RUN_ROOT).root.is_dir():
            old = load_ledger(_RUN_ROOT)["stages"]
            entry = _entry(name, measured, meter.parts, next((x for x in old if x.get("stage") == name), None))
            stages = [entry if x.get("stage") == name else x for x in old] + ([] if any(x.get("stage") == name for x in old) else [entry])
            write_json(RunDir(_RUN_ROOT).cost, with_totals(stages))
