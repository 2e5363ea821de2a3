"""Atomic file writes: a reader (or a re-run after a crash) sees the old file or the new one, never half.

Write to a temporary file in the destination directory, fsync, then ``os.replace``. On any error the
temporary file is removed and the destination is untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_WRITE_HOOKS: list[Callable[[Path], None]] = []


def on_write(hook: Callable[[Path], None]) -> Callable[[], None]:
    """Call ``hook(path)`` after each completed atomic write until the returned function is called (a stage's
    cost is charged to the records it writes: ``autointerp.rundir.stage_cost``)."""
    _WRITE_HOOKS.append(hook)
    return lambda: _WRITE_HOOKS.remove(hook)


@contextlib.contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temp path next to ``dest``; on success it replaces ``dest`` atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    for hook in tuple(_WRITE_HOOKS):
        hook(dest)


def write_json(dest: Path | str, data: object) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def read_json(path: Path | str, fix: str | None = None) -> dict:
    """The JSON in ``path``; a missing file raises FileNotFoundError, a damaged one ``DamagedArtifact`` naming it
    (and ``fix``, when remaking it is not a re-run of its stage with --overwrite)."""
    from autointerp.errors import DamagedArtifact

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedArtifact(path, f"not valid JSON: {exc}", fix) from exc


@contextlib.contextmanager
def parquet_errors(path: Path | str) -> Iterator[None]:
    """Around one parquet read of a run artifact: a file that cannot be read (0 bytes, truncated, not parquet, a
    requested column absent) becomes ``DamagedArtifact`` naming it; a missing one stays FileNotFoundError."""
    import pyarrow as pa

    from autointerp.errors import DamagedArtifact

    try:
        yield
    except (FileNotFoundError, DamagedArtifact):
        raise
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        raise DamagedArtifact(path, f"cannot be read as parquet: {exc}") from exc


def read_parquet(path: Path | str, **kwargs):
    """``pandas.read_parquet`` for run artifacts, errors as ``parquet_errors`` says."""
    import pandas as pd

    with parquet_errors(path):
        return pd.read_parquet(path, **kwargs)


@contextlib.contextmanager
def safetensors_errors(path: Path | str, fix: str | None = None) -> Iterator[None]:
    """Around one safetensors read: a file safetensors cannot read (0 bytes, truncated, not safetensors)
    becomes ``DamagedArtifact`` naming it (``fix``: how to remake it, when not a re-run with --overwrite); a
    missing one stays FileNotFoundError."""
    from safetensors import SafetensorError

    from autointerp.errors import DamagedArtifact

    try:
        yield
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError) as exc:
        raise DamagedArtifact(path, f"cannot be read as safetensors: {exc}", fix) from exc


@contextlib.contextmanager
def open_safetensors(path: Path | str, framework: str = "pt", fix: str | None = None):
    """``safetensors.safe_open`` for run artifacts (lazy: header, metadata, slices); errors as ``safetensors_errors``."""
    from safetensors import safe_open

    with safetensors_errors(path, fix), safe_open(str(path), framework=framework) as f:
        yield f


def read_safetensors(path: Path | str, framework: str = "pt", fix: str | None = None) -> dict:
    """Every tensor of a safetensors file (``framework`` "pt" or "numpy"); errors as ``safetensors_errors``."""
    import importlib

    load_file = importlib.import_module(f"safetensors.{'torch' if framework == 'pt' else framework}").load_file
    with safetensors_errors(path, fix):
        return load_file(str(path))


def read_toml(path: Path | str, fix: str | None = None) -> dict:
    """The TOML in ``path``; a missing file raises FileNotFoundError, a damaged one ``DamagedArtifact``."""
    import tomllib

    from autointerp.errors import DamagedArtifact

    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DamagedArtifact(path, f"not valid TOML: {exc}", fix) from exc


def read_npz(path: Path | str, fix: str | None = None) -> dict:
    """Every array of an .npz file (no pickles); a damaged one raises ``DamagedArtifact``."""
    import zipfile

    import numpy as np

    from autointerp.errors import DamagedArtifact

    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DamagedArtifact(path, f"cannot be read as .npz: {exc}", fix) from exc


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (SAE weights and shards can be large).

    The identity stages store for their input files: a changed digest means the stage's outputs are stale.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_stamped_parquet(dest: Path | str, table, key: bytes, stamp: str) -> None:
    """Write a derived table atomically with ``stamp`` (the identity of what it was made from) under ``key``
    in its schema metadata, so ``read_stamped_parquet`` can tell a current file from a stale one."""
    import pyarrow.parquet as pq

    with atomic_path(dest) as tmp:
        pq.write_table(table.replace_schema_metadata({key: stamp.encode()}), tmp)


def read_stamped_parquet(path: Path | str, key: bytes, stamp: str):
    """The table written by ``write_stamped_parquet`` with this ``stamp``; None when the file is missing,
    damaged or made from something else (a derived file is recomputed, never trusted)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except Exception:  # noqa: BLE001 - any unreadable derived file is simply recomputed
        return None
    return table if (table.schema.metadata or {}).get(key) == stamp.encode() else None
