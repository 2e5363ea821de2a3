"""``autointerp explain``: the flags of the explain stage (the work is in ``stage``), and the LLM flags
that ``autointerp score`` shares."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, ModelsOpt, NameOpt, OverwriteOpt, RunDirOpt, SaeOpt, check_sae_in_run, friendly_errors, load_run_config, select_models, with_flags
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
    concurrency: ConcurrencyOpt = None, n_features: NFeaturesOpt = None, sae: SaeOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Label SAE features with a secondary LLM (default: the embedded Gemma, in-process) -> <model>/labels.parquet."""
    cfg = with_llm_flags(load_run_config(config, run_dir, name, sae=sae, model=model), backend, llm_model, base_url, concurrency)
    cfg.explain = with_flags(cfg.explain, n_features=n_features)
    models = select_models(cfg, model)
    check_sae_in_run(cfg, models)
    from autointerp.explain.stage import explain_all

    explain_all(cfg, overwrite, models)


FormatOpt = Annotated[str, typer.Option("--format", help="neuronpedia (explanation export list) or delphi ({hookpoint_latentN: text}).")]


@friendly_errors
def export_labels(
    out: Annotated[str, typer.Argument(help="Output JSON file (one model) or folder (one <model>.json per model).")],
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, model: ModelsOpt = None,
    fmt: FormatOpt = "neuronpedia", sae_id: Annotated[Optional[str], typer.Option("--sae-id", help="SAE id / hookpoint written into the file.")] = None,
) -> None:
    """Export the final labels in Neuronpedia's or Delphi's JSON shape (labels made here, read elsewhere)."""
    from pathlib import Path

    from autointerp.explain.interop import export_labels as export
    from autointerp.progress import console

    cfg = load_run_config(config, run_dir, name)
    entries = select_models(cfg, model)
    for entry in entries:
        target = Path(out) / f"{entry.slug}.json" if len(entries) > 1 or Path(out).is_dir() else Path(out)
        n = export(cfg.run_path / entry.slug, target, fmt, model_id=entry.slug, sae_id=sae_id)
        console.print(f"export {entry.slug}: {n} labels -> {target} ({fmt})")


@friendly_errors
def import_labels(
    source: Annotated[str, typer.Argument(help="A Neuronpedia explanation export, a Delphi explanations JSON, or Delphi's explanations folder.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The configured model the labels belong to (name or spec).")],
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="neuronpedia or delphi (default: detected).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Use labels made elsewhere: write them as <model>/labels.parquet, ready for `autointerp score` and `compare`."""
    from autointerp.explain.interop import import_labels as do_import
    from autointerp.progress import console
    from autointerp.rundir.lock import run_lock

    cfg = load_run_config(config, run_dir, name)
    entry = select_models(cfg, [model])[0]
    with run_lock(cfg.run_path):
        n = do_import(cfg.run_path / entry.slug, source, fmt, overwrite=overwrite)
    console.print(f"import {entry.slug}: {n} labels from {source}; run `autointerp score` to score them")
