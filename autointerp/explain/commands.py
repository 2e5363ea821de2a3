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


FormatOpt = Annotated[str, typer.Option("--format", help="delphi (explanations/<module>_latent<N>.txt, as delphi writes them) or neuronpedia (explanation records for its API and upload).")]
HookpointExportOpt = Annotated[Optional[str], typer.Option("--hookpoint", help="Override the recorded hook: delphi's module (e.g. layers.6) or the whole Neuronpedia source (e.g. 6-res-jb).")]
HookpointImportOpt = Annotated[Optional[str], typer.Option("--hookpoint", help="The hookpoint to import when the source holds several (a delphi module or a Neuronpedia source), or to confirm one that is not the run's.")]


@friendly_errors
def export_labels(
    out: Annotated[str, typer.Argument(help="delphi: its run folder (results/<name>; files go to explanations/) or the explanations folder; "
                                            "neuronpedia: the JSON file. With several models: a folder, one <model>/ or <model>.json each.")],
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, model: ModelsOpt = None,
    fmt: FormatOpt = "neuronpedia", hookpoint: HookpointExportOpt = None,
    source_set: Annotated[Optional[str], typer.Option("--source-set", help="Neuronpedia source set; the source is <layer>-<set> (default from the SAE, e.g. autointerp-res-16k).")] = None,
    model_id: Annotated[Optional[str], typer.Option("--model-id", help="Neuronpedia model id (default: the model's name in the run).")] = None,
    method: Annotated[str, typer.Option("--method", help="Neuronpedia explanation method (typeName) written with each label.")] = "autointerp",
    overwrite: Annotated[bool, typer.Option(help="delphi: replace the module's explanation files of an earlier export (latents no longer labelled are removed).")] = False,
) -> None:
    """Export the final labels for delphi (per-latent files its loader reads) or Neuronpedia (records its package reads)."""
    from pathlib import Path

    from autointerp.explain.interop import export_labels as export
    from autointerp.progress import console

    cfg = load_run_config(config, run_dir, name)
    entries = select_models(cfg, model)
    if len(entries) > 1 and (hookpoint or model_id):
        from autointerp.errors import UserError

        raise UserError("--hookpoint and --model-id name one model's labels; add --model to export that model alone")
    for entry in entries:
        several = len(entries) > 1
        if fmt == "delphi":
            target = Path(out) / entry.slug if several else Path(out)
        else:
            target = Path(out) / f"{entry.slug}.json" if several or Path(out).is_dir() else Path(out)
        n, where = export(cfg.run_path / entry.slug, target, fmt, model_id=model_id, hookpoint=hookpoint, source_set=source_set,
                          method=method, overwrite=overwrite)
        console.print(f"export {entry.slug}: {n} labels -> {where} ({fmt})")


@friendly_errors
def import_labels(
    source: Annotated[str, typer.Argument(help="delphi's explanations folder (or its run folder), or Neuronpedia explanation records (.json list, .jsonl[.gz] or a folder of batches).")],
    model: Annotated[str, typer.Option("--model", "-m", help="The configured model the labels belong to (name or spec).")],
    config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="neuronpedia or delphi (default: detected).")] = None,
    hookpoint: HookpointImportOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Use labels made elsewhere: write them as <model>/labels.parquet, ready for `autointerp score` and `compare`.
    Failed or placeholder explanations become failed rows with the reason, never labels."""
    from autointerp.explain.interop import import_labels as do_import
    from autointerp.progress import console
    from autointerp.rundir.lock import run_lock

    cfg = load_run_config(config, run_dir, name)
    entry = select_models(cfg, [model])[0]
    with run_lock(cfg.run_path):
        done = do_import(cfg.run_path / entry.slug, source, fmt, hookpoint=hookpoint, overwrite=overwrite)
    refused = ""
    if done.failed:
        first = next(iter(done.failed.items()))
        refused = f"; {len(done.failed)} refused (failed rows; e.g. latent {first[0]}: {first[1]})"
    console.print(f"import {entry.slug}: {done.n_labels} labels from {source} ({done.fmt}, {done.hookpoint or 'no hookpoint'}){refused}; "
                  "run `autointerp score` to score them")
