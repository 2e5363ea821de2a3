"""The same-model ceiling: a model's SAE against a second SAE of it (same harvest, same settings, another
seed). Two SAEs of one model share only part of their features (Paulo & Belrose 2025), so a cross-model
fraction means something only next to this. The raw activations of the two sides are identical, so the
representation baselines would be 1 by construction and are not run."""

from __future__ import annotations

import dataclasses

from autointerp.compare.inputs import model_inputs
from autointerp.compare.stage import compare_pair
from autointerp.config import RunConfig
from autointerp.controls.base import SEED_CEILING_TITLE, Control, Job
from autointerp.controls.calibration import control_summary
from autointerp.rundir.cost import measure
from autointerp.rundir.layout import RunDir
from autointerp.sae.stage import train_stage


def control_cfg(cfg: RunConfig, **train) -> RunConfig:
    """The run config for a control's SAE: the model's own settings, no CE-loss evaluation (it would load the
    language model again for a number the controls do not use)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ce_contexts=0, **train))


class SeedCeiling(Control):
    name = "ceiling"
    role = "ceiling"
    title = SEED_CEILING_TITLE

    def jobs(self, cfg: RunConfig) -> tuple[list[Job], str | None]:
        if not cfg.controls.ceiling:
            return [], "not measured: [controls] ceiling = false"
        # a second seed of someone else's SAE cannot be made here; a fresh one would be no ceiling
        pretrained = [e.slug for e in cfg.models if e.sae]
        off = (f"not measured for {', '.join(pretrained)}: its SAE is pretrained (sae = ...), so there is no second seed of it"
               if pretrained else None)
        return [Job(e) for e in cfg.models if not e.sae], off

    def make(self, cfg: RunConfig, job: Job, *, overwrite: bool = False) -> dict:
        entry, run = job.entry, RunDir(cfg.run_path)
        seed = cfg.train.seed + cfg.controls.ceiling_seed
        twin = f"{entry.slug}@seed{seed}"
        with measure() as cost:
            files = run.controls.ceiling_sae(entry.slug)
            trained = train_stage(control_cfg(cfg, seed=seed), entry, overwrite=overwrite, files=files)
            a = model_inputs(cfg.run_path, entry)
            b = model_inputs(cfg.run_path, entry, sae=files, slug=twin)
            # identical raw activations: representation baselines are 1 by construction; the calibration is read at word level
            compare_cfg = dataclasses.replace(cfg.compare, representation=False, document_level=False)
            outcome = compare_pair(cfg.run_path, a, b, compare_cfg, overwrite=overwrite, pair=run.controls.ceiling_pair(entry.slug))
        ran = not (trained.skipped and outcome.skipped)
        return (control_summary(outcome.stats, cost["wall_s"] if ran else None, cost if ran else None)
                | {"label": f"{entry.slug} vs {twin}", "stands_for": {entry.slug: entry.slug}, "seed": seed})
