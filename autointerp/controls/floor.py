"""The random-weights floor: the same architecture and tokenizer with freshly initialised weights, harvested
and SAE-trained like the real model, matched against the *other* real model. Random transformers still give
clean token features (Heap et al. 2025): sharing at this level comes from the tokenizer and the text alone.

Besides its sharing (the verdict's floor), its harvest and SAE are read by the universal-feature floor
(``compare.universal``), the per-class table (``report.class_sharing``) and the crosscoder's floor pairs."""

from __future__ import annotations

import dataclasses

from autointerp.compare.inputs import model_inputs
from autointerp.compare.stage import compare_pair
from autointerp.config import ModelEntry, RunConfig
from autointerp.controls.base import RANDOM_FLOOR_TITLE, Control, Job
from autointerp.controls.calibration import control_summary
from autointerp.controls.ceiling import control_cfg
from autointerp.harvest.stage import harvest_stage
from autointerp.rundir.cost import measure
from autointerp.rundir.layout import ControlsDir, RunDir
from autointerp.sae.stage import train_stage


class RandomWeightsFloor(Control):
    name = "floor"
    role = "floor"
    title = RANDOM_FLOOR_TITLE

    def init_seed(self, cfg: RunConfig) -> int:
        return cfg.controls.floor_seed

    def dirs(self, run: RunDir) -> ControlsDir:
        """Where its random models and pairs live (``controls/random/``, ``controls/floor/``)."""
        return run.controls

    def random_entry(self, cfg: RunConfig, entry: ModelEntry) -> ModelEntry:
        """The random-weights copy of ``entry``: same model spec, layer and site, fresh weights."""
        return ModelEntry(model=entry.model, name=f"{entry.slug}-random", layer=entry.layer, site=entry.site,
                          weights="random", init_seed=self.init_seed(cfg))

    def jobs(self, cfg: RunConfig) -> tuple[list[Job], str | None]:
        slugs = [m.slug for m in cfg.models]
        floors = cfg.controls.floor_models(slugs)
        if not floors:
            return [], f"not measured: [controls] floor = \"{cfg.controls.floor}\""
        by_slug = {m.slug: m for m in cfg.models}
        return [Job(by_slug[slug], other) for slug in floors for other in cfg.models if other.slug != slug], None

    def make(self, cfg: RunConfig, job: Job, *, overwrite: bool = False) -> dict:
        """``job.other`` (real) against the random-weights copy of ``job.entry``."""
        entry, other, run = job.entry, job.other, RunDir(cfg.run_path)
        dirs = self.dirs(run)
        # its SAE is trained ([sae]), even where the real model's is pretrained
        control, model = self.random_entry(cfg, entry), dirs.random_model(entry.slug)
        copy = f"{entry.slug}@random"
        with measure() as cost:
            harvested = harvest_stage(cfg, control, overwrite=overwrite, model=model)
            trained = train_stage(control_cfg(cfg, epochs=cfg.controls.floor_epochs), control, overwrite=overwrite, model=model)
            a = model_inputs(cfg.run_path, other)
            b = model_inputs(cfg.run_path, control, model=model, slug=copy)
            compare_cfg = dataclasses.replace(cfg.compare, representation=cfg.controls.floor_representation, document_level=False)
            outcome = compare_pair(cfg.run_path, a, b, compare_cfg, overwrite=overwrite, pair=dirs.floor_pair(other.slug, entry.slug))
        ran = not (harvested.resumed_shards == harvested.n_shards and trained.skipped and outcome.skipped)
        return (control_summary(outcome.stats, cost["wall_s"] if ran else None, cost if ran else None)
                | {"label": f"{other.slug} vs {copy}", "stands_for": {other.slug: other.slug, copy: entry.slug},
                   "random": entry.slug, "against": other.slug, "init_seed": self.init_seed(cfg)})
