"""``autointerp train``: the flags of the train stage (the work is in ``stage``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autointerp.cli_common import ConfigOpt, NameOpt, RunDirOpt, SaeOpt, friendly_errors, load_run_config, select_models, with_flags


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
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default 2.2e-3/sqrt(d_sae/16384)).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda.")] = None,
    sae: SaeOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Retrain even if an SAE with other settings exists.")] = False,
    config: ConfigOpt = None,
    run_dir: RunDirOpt = None,
    name: NameOpt = None,
) -> None:
    """Train one SAE per model on its harvested activations (resumable; prints metrics); a model with a pretrained
    SAE (`sae = ...` or --sae) gets that one installed instead, checked against its harvest."""
    cfg = load_run_config(config, run_dir, name, sae=sae, model=model)
    cfg.sae = with_flags(cfg.sae, architecture=architecture, k=k, expansion_factor=expansion_factor, d_sae=d_sae, l1_coefficient=l1_coefficient)
    cfg.train = with_flags(cfg.train, epochs=epochs, total_tokens=total_tokens, batch_size=batch_size, lr=lr, device=device)
    from autointerp.sae.stage import train_all

    train_all(cfg, overwrite, select_models(cfg, model))
