"""What a run directory was made with: the resolved config saved next to the outputs, and how this
invocation differs from it (other settings, another autointerp version).

Each stage then decides from its own record whether to reuse, redo or refuse (``autointerp.rundir.record``).
"""

from __future__ import annotations

import logging

from autointerp.config import RunConfig, to_toml
from autointerp.io import atomic_path, read_json, read_toml, write_json
from autointerp.rundir.layout import RunDir

log = logging.getLogger("autointerp")


def save_resolved_config(cfg: RunConfig) -> None:
    """Save the resolved config (provenance for later stages), first saying how the run directory differs:
    other settings than last time, or outputs written by another autointerp version. Each stage then
    decides from its own recorded inputs whether to reuse, redo or refuse (naming what differs)."""
    from autointerp import __version__

    path = RunDir(cfg.run_path).config
    for line in run_dir_differences(cfg, settings=False):  # `autointerp run` also reports setting changes
        log.warning("%s", line)
    with atomic_path(path) as tmp:
        tmp.write_text(to_toml(cfg), encoding="utf-8")
    write_json(RunDir(cfg.run_path).version, {"version": __version__})


def run_dir_differences(cfg: RunConfig, settings: bool = True) -> list[str]:
    """Human-readable differences between ``cfg`` (and this code's version) and what the run directory holds.

    Single-stage commands pass ``settings=False``: a stage that cannot reuse its outputs already names the
    settings that differ in its own one-line error."""
    import tomllib

    from autointerp import __version__

    out = []
    path = RunDir(cfg.run_path).config
    has_outputs = bool(RunDir(cfg.run_path).harvest_manifests())  # a config saved by an attempt that failed early is no history
    if settings and path.is_file() and has_outputs:
        try:
            old = _flatten(read_toml(path))
        except (OSError, ValueError):  # a damaged config.toml is no history (the stage names it when it reads it)
            old = None
        if old is not None:
            new = _flatten(tomllib.loads(to_toml(cfg)))
            changed = [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            if changed:
                shown = "; ".join(changed[:8]) + (f"; and {len(changed) - 8} more" if len(changed) > 8 else "")
                out.append(f"{cfg.run_path} was last run with other settings ({shown}); stages whose inputs changed redo their work or say what to do")
    version_path = RunDir(cfg.run_path).version
    if version_path.is_file():
        old_version = read_json(version_path).get("version")
        if old_version != __version__:
            out.append(f"{cfg.run_path} was written by autointerp {old_version}; this is {__version__}: outputs whose recorded settings still match are reused (pass --overwrite to redo a stage with this version)")
    return out


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "prices" and key != "domains":
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                flat.update(_flatten(item, f"{name}[{i}]."))
        else:
            flat[name] = value
    return flat
