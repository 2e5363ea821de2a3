"""Reading labels other tools wrote (delphi's explanation files, Neuronpedia explanation records), strictly.

Why strict: an imported file is taken as this run's labels and scored. A delphi parse failure ("Explanation
could not be parsed.") or an empty description scored as a label would look like a bad label of a real
feature, and a folder holding two hookpoints' files (``layers.6_*`` and ``layers.8_*``) would label one SAE's
features with another's, the later files silently winning. So every explanation is checked (a failure keeps
its reason and becomes a failed row, never a label), and the hookpoint must be unique or chosen.

Sources read (the format is detected; ``fmt`` only confirms it):

- delphi: a folder of ``<module>_latent<N>.txt`` files, each a JSON string (delphi's ``explanations/`` folder,
  or the run folder holding it); also a JSON object ``{"<module>_latent<N>": text}`` (older autointerp exports).
- neuronpedia: a JSON list of explanation records (``index`` and ``description`` or ``text``; the hookpoint is
  ``source`` or, in Neuronpedia's public export, ``layer``), a ``.jsonl`` / ``.jsonl.gz`` file of them, or a
  folder of such batch files.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autointerp.errors import UserError

FORMATS = ("neuronpedia", "delphi")
# What delphi writes or returns instead of an explanation: its explainers' parse failure and its loader's miss.
PLACEHOLDERS = ("Explanation could not be parsed.", "No explanation found")
_PLACEHOLDER_KEYS = {p.rstrip(".").casefold() for p in PLACEHOLDERS}
DELPHI_NAME = re.compile(r"^(?P<hook>.+)_latent(?P<index>\d+)$")  # str(delphi.latents.Latent)
_BATCH_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class Entry:
    """One explanation as found: its hookpoint ("" when the record names none), latent and verdict."""

    hook: str
    index: int
    raw: str
    text: str | None  # the usable label; None when it failed
    reason: str | None = None  # why it failed


@dataclass
class External:
    """The labels of one hookpoint of an external source: usable ones and failed ones with their reason."""

    fmt: str
    hookpoint: str
    labels: dict[int, str] = field(default_factory=dict)
    failed: dict[int, tuple[str, str]] = field(default_factory=dict)  # feature -> (raw, reason)
    hookpoints: dict[str, int] = field(default_factory=dict)  # every hookpoint found -> explanations


def check_text(value: object) -> tuple[str | None, str | None]:
    """(label, None) for a usable explanation, (None, reason) for a missing, empty or placeholder one."""
    if not isinstance(value, str):
        return None, "no explanation" if value is None else f"the explanation is a JSON {type(value).__name__}, not text"
    text = value.strip()
    if not text:
        return None, "empty explanation"
    if text.rstrip(".").strip().casefold() in _PLACEHOLDER_KEYS:
        return None, f"{text!r} is the explainer's failure placeholder, not a label"
    return text, None


def delphi_text(data: bytes) -> tuple[str, str | None, str | None]:
    """(raw, label, reason) of one delphi explanation file: a JSON string, as delphi writes it (orjson.dumps)."""
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data[:80]), None, "not UTF-8 text"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw, None, "not a JSON string (delphi writes each explanation as one; its loader would fail on it)"
    text, reason = check_text(value)
    return raw, text, reason


def _explanations_folder(path: Path) -> Path | None:
    """The folder holding delphi's per-latent files: ``path`` itself or its ``explanations/`` (a delphi run)."""
    for folder in (path / "explanations", path):  # a run folder's scores/<scorer>/ files have the same names
        if folder.is_dir() and any(DELPHI_NAME.match(_latent_name(folder, f)) for f in folder.rglob("*.txt")):
            return folder
    return None


def _latent_name(folder: Path, file: Path) -> str:
    """``layers.6_latent3`` (a module path with "/", as Gemma Scope hookpoints have, makes subfolders)."""
    return file.relative_to(folder).as_posix()[: -len(".txt")]


def _delphi_files(folder: Path) -> list[Entry]:
    entries = []
    for file in sorted(folder.rglob("*.txt")):
        m = DELPHI_NAME.match(_latent_name(folder, file))
        if m:
            raw, text, reason = delphi_text(file.read_bytes())
            entries.append(Entry(m["hook"], int(m["index"]), raw, text, reason))
    return entries


def _delphi_object(data: dict, where: Path) -> list[Entry]:
    entries = []
    for key, value in data.items():
        m = DELPHI_NAME.match(str(key))
        if m:
            text, reason = check_text(value)
            entries.append(Entry(m["hook"], int(m["index"]), value if isinstance(value, str) else json.dumps(value), text, reason))
    if not entries:
        raise UserError(f"{where} is a JSON object without any \"<module>_latent<N>\" key; give delphi's explanations folder "
                        "or a Neuronpedia explanation list")
    return entries


def _np_records(records: list, where: Path) -> list[Entry]:
    if not records:
        raise UserError(f"{where} holds no explanation records")
    entries = []
    for i, rec in enumerate(records):
        index = rec.get("index") if isinstance(rec, dict) else None
        if isinstance(index, bool) or not (isinstance(index, int) or (isinstance(index, str) and index.isdigit())):
            raise UserError(f"{where}: record {i} has no latent index ({index!r}); is it a Neuronpedia explanation export "
                            "(objects with index and description)?")
        value = rec.get("description") if rec.get("description") is not None else rec.get("text")
        text, reason = check_text(value)
        hook = rec.get("source") or rec.get("layer") or ""
        entries.append(Entry(str(hook), int(index), value if isinstance(value, str) else json.dumps(value), text, reason))
    return entries


def _json_lines(path: Path) -> list:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}; give Neuronpedia explanation records, one JSON object a line") from exc


def _load(path: Path) -> tuple[list[Entry], str]:
    if path.is_dir():
        folder = _explanations_folder(path)
        if folder is not None:
            return _delphi_files(folder), "delphi"
        batches = sorted(p for p in path.iterdir() if p.name.endswith(_BATCH_SUFFIXES))
        if not batches:
            raise UserError(f"{path} holds neither delphi explanation files (<module>_latent<N>.txt, or an explanations/ "
                            "folder of them) nor Neuronpedia .jsonl(.gz) batches")
        return _np_records([rec for batch in batches for rec in _json_lines(batch)], path), "neuronpedia"
    if path.name.endswith(_BATCH_SUFFIXES):
        return _np_records(_json_lines(path), path), "neuronpedia"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read labels from {path}: {exc}; give a Neuronpedia explanation list or delphi's "
                        "explanations folder") from exc
    if isinstance(data, list):
        return _np_records(data, path), "neuronpedia"
    if isinstance(data, dict):
        return _delphi_object(data, path), "delphi"
    raise UserError(f"{path} holds a JSON {type(data).__name__}; give a Neuronpedia explanation list or delphi's explanations folder")


def _listing(counts: Counter) -> str:
    items = [f"{hook or '(unnamed)'} ({n})" for hook, n in sorted(counts.items())]
    return ", ".join(items[:12]) + (f", ... {len(items) - 12} more" if len(items) > 12 else "")


def read_external(path: Path, fmt: str | None = None, hookpoint: str | None = None) -> External:
    """The labels of ``path`` for one hookpoint: the only one it holds, or ``hookpoint`` (a UserError when it
    mixes several and none is chosen, naming them). Per latent the first usable explanation wins."""
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown label format {fmt!r}; use {' or '.join(FORMATS)}")
    if not path.exists():
        raise UserError(f"{path} does not exist")
    entries, found = _load(path)
    if fmt is not None and fmt != found:
        raise UserError(f"{path} holds {found} labels, not {fmt}; drop --format or give a {fmt} source")
    if not entries:
        raise UserError(f"{path} holds no explanations")
    counts = Counter(e.hook for e in entries)
    if hookpoint is not None and hookpoint not in counts:
        raise UserError(f"{path} has no labels for hookpoint {hookpoint!r}; it holds {_listing(counts)}")
    if hookpoint is None and len(counts) > 1:
        raise UserError(f"{path} mixes {len(counts)} hookpoints: {_listing(counts)}; choose one with --hookpoint")
    chosen = hookpoint if hookpoint is not None else next(iter(counts))
    out = External(found, chosen, hookpoints=dict(counts))
    for e in entries:
        if e.hook != chosen:
            continue
        if e.text is not None:
            out.labels.setdefault(e.index, e.text)
        else:
            out.failed.setdefault(e.index, (e.raw, e.reason or "unusable"))
    out.failed = {f: v for f, v in out.failed.items() if f not in out.labels}
    return out
