"""The stage contract: what every stage is, and the one way it is called.

A stage is a ``Stage`` (declared in its package's ``commands`` module, cheap to import) plus a ``run`` function
in its package's ``stage`` module (imported only when the stage runs, so ``autointerp --help`` stays fast)::

    run(cfg: RunConfig, *, overwrite: bool = False, models: list[ModelEntry] | None = None, **options) -> StageResult

Its command (``autointerp <stage>``) and ``autointerp run`` both call ``Stage.run``, which saves the resolved
config in the run directory (the one place that does: the record of what the run's outputs were made with) and
puts it back as it was when the stage refuses. The command's flags are derived from the config sections the
stage reads (``autointerp.cli_flags``), plus the flags every command shares.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Annotated, Callable, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, check_sae_in_run, friendly_errors, load_run_config, select_models, with_flags
from autointerp.cli_flags import Flag, check_unique, section_flags, split_values
from autointerp.config import SECTIONS, RunConfig
from autointerp.errors import UserError
from autointerp.rundir.record import StageResult


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the pipeline, as its command and ``autointerp run`` see it."""

    name: str  # the command and the stage record's name
    module: str  # the package module holding ``run`` (imported when the stage runs)
    help: str  # the command's help: what the stage makes
    sections: tuple[str, ...]  # config sections whose settings make its outputs: its settings identity and its flags
    reads: tuple[str, ...] = ()  # stages whose outputs it reads (each runs before it in ``autointerp run``)
    models: bool = True  # --model: only these configured models
    sae: bool = True  # --sae: the configured models' SAEs (stages after train check the run holds that SAE)
    checks_sae: bool = True  # stages after train: the SAE the config or --sae names must be the run's
    gate: str | None = None  # "section.key": ``autointerp run`` runs the stage only when it is true (its command always does)
    saves_config: bool = True  # false for stages that only read the run (the report)
    creates_run: bool = False  # the first stage makes the run directory; the others need it
    names: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # "section.key" -> flag names (first shown; the rest aliases)
    prefixes: dict[str, str] = dataclasses.field(default_factory=dict)  # section -> prefix of its derived flag names
    hide: tuple[str, ...] = ()  # "section.key" left out of the flags (set in the TOML)
    top: tuple[str, ...] = ()  # top-level keys of the run config that are flags too (max_tokens)
    options: tuple[inspect.Parameter, ...] = ()  # command-only options, passed to run as keyword arguments
    configure: str | None = None  # "module:function(stage, common, given) -> RunConfig": a command that builds its config its own way
    model_help: str = "Only these configured models (name or spec)."
    overwrite_help: str = "Redo the stage even if its outputs are up to date (or were made with other settings)."

    def flags(self) -> list[Flag]:
        out = section_flags("", RunConfig, keys=self.top) if self.top else []
        for section in self.sections:
            names = {k.split(".", 1)[1]: v for k, v in self.names.items() if k.startswith(section + ".")}
            hide = tuple(k.split(".", 1)[1] for k in self.hide if k.startswith(section + "."))
            out += section_flags(section, SECTIONS[section], prefix=self.prefixes.get(section, ""), names=names, hide=hide)
        return out

    def load(self) -> Callable[..., StageResult]:
        return importlib.import_module(self.module).run

    def enabled(self, cfg: RunConfig) -> bool:
        """Whether ``autointerp run`` runs this stage (``gate``)."""
        if self.gate is None:
            return True
        section, key = self.gate.split(".")
        return bool(getattr(getattr(cfg, section), key))

    def run(self, cfg: RunConfig, *, overwrite: bool = False, models=None, **options) -> StageResult:
        """Run the stage on ``cfg`` (all configured models unless ``models``), under the run lock, after saving
        the resolved config; a stage that refuses (a one-line error) leaves the saved config as it was."""
        from autointerp.io import atomic_path
        from autointerp.provenance import save_resolved_config
        from autointerp.rundir.layout import RunDir
        from autointerp.rundir.lock import run_lock

        function = self.load()
        if not self.saves_config:
            return function(cfg, overwrite=overwrite, models=models, **options)
        with run_lock(cfg.run_path, create=self.creates_run):
            config = RunDir(cfg.run_path).config
            previous = config.read_bytes() if config.is_file() else None
            save_resolved_config(cfg)
            try:
                return function(cfg, overwrite=overwrite, models=models, **options)
            except UserError:
                if previous is not None:
                    with atomic_path(config) as tmp:
                        tmp.write_bytes(previous)
                raise


COMMON = ("config", "run_dir", "name", "model", "sae", "overwrite")


def _common_parameters(stage: Stage) -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    out = [inspect.Parameter("config", keyword, default=None, annotation=ConfigOpt),
           inspect.Parameter("run_dir", keyword, default=None, annotation=RunDirOpt),
           inspect.Parameter("name", keyword, default=None, annotation=NameOpt)]
    if stage.models:
        out.append(inspect.Parameter("model", keyword, default=None, annotation=Annotated[Optional[list[str]], typer.Option("--model", "-m", help=stage.model_help)]))
    if stage.sae:
        out.append(inspect.Parameter("sae", keyword, default=None, annotation=SaeOpt))
    out.append(inspect.Parameter("overwrite", keyword, default=False, annotation=Annotated[bool, typer.Option(help=stage.overwrite_help)]))
    return out


RESERVED = {"--config", "-c", "--run-dir", "--name", "--model", "-m", "--sae", "--overwrite", "--no-overwrite"}


def configure(stage: Stage, common: dict, given: dict[str, dict]) -> RunConfig:
    """The config a command runs with: --config, else the run's saved config, else the defaults; then the flags."""
    cfg = load_run_config(common["config"], common["run_dir"], common["name"], sae=common.get("sae"), model=common.get("model"))
    for key, value in (given.get("") or {}).items():
        if value is not None:
            setattr(cfg, key, value)
    for section, values in given.items():
        if section:
            setattr(cfg, section, with_flags(getattr(cfg, section), **values))
    cfg.validate()
    return cfg


def _decls(parameter: inspect.Parameter) -> tuple[str, ...]:
    """An option's names (typer keeps the first of an ``Annotated`` option's names as its ``default``)."""
    info = parameter.annotation.__metadata__[0]
    return (info.default, *info.param_decls) if isinstance(info.default, str) else tuple(info.param_decls)


def stage_command(stage: Stage) -> Callable:
    """The typer command of ``stage``: the common flags, the flags derived from its config sections, its own
    options; it builds the config and calls ``stage.run`` exactly as ``autointerp run`` does."""
    flags = stage.flags()
    check_unique(flags, RESERVED | {n for p in stage.options for n in _decls(p)}, stage.name)

    def invoke(**values):
        common = {key: values.pop(key, None) for key in COMMON}
        given = split_values(flags, values)  # what is left in values: the command's own options
        if stage.configure:
            module, _, function = stage.configure.partition(":")
            cfg = getattr(importlib.import_module(module), function)(stage, common, given)
        else:
            cfg = configure(stage, common, given)
        models = select_models(cfg, common["model"]) if stage.models else None
        if stage.checks_sae:
            check_sae_in_run(cfg, models)
        return stage.run(cfg, overwrite=bool(common["overwrite"]), models=models, **values)

    invoke.__signature__ = inspect.Signature(_common_parameters(stage) + [f.parameter() for f in flags] + list(stage.options))
    invoke.__name__ = invoke.__qualname__ = stage.name
    invoke.__doc__ = stage.help
    return friendly_errors(invoke)


def option(name: str, kind, *decls: str, help: str, default=None) -> inspect.Parameter:
    """A command-only option (not a config key), e.g. the report's --out."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, typer.Option(*decls, help=help)])
