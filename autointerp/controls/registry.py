"""The controls as classes: ``CONTROL_REGISTRY`` (``controls.config``) with each entry imported when first
looked up. ``register_control`` adds a control from outside the package (a plugin, a test)."""

from __future__ import annotations

import importlib

from autointerp.controls.base import ROLES, Control
from autointerp.controls.config import CONTROL_REGISTRY


def control(name: str) -> Control:
    entry = CONTROL_REGISTRY[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = CONTROL_REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return entry()


def controls() -> list[Control]:
    """Every registered control, in the registry's order."""
    return [control(name) for name in CONTROL_REGISTRY]


def register_control(cls: type[Control]) -> type[Control]:
    """Add ``cls`` to the registry under ``cls.name`` (usable as a class decorator)."""
    if getattr(cls, "role", None) not in ROLES:
        raise ValueError(f"control {cls.__name__}: role must be one of {', '.join(ROLES)}, not {getattr(cls, 'role', None)!r}")
    CONTROL_REGISTRY[cls.name] = cls
    return cls
