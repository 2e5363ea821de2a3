"""``autointerp crosscode``: the flags of the crosscoder stage (the work is in ``stage``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, friendly_errors, load_run_config, with_flags


@friendly_errors
def crosscode(
    d_sae: Annotated[Optional[int], typer.Option(help="Crosscoder latents.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the training word units.")] = None,
    pooling: Annotated[Optional[str], typer.Option(help="mean, or residual (each word type's mean removed: sharing beyond word identity).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Retrain even if the settings changed.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """One dictionary for both models: a BatchTopK crosscoder on word units, shared vs exclusive latents, against the post-hoc matches."""
    cfg = load_run_config(config, run_dir, name)
    cfg.crosscode = with_flags(cfg.crosscode, d_sae=d_sae, epochs=epochs, pooling=pooling)
    from autointerp.crosscode.stage import crosscode_command

    crosscode_command(cfg, overwrite)
