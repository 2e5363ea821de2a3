"""``autointerp explain``: the explain stage as its command and ``autointerp run`` see it (the work is in
``stage``), and the commands that move labels in and out (delphi, Neuronpedia)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, ModelsOpt, NameOpt, OverwriteOpt, RunDirOpt, friendly_errors, load_run_config, select_models
from autointerp.stages import Stage

# The LLM's keys are flags of explain and score alike: --llm-<key>, with the short names users already type.
LLM_FLAGS = dict(
    prefixes={"llm": "llm-"},
    names={"llm.backend": ("--backend", "--llm-backend"), "llm.base_url": ("--base-url", "--llm-base-url"),
           "llm.concurrency": ("--concurrency", "--llm-concurrency")},
)

STAGE = Stage(
    name="explain",
    module="autointerp.explain.stage",
    help="Label SAE features with a secondary LLM (default: the embedded Gemma, in-process) -> <model>/labels.parquet.",
    sections=("llm", "explain"),
    reads=("exemplars", "compare"),  # compare: select = "contextual" / "matched" label the best pairs first
    prefixes=LLM_FLAGS["prefixes"],
    names=LLM_FLAGS["names"],
)


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
