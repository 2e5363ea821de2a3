"""``autointerp harvest``: the flags of the harvest stage (the work is in ``stage``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, apply_overrides, friendly_errors
from autointerp.config import ModelEntry, load_config


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
    cfg = load_config(config)
    if model:  # the models named here, each keeping the SAE its [[models]] entry gives
        configured = {key: m.sae for m in cfg.models for key in (m.slug, m.model)}
        cfg.models = [ModelEntry(m, sae=configured.get(m)) for m in model]
    cfg = apply_overrides(
        cfg,
        corpus=dict(dataset=dataset, config_name=dataset_config, split=split, text_field=text_field, min_chars=min_chars, seed=seed),
        harvest=dict(layer=layer, site=site, ctx_len=ctx_len, batch_size=batch_size, level=level, pool=pool, keep_special=keep_special, dtype=dtype, compute_dtype=compute_dtype, device=device, device_map=device_map, shard_tokens=shard_tokens),
        top=dict(max_tokens=max_tokens, run_dir=str(run_dir) if run_dir else None, name=name),
        sae=sae, builtin=config is None and not model, check_layers=True,
    )
    from autointerp.harvest.stage import harvest_all

    harvest_all(cfg, overwrite)
