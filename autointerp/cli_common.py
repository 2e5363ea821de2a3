"""Pieces every CLI command shares: friendly errors, logging, config loading and common options.

Kept apart from ``cli.py`` so stage modules (``explain/commands.py``, ``compare/commands.py``,
``report/commands.py``) can define their typer commands without importing the app.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.logging import RichHandler
from rich.markup import escape

from autointerp.config import ModelEntry, RunConfig, load_config
from autointerp.errors import UserError
from autointerp.rundir.layout import RunDir
from autointerp.progress import console

def setup_logging() -> None:
    if not logging.getLogger("autointerp").handlers:
        handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
        logging.getLogger("autointerp").addHandler(handler)
        logging.getLogger("autointerp").setLevel(logging.INFO)
        logging.getLogger("autointerp").propagate = False
    warnings.filterwarnings("ignore", module="transformers")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    for noisy in ("transformers", "datasets", "huggingface_hub", "accelerate", "torch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - logging tweaks must never stop a run
        pass


# Write failures that mean "no room": a full disk, a quota, or a file-size limit. Writes are atomic
# (autointerp.io.atomic_path), so reporting and stopping leaves only complete files behind.
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _disk_full_errno(exc: BaseException) -> int | None:
    """The errno when ``exc`` (or what caused it) means the disk is full. Some writers (safetensors' Rust
    core) report it only in the message, so the message is checked too."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc.errno
        text = str(exc)
        for code in _DISK_FULL:
            if os.strerror(code) in text:
                return code
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def friendly_errors(func):
    """Turn UserError into one red line + exit 2, and Ctrl-C into a clean stop (exit 130)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        setup_logging()
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            code = _disk_full_errno(exc)
            if code is None:
                raise
            filename = getattr(exc, "filename", None)
            where = f" writing {escape(str(filename))}" if filename else ""
            console.print(f"[bold red]error:[/] out of disk space{where} ({os.strerror(code)}); free space or use another --run-dir, then run the same command again (completed work is kept, nothing half-written)", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: completed work is saved; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper


def load_run_config(config: Optional[Path], run_dir: Optional[Path], name: Optional[str]) -> RunConfig:
    """--config if given; else the run directory's saved config.toml (what earlier stages used); else defaults."""
    if config is not None:
        cfg = load_config(config)
    else:
        folder = run_dir if run_dir is not None else Path("runs") / (name or "default")
        saved = RunDir(folder).config
        cfg = load_config(saved) if saved.is_file() else RunConfig()
    return apply_overrides(cfg, {}, {}, dict(run_dir=str(run_dir) if run_dir else None, name=name))


def set_flags(**flags):
    """The flags the user actually gave: every option defaults to None, so None means "flag not given:
    keep the config file's value", while any given value (including 0, False and "") overrides it."""
    return {key: value for key, value in flags.items() if value is not None}


def with_flags(section, **flags):
    """A copy of the config dataclass ``section`` with the given flags (see ``set_flags``) set on it, checked
    by the section's ``validate()`` like a value read from the TOML."""
    section = dataclasses.replace(section, **set_flags(**flags))
    if hasattr(section, "validate"):
        section.validate()
    return section


def apply_overrides(cfg: RunConfig, corpus: dict, harvest: dict, top: dict) -> RunConfig:
    """Set the flags the user actually passed (non-None) on top of the config, then validate it all."""
    cfg.corpus = with_flags(cfg.corpus, **corpus)
    cfg.harvest = with_flags(cfg.harvest, **harvest)
    for key, value in set_flags(**top).items():
        setattr(cfg, key, value)
    cfg.validate()
    return cfg


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML run config; flags override it.")]
RunDirOpt = Annotated[Optional[Path], typer.Option("--run-dir", help="Run directory (default runs/<name>).")]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Run name (default 'default').")]


def select_models(cfg: RunConfig, model: Optional[list[str]]) -> list[ModelEntry]:
    """The configured models, or those named by --model (by run-directory name or spec)."""
    if not model:
        return cfg.models
    chosen = [m for m in cfg.models if m.slug in model or m.model in model]
    known = {m.slug for m in chosen} | {m.model for m in chosen}
    missing = [m for m in model if m not in known]
    if missing:
        raise UserError(f"model(s) {', '.join(missing)} are not in the run config; configured: {', '.join(m.slug for m in cfg.models)}")
    return chosen



ModelsOpt = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Only these configured models (name or spec).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Redo the stage even if its outputs are up to date.")]
