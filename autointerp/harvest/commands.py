"""``autointerp harvest``: the harvest stage as its command and ``autointerp run`` see it (the work is in ``stage``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from autointerp.cli_common import apply_overrides, set_flags
from autointerp.config import ModelEntry, RunConfig, load_config
from autointerp.rundir.layout import RunDir
from autointerp.stages import Stage


STAGE = Stage(
    name="harvest",
    module="autointerp.harvest.stage",
    help="Harvest activations at one layer for one or more models over a shared corpus (resumable); a model with a "
         "pretrained SAE (`sae = ...` or --sae) is harvested where that SAE reads, unless a layer is set.",
    sections=("corpus", "harvest"),
    top=("max_tokens",),
    checks_sae=False,  # the stage checks the SAE against the run's before harvesting (check_run_saes)
    creates_run=True,
    configure="autointerp.harvest.commands:harvest_config",
    names={"corpus.dataset": ("--dataset", "-d"), "corpus.config_name": ("--dataset-config",),
           "harvest.layer": ("--layer", "-l"), "harvest.keep_special": ("--keep-special/--skip-special",)},
    model_help="HF hub id, local dir, .gguf path, or embedded: gemma-3-270m, minilm-l6. Repeat for several; default: the config's models.",
    overwrite_help="Discard an existing harvest with different settings.",
)


def harvest_config(stage: Stage, common: dict, given: dict[str, dict]) -> RunConfig:
    """``autointerp harvest``'s config: --model names the models to harvest (added to a run that has others,
    see ``harvest_models``), and a pretrained SAE decides the layer of a model that sets none."""
    config, run_dir, name, model = common["config"], common["run_dir"], common["name"], common["model"]
    cfg, saved = load_config(config), None
    if config is None:  # a run that already has a config keeps its models: see harvest_models
        path = RunDir(run_dir if run_dir is not None else Path("runs") / (name or "default")).config
        saved = load_config(path, saved=True) if path.is_file() else None
    harvest = given.get("harvest") or {}
    if model:
        cfg, _ = harvest_models(saved or cfg, model, kept=saved is not None, flags=set_flags(layer=harvest.get("layer"), site=harvest.get("site")))
    top = given.get("") or {}
    return apply_overrides(cfg, corpus=given.get("corpus") or {}, harvest=harvest,
                           top=dict(max_tokens=top.get("max_tokens"), run_dir=str(run_dir) if run_dir else None, name=name),
                           sae=common["sae"], builtin=config is None and not model, check_layers=True)


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
