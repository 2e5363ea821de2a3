"""The controls stage: what a cross-model sharing fraction is read against, made with exactly the machinery
that made it (the same harvest path, SAE trainer, word units, Hungarian matching, nulls).

- **Ceiling** (per model): a second SAE on the same harvest with the same settings and another seed,
  matched against the model's own SAE. Two SAEs of one model share only part of their features (Paulo &
  Belrose 2025), so a cross-model fraction means something only next to this. The raw activations of the
  two sides are identical, so the representation baselines would be 1 by construction and are not run.
- **Floor** (per chosen model): the same architecture and tokenizer with freshly initialised weights,
  harvested and SAE-trained like the real model, matched against the *other* real model. Random
  transformers still give clean token features (Heap et al. 2025): sharing at this level comes from the
  tokenizer and the text alone.

Each control is its own stage run (records, resume, reuse) in ``runs/<name>/controls/``; the summary goes
to ``controls.json``, the only file outside its control directories this stage writes: a real pair's
calibration with its controls is assembled on reading (``controls.calibration.pair_calibration``).
"""

from __future__ import annotations

import dataclasses

from rich.table import Table

from autointerp.compare.inputs import model_inputs
from autointerp.compare.stage import compare_pair
from autointerp.config import ModelEntry, RunConfig
from autointerp.controls.calibration import control_summary
from autointerp.fmt import pct
from autointerp.harvest.stage import harvest_stage
from autointerp.io import read_json
from autointerp.progress import console
from autointerp.rundir.cost import combine, measure
from autointerp.rundir.layout import RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import StageRecord, StageResult
from autointerp.sae.stage import train_stage


def _control_cfg(cfg: RunConfig, **train) -> RunConfig:
    """The run config for a control's SAE: the model's own settings, no CE-loss evaluation (it would load the
    language model again for a number the controls do not use)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ce_contexts=0, **train))


def ceiling(cfg: RunConfig, entry: ModelEntry, *, overwrite: bool = False) -> dict:
    """The model against itself: its SAE vs a second SAE with seed ``[train] seed + [controls] ceiling_seed``."""
    run = RunDir(cfg.run_path)
    seed = cfg.train.seed + cfg.controls.ceiling_seed
    with measure() as cost:
        files = run.controls.ceiling_sae(entry.slug)
        trained = train_stage(_control_cfg(cfg, seed=seed), entry, overwrite=overwrite, files=files)
        a = model_inputs(cfg.run_path, entry)
        b = model_inputs(cfg.run_path, entry, sae=files, slug=f"{entry.slug}@seed{seed}")
        # identical raw activations: representation baselines are 1 by construction; the calibration is read at word level
        compare_cfg = dataclasses.replace(cfg.compare, representation=False, document_level=False)
        outcome = compare_pair(cfg.run_path, a, b, compare_cfg, overwrite=overwrite, pair=run.controls.ceiling_pair(entry.slug))
    return _summary(outcome.stats, cost, ran=not (trained.skipped and outcome.skipped)) | {"seed": seed}


def random_entry(cfg: RunConfig, entry: ModelEntry) -> ModelEntry:
    """The random-weights control of ``entry``: same model spec, layer and site, fresh weights."""
    return ModelEntry(model=entry.model, name=f"{entry.slug}-random", layer=entry.layer, site=entry.site,
                      weights="random", init_seed=cfg.controls.floor_seed)


def floor(cfg: RunConfig, entry: ModelEntry, other: ModelEntry, *, overwrite: bool = False) -> dict:
    """``other`` (real) against the random-weights control of ``entry``."""
    run = RunDir(cfg.run_path)
    control, model = random_entry(cfg, entry), run.controls.random_model(entry.slug)  # its SAE is trained ([sae]), even where the real model's is pretrained
    with measure() as cost:
        harvested = harvest_stage(cfg, control, overwrite=overwrite, model=model)
        trained = train_stage(_control_cfg(cfg, epochs=cfg.controls.floor_epochs), control, overwrite=overwrite, model=model)
        a = model_inputs(cfg.run_path, other)
        b = model_inputs(cfg.run_path, control, model=model, slug=f"{entry.slug}@random")
        compare_cfg = dataclasses.replace(cfg.compare, representation=cfg.controls.floor_representation, document_level=False)
        outcome = compare_pair(cfg.run_path, a, b, compare_cfg, overwrite=overwrite, pair=run.controls.floor_pair(other.slug, entry.slug))
    ran = not (harvested.resumed_shards == harvested.n_shards and trained.skipped and outcome.skipped)
    return _summary(outcome.stats, cost, ran) | {"random": entry.slug, "against": other.slug, "init_seed": cfg.controls.floor_seed}


def _summary(stats: dict, cost: dict, ran: bool) -> dict:
    """A control's entry in controls.json: ``seconds`` (wall, which the calibration reads) and ``cost``
    (``autointerp.rundir.cost``) when it ran, None when it reused its outputs (``_keep_cost`` fills them)."""
    return control_summary(stats, cost["wall_s"] if ran else None) | {"cost": cost if ran else None}


def _keep_cost(new: dict, old: dict | None) -> dict:
    """A control reused from disk keeps the cost it had when it ran (unchanged, so controls.json is too)."""
    if new.get("seconds") is None and old:
        return new | {"seconds": old.get("seconds"), "cost": old.get("cost")}
    return new


def run(cfg: RunConfig, *, overwrite: bool = False, models=None) -> StageResult:
    """Every control the config asks for, summarised in controls.json, which each real pair's calibration reads (the
    stage contract: ``autointerp.stages``; controls concern every configured model, so ``models`` is unused).
    The result's detail is the controls record (controls.json)."""
    with run_lock(cfg.run_path):
        cc = cfg.controls
        cc.validate()
        run = RunDir(cfg.run_path)
        slugs = [m.slug for m in cfg.models]
        by_slug = {m.slug: m for m in cfg.models}
        floors = cc.floor_models(slugs)
        try:
            old = read_json(run.controls.record)
        except (OSError, ValueError):
            old = {}
        record: dict = {"ceiling": {}, "floor": [], "off": {}}
        done, reused = [], []
        if cc.ceiling:
            for entry in cfg.models:
                if entry.sae:  # a second seed of someone else's SAE cannot be made here; a fresh one would be no ceiling
                    record["off"]["ceiling_shared_fraction"] = f"not measured for {entry.slug}: its SAE is pretrained (sae = ...), so there is no second seed of it"
                    continue
                c = ceiling(cfg, entry, overwrite=overwrite)
                (done if c.get("seconds") is not None else reused).append(f"ceiling {entry.slug}")
                record["ceiling"][entry.slug] = _keep_cost(c, (old.get("ceiling") or {}).get(entry.slug))
        else:
            record["off"]["ceiling_shared_fraction"] = "not measured: [controls] ceiling = false"
        old_floors = {(f.get("random"), f.get("against")): f for f in old.get("floor") or []}
        for slug in floors:
            for other in cfg.models:
                if other.slug != slug:
                    f = floor(cfg, by_slug[slug], other, overwrite=overwrite)
                    (done if f.get("seconds") is not None else reused).append(f"floor {slug} x {other.slug}")
                    record["floor"].append(_keep_cost(f, old_floors.get((slug, other.slug))))
        if not floors:
            record["off"]["floor_shared_fraction"] = f"not measured: [controls] floor = \"{cc.floor}\""
        controls = [*record["ceiling"].values(), *record["floor"]]
        record["seconds"] = round(sum(c["seconds"] for c in controls if c.get("seconds") is not None), 1)
        record["cost"] = combine(*(c.get("cost") for c in controls))  # every control's, as recorded when it ran
        record["settings"] = dataclasses.asdict(cc)
        run.controls.root.mkdir(parents=True, exist_ok=True)
        _save(run, record, slugs)
        _print(record)
        return StageResult("controls", tuple(done), tuple(reused), record)


def _save(run: RunDir, record: dict, slugs: list[str]) -> None:
    """controls.json: a stage record (stage, settings, inputs, complete, cost) that also carries each control's
    summary at the top level, where the calibration and the report read them."""
    body = {k: v for k, v in record.items() if k != "settings"}
    # its "cost" is every control's, as recorded when it ran (each control's own records hold the measured parts)
    StageRecord("controls", record["settings"], {"models": slugs}, summary={"seconds": record["seconds"]}, extra=body,
                cost=record["cost"] or {}).save(run.controls.record)


def _print(record: dict) -> None:
    table = Table(title="controls: what the cross-model sharing is read against")
    for col in ("control", "pair", "shared", "beyond words", "seconds"):
        table.add_column(col)
    for slug, c in record["ceiling"].items():
        table.add_row("ceiling (other SAE seed)", f"{slug} vs {slug}@seed{c['seed']}", pct(c.get("shared_fraction")),
                      pct(c.get("beyond_lexical_fraction")), _secs(c.get("seconds")))
    for f in record["floor"]:
        table.add_row("floor (random weights)", f"{f['against']} vs {f['random']}@random", pct(f.get("shared_fraction")),
                      pct(f.get("beyond_lexical_fraction")), _secs(f.get("seconds")))
    console.print(table)


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"
