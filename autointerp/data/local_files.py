"""Local corpus files: .txt (one document per file), .jsonl/.json, .csv, .parquet, or a directory of them.

Text files are read as bytes and decoded as UTF-8 with ``errors="replace"``; every undecodable byte
sequence becomes U+FFFD and is counted (reported once per call through the ``autointerp`` logger).
doc_id is ``f"{relative_path}:{row_index}"`` (relative to the given directory, or the file name), so
it never depends on the shuffle seed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from autointerp.errors import UserError

logger = logging.getLogger("autointerp")

SUPPORTED_EXTENSIONS = (".txt", ".jsonl", ".json", ".csv", ".parquet")
_SUPPORTED_TEXT = ", ".join(SUPPORTED_EXTENSIONS)
_UTF8_REPLACEMENT_BYTES = "\ufffd".encode()


@dataclass
class ReadReport:
    """Undecodable byte sequences found while reading, per file (relative path -> count)."""

    replaced: dict[str, int] = field(default_factory=dict)

    @property
    def n_replaced(self) -> int:
        return sum(self.replaced.values())


def decode_utf8(data: bytes) -> tuple[str, int]:
    """Decode UTF-8 with replacement; return (text, number of sequences replaced with U+FFFD)."""
    text = data.decode("utf-8", errors="replace")
    n_replaced = text.count("\ufffd") - data.count(_UTF8_REPLACEMENT_BYTES)  # genuine U+FFFD don't count
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, max(n_replaced, 0)


def list_files(path: Path) -> tuple[Path, list[Path]]:
    """(base directory for relative ids, supported files in sorted order); UserError if none."""
    if not path.exists():
        raise UserError(
            f"dataset path '{path}' does not exist; "
            "pass an existing file or directory, 'factbook', or a hub dataset name"
        )
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in SUPPORTED_EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.is_file()
        )
        if not files:
            raise UserError(
                f"directory '{path}' contains no corpus files ({_SUPPORTED_TEXT}); add some or point dataset elsewhere"
            )
        return path, files
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise UserError(
            f"unsupported corpus file type '{path.suffix or path.name}' for '{path}'; supported: {_SUPPORTED_TEXT}"
        )
    return path.parent, [path]


def looks_like_path(name: str) -> bool:
    """Hub names are 'name' or 'org/name'; anything else that looks like a filesystem path is local."""
    return (
        Path(name).expanduser().exists()
        or name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or "\\" in name
        or Path(name).suffix.lower() in SUPPORTED_EXTENSIONS
    )


def is_hub_repo_dir(path: Path) -> bool:
    """A directory laid out like a hub dataset repo (dataset card with a YAML header, or data/*-of-* shards);
    such directories are read with ``datasets.load_dataset`` (split-aware) instead of file by file."""
    readme = path / "README.md"
    try:
        if readme.is_file() and readme.read_text(encoding="utf-8", errors="replace").startswith("---"):
            return True
    except OSError:
        return False
    return any((path / "data").glob("*-of-*.*"))


def _permission_denied(path: Path) -> UserError:
    return UserError(f"cannot read '{path}': permission denied; fix its permissions (chmod +r) or remove it")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError as exc:
        raise _permission_denied(path) from exc
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror or exc}; check the file or choose another") from exc


def _missing_field(where: str, text_field: str, available: list[str]) -> UserError:
    names = ", ".join(repr(a) for a in available) or "none"
    return UserError(f"{where} has no field '{text_field}' (available: {names}); set text_field to one of them")


def _as_text(value: object, where: str, text_field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise UserError(f"{where}: field '{text_field}' holds a {type(value).__name__}, not text; choose a text field")


def _json_rows(text: str, path: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for JSON Lines; a .json file may instead hold one array or object."""
    if path.suffix.lower() == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # not a single JSON document: read it as JSON Lines below
        else:
            yield from ((1, row) for row in (whole if isinstance(whole, list) else [whole]))
            return
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"'{path}' line {line_no} is not valid JSON ({exc.msg}); use one JSON object per line"
            ) from exc


def _read_json(path: Path, rel: str, text: str, text_field: str) -> Iterator[tuple[str, str]]:
    for row_index, (line_no, row) in enumerate(_json_rows(text, path)):
        where = f"'{path}' line {line_no}"
        if isinstance(row, str):
            value: object = row
        elif isinstance(row, dict):
            if text_field not in row:
                if row_index == 0:
                    raise _missing_field(where, text_field, list(row))
                value = None  # later rows without the field count as empty (dropped as too short)
            else:
                value = row[text_field]
        else:
            kind = type(row).__name__
            raise UserError(f"{where} holds a JSON {kind}; use one object per line, e.g. {{\"text\": ...}}")
        yield f"{rel}:{row_index}", _as_text(value, where, text_field)


def _read_csv(path: Path, rel: str, text: str, text_field: str) -> Iterator[tuple[str, str]]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if reader.fieldnames is None:
            return  # empty file
        if text_field not in reader.fieldnames:
            raise _missing_field(f"'{path}'", text_field, list(reader.fieldnames))
        for row_index, row in enumerate(reader):
            yield f"{rel}:{row_index}", row.get(text_field) or ""
    except csv.Error as exc:
        raise UserError(f"'{path}' line {reader.line_num} is not valid CSV ({exc}); fix the file") from exc


def _read_parquet(path: Path, rel: str, text_field: str, report: ReadReport) -> Iterator[tuple[str, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
        if text_field not in names:
            raise _missing_field(f"'{path}'", text_field, names)
        column = pf.read(columns=[text_field]).column(0)
    except PermissionError as exc:
        raise _permission_denied(path) from exc
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"cannot read parquet file '{path}' ({exc}); check that it is a valid parquet file") from exc
    for row_index, value in enumerate(column.to_pylist()):
        if isinstance(value, bytes):
            value, n = decode_utf8(value)
            if n:
                report.replaced[rel] = report.replaced.get(rel, 0) + n
        yield f"{rel}:{row_index}", _as_text(value, f"'{path}' row {row_index}", text_field)


def read_local_records(path: Path, text_field: str = "text") -> tuple[list[tuple[str, str]], ReadReport]:
    """All (doc_id, raw text) records under ``path`` in canonical order, plus the decoding report.

    Warns once (logger ``autointerp``) when undecodable bytes were replaced.
    """
    path = Path(path).expanduser()
    base, files = list_files(path)
    report = ReadReport()
    records: list[tuple[str, str]] = []
    for file in files:
        rel = file.relative_to(base).as_posix()
        suffix = file.suffix.lower()
        if suffix == ".parquet":
            records.extend(_read_parquet(file, rel, text_field, report))
            continue
        text, n_replaced = decode_utf8(_read_bytes(file))
        if n_replaced:
            report.replaced[rel] = n_replaced
        if suffix == ".txt":
            records.append((f"{rel}:0", text))
        elif suffix == ".csv":
            records.extend(_read_csv(file, rel, text, text_field))
        else:
            records.extend(_read_json(file, rel, text, text_field))
    if report.replaced:
        shown = ", ".join(list(report.replaced)[:10]) + (" ..." if len(report.replaced) > 10 else "")
        logger.warning(
            "replaced %d undecodable (non-UTF-8) byte sequence(s) with U+FFFD in %d file(s): %s",
            report.n_replaced,
            len(report.replaced),
            shown,
        )
    return records, report
