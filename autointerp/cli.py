"""The ``autointerp`` command line.

Every stage is a subcommand; ``run`` chains them. Flags override the TOML config (``--config``), which
overrides the built-in defaults (the embedded offline pair on the factbook corpus). Problems the user
can fix print one line and exit with status 2; Ctrl-C exits 130 and the next run resumes.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from autointerp.cli_common import (
    ConfigOpt,
    NameOpt,
    RunDirOpt,
    apply_overrides,
    friendly_errors,
    load_run_config,
    select_models,
    with_flags,
)
from autointerp.config import ModelEntry, RunConfig, load_config
from autointerp.progress import console

app = typer.Typer(
    help="Do different language models learn the same concepts? Harvest -> SAE -> exemplars -> labels -> scores -> cross-model matching -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Later stages live in their own modules, each exposing a typer command function named after the stage
# and an ``<stage>_all(cfg, overwrite=...)`` function that ``run`` chains. Until a module lands, its
# command reports that it is not built yet.
STAGES = {
    "explain": ("autointerp.explain.commands", "LLM labelling (auto-interp module)"),
    "score": ("autointerp.explain.commands", "label scoring (auto-interp module)"),
    "compare": ("autointerp.compare.commands", "cross-model matching (comparison module)"),
    "report": ("autointerp.report.commands", "markdown/HTML reports (reports module)"),
}


def _stage_module(stage: str):
    module_name = STAGES[stage][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None


@app.command()
@friendly_errors
def harvest(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="HF hub id, local dir, .gguf path, or embedded: gemma-3-270m, minilm-l6. Repeat for several; default: the config's models.")] = None,
    layer: Annotated[Optional[int], typer.Option("--layer", "-l", help="Residual stream after block L (negative counts from the end).")] = None,
    site: Annotated[Optional[str], typer.Option(help="resid (block output) or mlp (the block's MLP output).")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="factbook (embedded), a .txt/.jsonl/.parquet/.csv file or directory, or a hub dataset name.")] = None,
    dataset_config: Annotated[Optional[str], typer.Option(help="Hub dataset config name.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Hub dataset split.")] = None,
    text_field: Annotated[Optional[str], typer.Option(help="Column holding the text.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Token budget for the corpus (whole documents).")] = None,
    min_chars: Annotated[Optional[int], typer.Option(help="Drop documents shorter than this.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Corpus shuffle seed.")] = None,
    ctx_len: Annotated[Optional[int], typer.Option(help="Tokens per context (incl. special tokens).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Contexts per forward pass.")] = None,
    level: Annotated[Optional[str], typer.Option(help="token (one row per token) or sequence (one row per document).")] = None,
    pool: Annotated[Optional[str], typer.Option(help="Sequence level: last (last real token) or mean.")] = None,
    keep_special: Annotated[Optional[bool], typer.Option("--keep-special/--skip-special", help="Store BOS/CLS/SEP rows (default: skip).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="Storage dtype: float32, bfloat16, float16.")] = None,
    compute_dtype: Annotated[Optional[str], typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N.")] = None,
    shard_tokens: Annotated[Optional[int], typer.Option(help="Rows per activation shard (resume granularity).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing harvest with different settings.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Harvest activations at one layer for one or more models over a shared corpus (resumable)."""

    cfg = apply_overrides(
        load_config(config),
        corpus=dict(dataset=dataset, config_name=dataset_config, split=split, text_field=text_field, min_chars=min_chars, seed=seed),
        harvest=dict(layer=layer, site=site, ctx_len=ctx_len, batch_size=batch_size, level=level, pool=pool, keep_special=keep_special, dtype=dtype, compute_dtype=compute_dtype, device=device, shard_tokens=shard_tokens),
        top=dict(max_tokens=max_tokens, run_dir=str(run_dir) if run_dir else None, name=name),
    )
    if model:
        cfg.models = [ModelEntry(m) for m in model]
    _harvest_all(cfg, overwrite)


@app.command()
@friendly_errors
def train(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Train only these configured models (name or spec).")] = None,
    architecture: Annotated[Optional[str], typer.Option(help="topk (default), batchtopk or relu.")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="Active latents per token (TopK/BatchTopK).")] = None,
    expansion_factor: Annotated[Optional[int], typer.Option(help="d_sae = expansion_factor x d_model.")] = None,
    d_sae: Annotated[Optional[int], typer.Option(help="Dictionary size (overrides expansion_factor).")] = None,
    l1_coefficient: Annotated[Optional[float], typer.Option(help="L1 penalty (relu).")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the training shards.")] = None,
    total_tokens: Annotated[Optional[int], typer.Option(help="Training tokens (overrides epochs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Tokens per step.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default 1e-3/sqrt(d_sae/16384)).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Retrain even if an SAE with other settings exists.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Train one SAE per model on its harvested activations (resumable; prints metrics)."""
    cfg = load_run_config(config, run_dir, name)
    cfg.sae = with_flags(cfg.sae, architecture=architecture, k=k, expansion_factor=expansion_factor, d_sae=d_sae, l1_coefficient=l1_coefficient)
    cfg.train = with_flags(cfg.train, epochs=epochs, total_tokens=total_tokens, batch_size=batch_size, lr=lr, device=device)
    _train_all(cfg, select_models(cfg, model), overwrite)


def _train_all(cfg: RunConfig, models: list[ModelEntry], overwrite: bool) -> None:
    from autointerp.stages import save_resolved_config, train_stage

    save_resolved_config(cfg)
    table = Table(title=f"SAE metrics on held-out tokens: {cfg.run_path}")
    for col in ("model", "d_sae", "FVU", "L0", "dead", "Gini", "cos p95", "CE rec."):
        table.add_column(col)
    for entry in models:
        outcome = train_stage(cfg, entry, overwrite=overwrite)
        m = outcome.summary
        if "rank" in m:  # a non-zero data-parallel rank: rank 0 reports
            continue
        ce = "n/a" if m.get("ce_loss_recovered") is None else f"{m['ce_loss_recovered']:.1%}"
        label = entry.slug + (" (cached)" if outcome.skipped else "")
        table.add_row(label, str(m.get("d_sae", "")), f"{m['fvu']:.3f}", f"{m['l0']:.1f}", f"{m['dead_fraction']:.1%}", f"{m['gini']:.2f}", f"{m['decoder_cos_p95']:.2f}", ce)
    from autointerp.training import distributed as ddp

    if ddp.is_main():
        console.print(table)


@app.command()
@friendly_errors
def exemplars(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Only these configured models (name or spec).")] = None,
    n_top: Annotated[Optional[int], typer.Option(help="Top windows per feature.")] = None,
    n_random: Annotated[Optional[int], typer.Option(help="Random non-activating windows per feature.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Re-mine even if nothing changed.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Mine per-feature exemplars (top, quantile and random windows, train/test split) with the trained SAEs."""
    cfg = load_run_config(config, run_dir, name)
    cfg.exemplars = with_flags(cfg.exemplars, n_top=n_top, n_random=n_random)
    _exemplars_all(cfg, select_models(cfg, model), overwrite)


def _exemplars_all(cfg: RunConfig, models: list[ModelEntry], overwrite: bool) -> None:
    from autointerp.stages import exemplars_stage, save_resolved_config

    save_resolved_config(cfg)
    table = Table(title=f"exemplars: {cfg.run_path}")
    for col in ("model", "level", "rows scanned", "features", "dead", "windows", "status"):
        table.add_column(col)
    for entry in models:
        outcome = exemplars_stage(cfg, entry, overwrite=overwrite)
        c = outcome.counts
        table.add_row(entry.slug, c["level"], f"{c['n_rows']:,}", str(c["n_features"]), str(c["n_dead"]), f"{c['n_windows']:,}", "cached" if outcome.skipped else "mined")
    console.print(table)


def _harvest_status(result) -> str:
    if result.resumed_shards == result.n_shards:
        return "cached"
    return f"resumed after {result.resumed_shards} shards" if result.resumed_shards else "harvested"


def _harvest_all(cfg: RunConfig, overwrite: bool) -> None:
    from autointerp.stages import harvest_stage, save_resolved_config

    save_resolved_config(cfg)
    table = Table(title=f"harvest: {cfg.run_path}")
    for col in ("model", "layer", "level", "rows", "d_model", "shards", "status"):
        table.add_column(col)
    for entry in cfg.models:
        result = harvest_stage(cfg, entry, overwrite=overwrite)
        hcfg = cfg.harvest_for(entry)
        table.add_row(entry.slug, str(hcfg.layer), hcfg.level, f"{result.n_rows:,}", str(result.d_model), str(result.n_shards), _harvest_status(result))
    console.print(table)


@app.command()
@friendly_errors
def run(config: ConfigOpt = None, run_dir: RunDirOpt = None, name: NameOpt = None, max_tokens: Annotated[Optional[int], typer.Option(help="Token budget for the corpus.")] = None, overwrite: Annotated[bool, typer.Option(help="Discard stale stage outputs.")] = False) -> None:
    """Run every stage for all configured models (no arguments: the embedded offline default)."""
    cfg = apply_overrides(load_config(config), {}, {}, dict(max_tokens=max_tokens, run_dir=str(run_dir) if run_dir else None, name=name))
    from autointerp.stages import run_dir_differences

    for line in run_dir_differences(cfg, settings=not overwrite):
        console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
    _harvest_all(cfg, overwrite)
    _train_all(cfg, cfg.models, overwrite)
    _exemplars_all(cfg, cfg.models, overwrite)
    order = list(STAGES)
    if cfg.explain.select == "matched":
        # Activation matching needs no labels; running it first lets explain label both sides of the best
        # matched pairs, and the second compare (labels only: correlations are cached) checks them.
        order = ["compare", *order]
    missing = []
    for i, stage in enumerate(order):
        module = _stage_module(stage)
        if module is None or not hasattr(module, f"{stage}_all"):
            missing.append(stage)
            continue
        getattr(module, f"{stage}_all")(cfg, overwrite=overwrite and stage not in order[:i])  # overwrite once per stage
    if missing:
        console.print(f"[yellow]note:[/] stages not built yet: {', '.join(missing)}. Outputs: {cfg.run_path}")


def _planned(stage: str, what: str):
    def command() -> None:
        console.print(f"[bold red]error:[/] `autointerp {stage}` ({what}) is not implemented yet", highlight=False)
        raise typer.Exit(3)

    command.__doc__ = f"(not implemented yet) {what}."
    return command


for _stage, (_module_name, _what) in STAGES.items():
    _module = _stage_module(_stage)
    _command = getattr(_module, _stage, None) if _module is not None else None
    app.command(_stage)(_command if _command is not None else _planned(_stage, _what))


def main() -> None:  # pragma: no cover - thin wrapper for `python -m autointerp`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
