"""The ``autointerp`` command line.

Every stage is a ``Stage`` (``autointerp.stages``) declared in its package's ``commands`` module, with its work
in the package's ``stage`` module; its subcommand's flags are derived from the config sections it reads, and
``run`` calls the same objects in order (``STAGES``). Flags override the TOML config (``--config``),
which overrides the built-in defaults (the embedded offline pair on the factbook corpus). Problems the
user can fix print one line and exit with status 2; Ctrl-C exits 130 and the next run resumes.
Heavy imports stay inside the stage functions so that ``autointerp --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, apply_overrides, friendly_errors
from autointerp.compare.commands import STAGE as COMPARE
from autointerp.config import RunConfig, load_config
from autointerp.controls.commands import STAGE as CONTROLS
from autointerp.crosscode.commands import STAGE as CROSSCODE
from autointerp.eval.commands import STAGE as SCORE
from autointerp.exemplars.commands import STAGE as EXEMPLARS
from autointerp.explain.commands import STAGE as EXPLAIN
from autointerp.explain.commands import export_labels, import_labels
from autointerp.harvest.commands import STAGE as HARVEST
from autointerp.progress import console
from autointerp.report.commands import STAGE as REPORT
from autointerp.sae.commands import STAGE as TRAIN
from autointerp.stages import Stage, stage_command
from autointerp.sweep.commands import STAGE as SWEEP

# What `autointerp run` does, in order. Each stage's command is derived from the same object (autointerp.stages).
STAGES: tuple[Stage, ...] = (HARVEST, TRAIN, EXEMPLARS, EXPLAIN, SCORE, COMPARE, CONTROLS, CROSSCODE, SWEEP, REPORT)

app = typer.Typer(
    help="Do different language models learn the same concepts? Harvest -> SAE -> exemplars -> labels -> scores -> cross-model matching -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _stage in STAGES:
    app.command(_stage.name)(stage_command(_stage))
app.command("export-labels")(export_labels)  # labels in Neuronpedia / Delphi shapes (autointerp.explain.interop)
app.command("import-labels")(import_labels)


def stage(name: str) -> Stage:
    """The stage called ``name`` (what its command and ``autointerp run`` call)."""
    return next(s for s in STAGES if s.name == name)


def run_order(cfg: RunConfig) -> list[Stage]:
    """STAGES, with an activation-only compare before explain when explain selects from the comparison (select = "contextual" or "matched"):
    that compare needs no labels, and the final compare (labels only: correlations are cached) checks them."""
    order = list(STAGES)
    if cfg.explain.select in ("contextual", "matched"):  # both read the comparison: compare runs before explain
        order.insert(order.index(EXPLAIN), COMPARE)
    return order


@app.command()
@friendly_errors
def run(config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, max_tokens: Annotated[Optional[int], typer.Option(help="Token budget for the corpus.")] = None, sae: SaeOpt = None, overwrite: Annotated[bool, typer.Option(help="Discard stale stage outputs.")] = False) -> None:
    """Run every stage for all configured models (no arguments: the embedded offline default)."""
    # (a pretrained SAE decides its model's unset layer/site here, before anything is harvested)
    cfg = apply_overrides(load_config(config), {}, {}, dict(max_tokens=max_tokens, run_dir=str(run_dir) if run_dir else None, name=name),
                          sae=sae, builtin=config is None, check_layers=True)
    from autointerp.provenance import run_dir_differences
    from autointerp.rundir.cost_table import cost_table
    from autointerp.rundir.lock import run_lock
    from autointerp.rundir.sae_source import check_run_saes
    from autointerp.rundir.stage_cost import RunCost

    with run_lock(cfg.run_path, create=True):  # held across the stages (each stage takes it again: reentrant)
        check_run_saes(cfg.run_path, cfg.models, "train", overwrite=overwrite)  # not another SAE than the run holds
        for line in run_dir_differences(cfg, settings=not overwrite):
            console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
        done: set[str] = set()
        costs = RunCost(cfg.run_path)  # each stage's wall / CPU / peak memory, into its records and cost.json
        for step in run_order(cfg):
            if not step.enabled(cfg):  # crosscode and sweep run only when their config asks
                continue
            step.load()  # imported first: the stage's cost starts with its work
            with costs.stage(step.name):
                step.run(cfg, overwrite=overwrite and step.name not in done)  # overwrite once per stage
            done.add(step.name)
        ledger = costs.ledger()
        console.print(cost_table(ledger) if ledger["stages"] else "run cost: no stage had work to do, and none has a recorded cost")


def main() -> None:  # pragma: no cover - thin wrapper for `python -m autointerp`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
