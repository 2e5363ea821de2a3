"""Label scorers: simulation, detection, fuzzing (LLM-based) and embedding (offline). One module each.

``SCORERS`` is the scorer registry (``autointerp.eval.config.SCORER_REGISTRY``) seen as classes: an entry is
imported the first time it is looked up, so a run that scores with embeddings never imports the LLM scorers.
``register_scorer`` adds a scorer from outside the package (a plugin, a test); CONTRIBUTING.md says how to
write one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from autointerp.errors import UserError
from autointerp.eval.config import SCORER_REGISTRY, ScoreConfig
from autointerp.eval.scorers.base import LEVELS, ScoreResult, Scorer


class _Registry(Mapping):
    """The registry's entries resolved to their Scorer classes, in the registry's order."""

    def __getitem__(self, name: str) -> type[Scorer]:
        entry = SCORER_REGISTRY[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = SCORER_REGISTRY[name] = getattr(importlib.import_module(module), attr)
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(SCORER_REGISTRY)

    def __len__(self) -> int:
        return len(SCORER_REGISTRY)


SCORERS: Mapping[str, type[Scorer]] = _Registry()


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    """Add ``cls`` to the registry under ``cls.name`` (config validation, the score stage and the report then
    know it); usable as a class decorator. A name taken by another class is refused."""
    if not (isinstance(cls, type) and issubclass(cls, Scorer)) or not getattr(cls, "name", None):
        raise TypeError(f"{cls!r} is not a Scorer subclass with a name")
    if cls.name in SCORER_REGISTRY and SCORERS[cls.name] is not cls:
        raise ValueError(f"scorer name {cls.name!r} is taken by {SCORERS[cls.name].__qualname__}")
    SCORER_REGISTRY[cls.name] = cls
    return cls


def make_scorer(name: str, settings: ScoreConfig, prompts_dir: Path | str | None = None, level: str = "token") -> Scorer:
    """Scorer ``name`` at ``level`` ("token", or "sequence": whole documents), with that level's prompt template."""
    if name not in SCORERS:
        raise UserError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    if level not in LEVELS:
        raise UserError(f"unknown scoring level {level!r}; expected one of {', '.join(LEVELS)}")
    cls = SCORERS[name]
    return cls(settings, cls.read_template(level, prompts_dir), level)


__all__ = ["LEVELS", "SCORERS", "ScoreResult", "Scorer", "make_scorer", "register_scorer"]
