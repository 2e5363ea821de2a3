"""The stage record: what a stage's outputs were made from, and the one policy for reusing them.

Every stage writes a small JSON record next to its outputs, last, once they are complete::

    {"stage": "train", "settings": {...}, "inputs": {...}, "complete": true, "summary": {...}, "cost": {...}}

``settings`` are the stage's own config (what the user chose); ``inputs`` identify what it read from earlier
stages (hashes and identities, never paths); ``cost`` what making the outputs cost under ``autointerp run``
(``autointerp.rundir.stage_cost``: wall and CPU seconds, peak RSS, CUDA where used). The policy, the same for every stage:

- no record, or an incomplete one: run (stages that can, resume from what is already on disk);
- same settings, same inputs: nothing to do, the outputs are reused;
- same settings, other inputs (an earlier stage was redone): run again, the outputs are stale;
- other settings: refuse, naming each setting that differs, unless ``--overwrite`` is given, so outputs
  made one way are never silently replaced by (or mixed with) outputs made another way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from autointerp.errors import UserError
from autointerp.io import read_json, write_json
from autointerp.rundir.stage_cost import charge


class Decision(Enum):
    REUSE = "reuse"  # up to date
    RUN = "run"  # nothing there yet, or unfinished: run (resuming where possible)
    REDO = "redo"  # stale (inputs changed, or --overwrite): start over


@dataclass
class StageRecord:
    stage: str
    settings: dict
    inputs: dict
    complete: bool = True
    summary: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # further top-level keys other tools read (report.json: "verdict", "cost")
    cost: dict | None = None  # None: what the running stage has spent on this record, when `autointerp run` measures

    def save(self, path: Path) -> None:
        cost = self.cost if self.cost is not None else charge(path)
        cost = {"cost": cost} if cost is not None else {}  # report.json's "cost" (in extra) is the whole run's
        write_json(path, {"stage": self.stage, "settings": self.settings, "inputs": self.inputs,
                          "complete": self.complete, "summary": self.summary, **cost, **self.extra})

    @classmethod
    def load(cls, path: Path) -> StageRecord | None:
        """The record at ``path``; None when there is none or it is not one of ours (then the stage runs)."""
        if not Path(path).is_file():
            return None
        try:
            raw = read_json(path)
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or "settings" not in raw or "inputs" not in raw:
            return None
        return cls(str(raw.get("stage", "")), raw["settings"], raw["inputs"], bool(raw.get("complete")), raw.get("summary") or {},
                   cost=raw.get("cost"))


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two settings dicts, e.g. ``sae.k: 32 -> 64``."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "(unset)"), new.get(key, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def decide(record: StageRecord | None, settings: dict, inputs: dict, *, overwrite: bool, where: Path | str) -> Decision:
    """Apply the policy above; raises a one-line ``UserError`` naming the differing settings."""
    if overwrite:
        return Decision.REDO if record is not None else Decision.RUN
    if record is None:
        return Decision.RUN
    if record.settings != settings:
        changed = differences(record.settings, settings)
        shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise UserError(f"{where} was made with other settings ({shown}); pass --overwrite to redo it, or use another --run-dir")
    if record.inputs != inputs:
        return Decision.REDO
    return Decision.REUSE if record.complete else Decision.RUN


class StageResult(NamedTuple):
    """What one call of a stage did: the units (models, pairs, controls) it made outputs for, those whose
    outputs were already up to date, and the stage's own outcome objects for callers that want them."""

    stage: str
    done: tuple[str, ...] = ()
    reused: tuple[str, ...] = ()
    detail: Any = None

    def line(self) -> str:
        parts = [f"{len(self.done)} done" if self.done else "", f"{len(self.reused)} up to date" if self.reused else ""]
        return f"{self.stage}: " + (", ".join(p for p in parts if p) or "nothing to do")
