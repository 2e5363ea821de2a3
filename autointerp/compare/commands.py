"""``autointerp compare``: the flags of the compare stage (the work is in ``stage``)."""

from __future__ import annotations

from typing import Annotated

import typer

from autointerp.cli_common import (
    ConfigOpt,
    ModelsOpt,
    NameOpt,
    OverwriteOpt,
    RunDirOpt,
    SaeOpt,
    check_sae_in_run,
    friendly_errors,
    load_run_config,
    select_models,
    with_flags,
)


@friendly_errors
def compare(
    model: ModelsOpt = None,
    unit: Annotated[str | None, typer.Option(help="Shared unit: word (token-level harvests) or document.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Significance level of the null threshold.")] = None,
    embedder: Annotated[str | None, typer.Option(help="Label embedder: minilm-l6 (embedded) or a sentence-transformers model.")] = None,
    sae: SaeOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Match features across models by activation correlation (with a null) and by label similarity."""
    cfg = load_run_config(config, run_dir, name, sae=sae, model=model)
    cfg.compare = with_flags(cfg.compare, unit=unit, null_alpha=alpha, embedder=embedder)
    models = select_models(cfg, model)
    check_sae_in_run(cfg, models)
    from autointerp.compare.stage import compare_models

    compare_models(cfg, models, overwrite=overwrite)
