"""``autointerp harvest``: the flags of the harvest stage (the work is in ``stage``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, apply_overrides, friendly_errors, set_flags
from autointerp.config import ModelEntry, RunConfig, load_config
from autointerp.rundir.layout import RunDir


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
    device_map: Annotated[Optional[str], typer.Option(help="auto: spread a model too large for one GPU over all GPUs (accelerate).")] = None,
    shard_tokens: Annotated[Optional[int], typer.Option(help="Rows per activation shard (resume granularity).")] = None,
    sae: SaeOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing harvest with different settings.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Harvest activations at one layer for one or more models over a shared corpus (resumable); a model with a
    pretrained SAE (`sae = ...` or --sae) is harvested where that SAE reads, unless a layer is set."""
    cfg, saved = load_config(config), None
    if config is None:  # a run that already has a config keeps its models: see harvest_models
        path = RunDir(run_dir if run_dir is not None else Path("runs") / (name or "default")).config
        saved = load_config(path) if path.is_file() else None
    selected = None
    if model:
        cfg, selected = harvest_models(saved or cfg, model, kept=saved is not None, flags=set_flags(layer=layer, site=site))
    cfg = apply_overrides(
        cfg,
        corpus=dict(dataset=dataset, config_name=dataset_config, split=split, text_field=text_field, min_chars=min_chars, seed=seed),
        harvest=dict(layer=layer, site=site, ctx_len=ctx_len, batch_size=batch_size, level=level, pool=pool, keep_special=keep_special, dtype=dtype, compute_dtype=compute_dtype, device=device, device_map=device_map, shard_tokens=shard_tokens),
        top=dict(max_tokens=max_tokens, run_dir=str(run_dir) if run_dir else None, name=name),
        sae=sae, builtin=config is None and not model, check_layers=True,
    )
    from autointerp.harvest.stage import harvest_all

    harvest_all(cfg, overwrite, [m for m in cfg.models if m.slug in selected] if selected is not None else None)


def harvest_models(cfg: RunConfig, model: list[str], *, kept: bool, flags: dict) -> tuple[RunConfig, list[str]]:
    """``--model`` on ``autointerp harvest``: the models named, each keeping its ``[[models]]`` entry (its SAE, its
    layer) when configured, and the slugs to harvest.

    ``kept`` (the run directory already has a config): the run's other models stay in it, each pinned to the
    layer and site it was configured with (a ``--layer`` given now is for the models named now), so harvesting a
    second model into a run adds it instead of silently dropping the first from the config while its harvest
    stays on disk. Without a saved config the named models are the run's models."""
    configured = {key: m for m in cfg.models for key in (m.slug, m.model)}
    named = [dataclasses.replace(configured[m]) if m in configured else ModelEntry(m) for m in model]
    for entry in named:
        for key in flags:  # --layer / --site given now place the named models
            setattr(entry, key, None)
    if not kept:
        cfg.models = named
        return cfg, [e.slug for e in named]
    slugs = {e.slug for e in named}
    others = []
    for entry in cfg.models:
        if entry.slug in slugs:
            continue
        resolved = cfg.harvest_for(entry)
        others.append(dataclasses.replace(entry, layer=resolved.layer, site=resolved.site))
    cfg.models = others + named
    return cfg, [e.slug for e in named]
