"""``autointerp controls``: the flags of the same-model ceiling and random-weights floor (work in ``stage``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, check_sae_in_run, friendly_errors, load_run_config, with_flags


@friendly_errors
def controls(
    ceiling: Annotated[Optional[bool], typer.Option("--ceiling/--no-ceiling", help="Second SAE seed per model, matched against the first.")] = None,
    floor: Annotated[Optional[str], typer.Option(help="Random-weights control for: first, last, all, none, or a model's name.")] = None,
    sae: SaeOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Redo the controls even if their settings changed.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """What the sharing fraction is read against: each model vs itself (other SAE seed) and vs random weights."""
    cfg = load_run_config(config, run_dir, name, sae=sae)
    cfg.controls = with_flags(cfg.controls, ceiling=ceiling, floor=floor)
    check_sae_in_run(cfg)  # (a model whose SAE is pretrained gets no same-model ceiling)
    from autointerp.controls.stage import controls_all

    controls_all(cfg, overwrite)
