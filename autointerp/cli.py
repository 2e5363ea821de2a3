"""The ``autointerp`` command line.

Every stage is a subcommand whose flags live in its package's ``commands`` module and whose work lives in
its ``stage`` module; ``run`` walks ``STAGES`` in order. Flags override the TOML config (``--config``),
which overrides the built-in defaults (the embedded offline pair on the factbook corpus). Problems the
user can fix print one line and exit with status 2; Ctrl-C exits 130 and the next run resumes.
Heavy imports stay inside the stage functions so that ``autointerp --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, apply_overrides, friendly_errors
from autointerp.compare.commands import compare
from autointerp.controls.commands import controls
from autointerp.crosscode.commands import crosscode
from autointerp.config import RunConfig, load_config
from autointerp.eval.commands import score
from autointerp.exemplars.commands import exemplars
from autointerp.explain.commands import explain, export_labels, import_labels
from autointerp.harvest.commands import harvest
from autointerp.progress import console
from autointerp.report.commands import report
from autointerp.sae.commands import train
from autointerp.sweep.commands import sweep

app = typer.Typer(
    help="Do different language models learn the same concepts? Harvest -> SAE -> exemplars -> labels -> scores -> cross-model matching -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _command in (harvest, train, exemplars, explain, score, compare, controls, crosscode, sweep, report):
    app.command(_command.__name__)(_command)
app.command("export-labels")(export_labels)  # labels in Neuronpedia / Delphi shapes (autointerp.explain.interop)
app.command("import-labels")(import_labels)

# What `autointerp run` does, in order: (stage name, "module:function" taking (cfg, overwrite)).
STAGES = (
    ("harvest", "autointerp.harvest.stage:harvest_all"),
    ("train", "autointerp.sae.stage:train_all"),
    ("exemplars", "autointerp.exemplars.stage:exemplars_all"),
    ("explain", "autointerp.explain.stage:explain_all"),
    ("score", "autointerp.eval.stage:score_all"),
    ("compare", "autointerp.compare.stage:compare_all"),
    ("controls", "autointerp.controls.stage:controls_all"),
    ("crosscode", "autointerp.crosscode.stage:crosscode_all"),  # a no-op unless [crosscode] enabled = true
    ("sweep", "autointerp.sweep.stage:sweep_in_run"),  # a no-op unless [sweep] in_run = true
    ("report", "autointerp.report.stage:report_all"),
)


def run_order(cfg: RunConfig) -> list[tuple[str, str]]:
    """STAGES, with an activation-only compare before explain when explain selects from the comparison (select = "contextual" or "matched"):
    that compare needs no labels, and the final compare (labels only: correlations are cached) checks them."""
    order = list(STAGES)
    if cfg.explain.select in ("contextual", "matched"):  # both read the comparison: compare runs before explain
        at = [name for name, _ in order].index("explain")
        order.insert(at, ("compare", dict(STAGES)["compare"]))
    return order


def _stage_function(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


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
        for stage, target in run_order(cfg):
            function = _stage_function(target)  # imported first: the stage's cost starts with its work
            with costs.stage(stage):
                function(cfg, overwrite=overwrite and stage not in done)  # overwrite once per stage
            done.add(stage)
        ledger = costs.ledger()
        console.print(cost_table(ledger) if ledger["stages"] else "run cost: no stage had work to do, and none has a recorded cost")


def main() -> None:  # pragma: no cover - thin wrapper for `python -m autointerp`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
