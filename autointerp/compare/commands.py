"""``autointerp compare``: match features of every pair of configured models (CLI + ``compare_all`` for run)."""

from __future__ import annotations

import itertools
from typing import Annotated

import typer

from autointerp.cli_common import (
    ConfigOpt,
    ModelsOpt,
    NameOpt,
    OverwriteOpt,
    RunDirOpt,
    friendly_errors,
    load_run_config,
    select_models,
    with_flags,
)
from autointerp.config import ModelEntry, RunConfig
from autointerp.errors import UserError


@friendly_errors
def compare(
    model: ModelsOpt = None,
    unit: Annotated[str | None, typer.Option(help="Shared unit: word (token-level harvests) or document.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Significance level of the null threshold.")] = None,
    embedder: Annotated[str | None, typer.Option(help="Label embedder: minilm-l6 (embedded) or a sentence-transformers model.")] = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Match features across models by activation correlation (with a null) and by label similarity."""
    cfg = load_run_config(config, run_dir, name)
    cfg.compare = with_flags(cfg.compare, unit=unit, null_alpha=alpha, embedder=embedder)
    compare_models(cfg, select_models(cfg, model), overwrite=overwrite)


def compare_all(cfg: RunConfig, overwrite: bool = False) -> None:
    """Every pair of the configured models, in config order (what `autointerp run` calls)."""
    compare_models(cfg, cfg.models, overwrite=overwrite)


def compare_models(cfg: RunConfig, models: list[ModelEntry], *, overwrite: bool = False, progress: bool = True) -> list:
    from autointerp.compare.inputs import model_inputs
    from autointerp.compare.stage import compare_pair
    from autointerp.compare.summary import print_summary

    if len(models) < 2:
        raise UserError(f"compare needs at least two models; the run config lists {', '.join(m.slug for m in models) or 'none'} - add another model to the run config (a second models entry)")
    cfg.compare.validate()
    outcomes = []
    for ea, eb in itertools.combinations(models, 2):
        a, b = model_inputs(cfg.run_path, ea), model_inputs(cfg.run_path, eb)
        outcome = compare_pair(cfg.run_path, a, b, cfg.compare, overwrite=overwrite, progress=progress)
        print_summary(outcome.out_dir, outcome.stats, outcome.skipped)
        outcomes.append(outcome)
    return outcomes
