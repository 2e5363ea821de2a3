"""A prose corpus that is on every machine: the docstrings of the Python standard library, one document per module.

Used by ``benchmarks/labels.py`` as its second corpus (the factbook is mostly ``Field: value`` lines; this is
running English about programs, from another source: the factbook's own Introduction/Background sections would
share the factbook run's documents, countries and vocabulary, so they would not test the labels on a second corpus). Built deterministically from the running interpreter: every name in
``sys.stdlib_module_names`` in sorted order, except private modules (leading ``_``), tests, GUI/IDE packages and
modules with side effects on import (``SKIP``); each is imported with its output and warnings silenced, and a
module that fails to import is skipped. A module's document is its own docstring, then the docstrings of its
public classes and functions defined in it (in ``dir()`` order, i.e. sorted) and of those classes' public methods,
each kept when longer than ``MIN_DOC_CHARS``; documents shorter than ``MIN_CHARS`` are dropped and the rest
truncated to ``MAX_CHARS``. One JSON line per module: ``{"id", "title", "text"}`` (read by the corpus loader as
``[corpus] dataset = "<file>.jsonl"``, text_field ``text``). The same interpreter gives the same file byte for
byte (about 130 documents, 0.4 MB on CPython 3.11)::

    .venv/bin/python benchmarks/prose_corpus.py runs/prose-corpus/stdlib_docs.jsonl
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import os
import sys
import warnings
from pathlib import Path

MIN_DOC_CHARS = 80  # a docstring shorter than this is a one-liner ("Return self.") and is left out
MIN_CHARS = 800  # a module with less documentation than this is no document
MAX_CHARS = 6000  # long modules are cut, so no module dominates the corpus
SKIP_PREFIXES = ("_", "test", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
                 "msilib", "winreg", "winsound", "msvcrt", "nt")
SKIP = {"antigravity", "this", "webbrowser"}  # antigravity opens a browser, this prints the Zen


def wanted(name: str) -> bool:
    return name not in SKIP and not name.startswith(SKIP_PREFIXES)


def _docs_of(obj, module_name: str) -> list[str]:
    """The object's own docstring, then (for a class) its public methods' docstrings."""
    out = [inspect.getdoc(obj) or ""]
    if inspect.isclass(obj):
        for attr in sorted(vars(obj)):
            if attr.startswith("_"):
                continue
            member = vars(obj)[attr]
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member) or inspect.ismethoddescriptor(member) or isinstance(member, property):
                out.append(member.__doc__ and inspect.cleandoc(member.__doc__) or "")
    return out


def module_text(module) -> str:
    """The module's docstrings, joined by blank lines (before the length rules)."""
    parts = [inspect.getdoc(module) or ""]
    name = module.__name__
    for attr in dir(module):
        if attr.startswith("_"):
            continue
        try:
            obj = getattr(module, attr)
        except Exception:  # noqa: BLE001 - lazy attributes can fail; they are not documentation
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        if getattr(obj, "__module__", None) != name:  # imported from elsewhere: documented there
            continue
        parts.extend(_docs_of(obj, name))
    seen, kept = set(), []
    for doc in parts:
        doc = "\n".join(line.rstrip() for line in doc.strip().splitlines())
        if len(doc) > MIN_DOC_CHARS and doc not in seen:
            seen.add(doc)
            kept.append(doc)
    return "\n\n".join(kept)


def _import(name: str):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - ImportError, SystemExit, platform errors: the module is skipped
            return None


def documents() -> list[dict]:
    """The corpus records, in sorted module order."""
    records = []
    for name in sorted(sys.stdlib_module_names):
        if not wanted(name):
            continue
        module = _import(name)
        if module is None:
            continue
        text = module_text(module)
        if len(text) > MIN_CHARS:
            records.append({"id": name, "title": name, "text": text[:MAX_CHARS]})
    return records


def build(path: Path) -> int:
    """Write the corpus to ``path`` (atomically); returns the number of documents."""
    records = documents()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return len(records)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/prose-corpus/stdlib_docs.jsonl")
    n = build(target)
    print(f"wrote {n} documents ({target.stat().st_size / 1e6:.2f} MB) to {target}")
