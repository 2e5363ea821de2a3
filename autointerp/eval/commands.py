"""``autointerp score``: the flags of the score stage (the work is in ``stage``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, ModelsOpt, NameOpt, OverwriteOpt, RunDirOpt, SaeOpt, check_sae_in_run, friendly_errors, load_run_config, select_models
from autointerp.explain.commands import BackendOpt, BaseUrlOpt, ConcurrencyOpt, LLMModelOpt, with_llm_flags

ScorerOpt = Annotated[Optional[list[str]], typer.Option("--scorer", "-s", help="Scorer to run (repeatable): simulation, detection, fuzzing, embedding.")]


@friendly_errors
def score(
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, model: ModelsOpt = None,
    scorer: ScorerOpt = None, backend: BackendOpt = None, llm_model: LLMModelOpt = None, base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None, sae: SaeOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Score existing labels (no re-explaining), each next to a shuffled-label baseline; `--scorer embedding` needs no LLM."""
    cfg = with_llm_flags(load_run_config(config, run_dir, name, sae=sae, model=model), backend, llm_model, base_url, concurrency)
    models = select_models(cfg, model)
    check_sae_in_run(cfg, models)
    from autointerp.eval.stage import score_all

    score_all(cfg, overwrite, scorer, models)
