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


STAGE_COMMANDS = {"harvest": "harvest", "train": "train", "exemplars": "exemplars", "explain": "explain", "score": "score",
                  "compare": "compare", "controls": "controls", "crosscode": "crosscode", "sweep": "sweep", "report": "report"}  # command -> stage


def friendly_errors(func):
    """Turn UserError into one red line + exit 2, and Ctrl-C into a clean stop (exit 130)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        setup_logging()
        try:
            if func.__name__ in STAGE_COMMANDS:  # measured like a stage of `autointerp run` (rundir.stage_cost)
                from autointerp.rundir.stage_cost import command_cost

                with command_cost(STAGE_COMMANDS[func.__name__]):
                    return func(*args, **kwargs)
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


def load_run_config(config: Optional[Path], run_dir: Optional[Path], name: Optional[str], *,
                    sae: Optional[list[str]] = None, model: Optional[list[str]] = None) -> RunConfig:
    """--config if given; else the run directory's saved config.toml (what earlier stages used); else defaults.
    ``sae``/``model``: the --sae and --model flags (see ``apply_sae_flags``)."""
    builtin = False
    if config is not None:
        cfg = load_config(config)
    else:
        folder = run_dir if run_dir is not None else Path("runs") / (name or "default")
        saved = RunDir(folder).config
        builtin = not saved.is_file()
        cfg = load_config(saved, saved=True) if saved.is_file() else RunConfig()
    return apply_overrides(cfg, {}, {}, dict(run_dir=str(run_dir) if run_dir else None, name=name), sae=sae,
                           model=model, builtin=builtin)


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


def apply_overrides(cfg: RunConfig, corpus: dict, harvest: dict, top: dict, *, sae: Optional[list[str]] = None,
                    model: Optional[list[str]] = None, builtin: bool = False, check_layers: bool = False) -> RunConfig:
    """Set the flags the user actually passed (non-None) on top of the config, then validate it all.

    Every command's config passes through here, so this is the one place where ``--sae`` is set on the models
    and where each pretrained SAE decides its model's unset layer/site (``fill_hookpoint``): a standalone
    ``autointerp harvest`` harvests where ``autointerp run`` would, and later stages describe the same layer.
    ``builtin``: the config is the built-in default, whose per-model layers give way to an ``--sae``'s own.
    ``check_layers`` (harvest, run): a layer/site set explicitly (``[[models]]`` or ``--layer``/``--site``)
    that disagrees with the SAE's is a one-line error naming both, before anything is harvested."""
    cfg.corpus = with_flags(cfg.corpus, **corpus)
    cfg.harvest = with_flags(cfg.harvest, **harvest)
    for key, value in set_flags(**top).items():
        setattr(cfg, key, value)
    cfg.validate()
    from autointerp.rundir.stage_cost import note_run

    note_run(cfg.run_path)  # a stage command's cost goes to this run's ledger
    given = apply_sae_flags(cfg, sae, model)
    explicit = set_flags(layer=harvest.get("layer"), site=harvest.get("site"))
    for entry in cfg.models:
        if entry.sae is None:
            continue
        if builtin and entry.slug in given:  # the default pair's layers are defaults, not the user's choice
            entry.layer = entry.site = None
        for key, value in explicit.items():  # --layer / --site name the place for every model that sets none
            if getattr(entry, key) is None:
                setattr(entry, key, value)
    if any(entry.sae is not None for entry in cfg.models):
        from autointerp.sae.pretrained.formats import fill_hookpoint

        for entry in cfg.models:
            fill_hookpoint(entry, check=check_layers)
        cfg.validate()
    return cfg


def apply_sae_flags(cfg: RunConfig, sae: Optional[list[str]], model: Optional[list[str]] = None) -> set[str]:
    """Set ``--sae`` on the selected models (``--model``, else all configured); returns the slugs given one.

    Each value is ``MODEL=PATH`` (MODEL: a configured model's name or spec) or, when exactly one model is
    selected, just ``PATH``; PATH is a local SAE file/directory or ``hf://<owner>/<repo>/<path>``."""
    if not sae:
        return set()
    selected = select_models(cfg, model)
    names = ", ".join(m.slug for m in selected)
    given: dict[str, str] = {}
    for value in sae:
        entry, path = _sae_target(cfg, selected, value)
        if entry is None:
            if len(selected) != 1:
                raise UserError(f"--sae {value} does not say which model it is for and {len(selected)} are selected "
                                f"({names}); write --sae MODEL=PATH, e.g. --sae {selected[0].slug}={value}")
            entry = selected[0]
        if entry.random:
            raise UserError(f"--sae {value}: {entry.slug} has weights = \"random\" (a control), whose SAE is trained here; "
                            "give --sae to a model with pretrained weights")
        if entry.slug in given:
            raise UserError(f"--sae is given twice for {entry.slug} ({given[entry.slug]} and {path}); give one SAE per model")
        given[entry.slug] = path
        entry.sae = path
        entry.validate()
    return set(given)


def _sae_target(cfg: RunConfig, selected: list[ModelEntry], value: str) -> tuple[ModelEntry | None, str]:
    """(the model a ``--sae`` value names, its PATH); (None, value) for a bare PATH."""
    from autointerp.sae.pretrained.formats import HF_PREFIX

    name, sep, path = value.partition("=")
    if not sep or value.startswith(HF_PREFIX) or Path(value).expanduser().exists():
        return None, value
    named = [m for m in cfg.models if name in (m.slug, m.model)]
    if not named:
        if "/" in name or os.sep in name:  # a path that happens to hold "=" (it does not exist: the reader says so)
            return None, value
        raise UserError(f"--sae {value}: {name!r} is not a configured model; configured: "
                        f"{', '.join(m.slug for m in cfg.models)} (write --sae MODEL=PATH)")
    if named[0] not in selected:
        raise UserError(f"--sae {value}: {named[0].slug} is not among the models selected with --model "
                        f"({', '.join(m.slug for m in selected)})")
    if not path.strip():
        raise UserError(f"--sae {value}: no path after '='; write --sae {named[0].slug}=<local path or hf://owner/repo/path>")
    return named[0], path


def check_sae_in_run(cfg: RunConfig, models: list[ModelEntry] | None = None) -> None:
    """For the stages after train: each model's SAE named by the config or --sae is the one the run holds
    (one line when it is not; see ``autointerp.rundir.sae_source.check_run_saes``)."""
    from autointerp.rundir.sae_source import check_run_saes

    check_run_saes(cfg.run_path, cfg.models if models is None else models, "use")


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
SaeOpt = Annotated[Optional[list[str]], typer.Option(
    "--sae", metavar="[MODEL=]PATH",
    help="An existing SAE instead of training one: MODEL=PATH for a configured model (repeat for several), or just "
         "PATH when one model is configured or selected. PATH: a local SAELens / sparsify / Gemma Scope / Llama Scope "
         "file or directory, or hf://<owner>/<repo>/<path>. Stages after train check it is the run's SAE.")]
