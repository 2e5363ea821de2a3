"""``autointerp explain``: the flags of the explain stage (the work is in ``stage``), and the LLM flags
that ``autointerp score`` shares."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, ModelsOpt, NameOpt, OverwriteOpt, RunDirOpt, friendly_errors, load_run_config, select_models, with_flags
from autointerp.config import RunConfig

BackendOpt = Annotated[Optional[str], typer.Option("--backend", help="LLM backend: local (in-process, default) or openai (any OpenAI-compatible server).")]
LLMModelOpt = Annotated[Optional[str], typer.Option("--llm-model", help="Explainer/scorer LLM (local: model spec; openai: the server's model name).")]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="Requests / features in flight at once.")]
NFeaturesOpt = Annotated[Optional[int], typer.Option("--n-features", help="Features labelled per model.")]


def with_llm_flags(cfg: RunConfig, backend, llm_model, base_url, concurrency) -> RunConfig:
    cfg.llm = with_flags(cfg.llm, backend=backend, model=llm_model, base_url=base_url, concurrency=concurrency)
    return cfg


@friendly_errors
def explain(
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, model: ModelsOpt = None,
    backend: BackendOpt = None, llm_model: LLMModelOpt = None, base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None, n_features: NFeaturesOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Label SAE features with a secondary LLM (default: the embedded Gemma, in-process) -> <model>/labels.parquet."""
    cfg = with_llm_flags(load_run_config(config, run_dir, name), backend, llm_model, base_url, concurrency)
    cfg.explain = with_flags(cfg.explain, n_features=n_features)
    from autointerp.explain.stage import explain_all

    explain_all(cfg, overwrite, select_models(cfg, model))
