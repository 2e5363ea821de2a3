"""``autointerp sweep``: the flags of the layer sweep (the work is in ``stage``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, friendly_errors, load_run_config, with_flags


@friendly_errors
def sweep(
    max_units: Annotated[Optional[int], typer.Option(help="Word units of the seeded document subsample.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Redo the sweep even if its settings changed.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Which layers correspond: CKA / SVCCA / mutual kNN of every layer of the first two models against every layer of the other."""
    cfg = load_run_config(config, run_dir, name)
    cfg.sweep = with_flags(cfg.sweep, max_units=max_units)
    from autointerp.sweep.stage import sweep_all

    sweep_all(cfg, overwrite)
