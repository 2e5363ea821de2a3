"""``autointerp exemplars``: the flags of the exemplars stage (the work is in ``stage``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, check_sae_in_run, friendly_errors, load_run_config, select_models, with_flags


@friendly_errors
def exemplars(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Only these configured models (name or spec).")] = None,
    n_top: Annotated[Optional[int], typer.Option(help="Top windows per feature.")] = None,
    n_random: Annotated[Optional[int], typer.Option(help="Random non-activating windows per feature.")] = None,
    sae: SaeOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Re-mine even if nothing changed.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Mine per-feature exemplars (top, quantile and random windows, train/test split) with the trained SAEs."""
    cfg = load_run_config(config, run_dir, name, sae=sae, model=model)
    cfg.exemplars = with_flags(cfg.exemplars, n_top=n_top, n_random=n_random)
    models = select_models(cfg, model)
    check_sae_in_run(cfg, models)
    from autointerp.exemplars.stage import exemplars_all

    exemplars_all(cfg, overwrite, models)
