"""The exemplars stage: encode each model's harvest with its SAE and mine per-feature windows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from autointerp.config import ModelEntry, RunConfig
from autointerp.data.corpus import load_saved_documents
from autointerp.errors import UserError
from autointerp.exemplars.feature_classes import RULE_VERSION as CLASS_RULE_VERSION
from autointerp.exemplars.mine import mine_exemplars
from autointerp.exemplars.profile import compute_profiles, write_profiles
from autointerp.io import file_sha256, read_parquet
from autointerp.progress import console
from autointerp.rundir.layout import RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.sae.saelens import load_sae


@dataclass
class ExemplarOutcome:
    out_dir: Path
    skipped: bool
    counts: dict


def exemplar_inputs(sae_weights: Path) -> dict:
    """What the windows depend on besides the settings: the SAE that encoded the harvest."""
    return {"sae_sha256": file_sha256(sae_weights)}


def exemplars_stage(cfg: RunConfig, entry: ModelEntry, *, overwrite: bool = False, progress: bool = True) -> ExemplarOutcome:
    """Encode the harvest with the trained SAE and mine per-feature exemplars (no-op when unchanged)."""
    run = RunDir(cfg.run_path)
    model = run.model(entry.slug)
    if not model.sae.weights.is_file():
        raise UserError(f"no trained SAE in {model.sae_dir}; run `autointerp train` first")
    settings = {"exemplars": dataclasses.asdict(cfg.exemplars), "feature_classes": CLASS_RULE_VERSION}
    inputs = exemplar_inputs(model.sae.weights)
    previous = StageRecord.load(model.exemplars_record)
    if decide(previous, settings, inputs, overwrite=overwrite, where=model.exemplars) is Decision.REUSE and model.exemplars.is_file():
        if not model.lexical_profile.is_file():  # runs mined before profiles existed get one without re-mining
            write_lexical_profile(run, model)
        return ExemplarOutcome(model.root, True, previous.summary)
    sae = load_sae(model.sae_dir)
    docs = load_saved_documents(run.corpus)
    result = mine_exemplars(sae, model.harvest, docs, model.root, cfg.exemplars, progress=progress)
    write_profiles(result.profile, model.lexical_profile)  # computed by the miner (hard negatives hold its words)
    counts = {"n_rows": result.n_rows, "n_features": result.n_features, "n_dead": result.n_dead, "n_windows": result.n_windows, "level": result.level,
              "n_without_hard_negatives": result.n_without_hard_negatives if result.level == "token" else None}
    StageRecord("exemplars", settings, inputs, summary=counts).save(model.exemplars_record)
    return ExemplarOutcome(model.root, False, counts)


def write_lexical_profile(run: RunDir, model) -> None:
    """``<model>/lexical_profile.parquet`` from the training windows just mined (see ``exemplars.profile``)."""
    documents = read_parquet(run.documents) if run.documents.is_file() else None
    write_profiles(compute_profiles(model.exemplars, documents), model.lexical_profile)


def run(cfg: RunConfig, *, overwrite: bool = False, models: list[ModelEntry] | None = None) -> StageResult:
    """Mine exemplars for every model and print one table (the stage contract: ``autointerp.stages``)."""
    done, reused = [], []
    with run_lock(cfg.run_path):
        models = cfg.models if models is None else models
        table = Table(title=f"exemplars: {cfg.run_path}")
        for col in ("model", "level", "rows scanned", "features", "dead", "windows", "no hard neg.", "status"):
            table.add_column(col)
        for entry in models:
            outcome = exemplars_stage(cfg, entry, overwrite=overwrite)
            c = outcome.counts
            (reused if outcome.skipped else done).append(entry.slug)
            without = c.get("n_without_hard_negatives")  # features with held-out windows but no hard negative
            table.add_row(entry.slug, c["level"], f"{c['n_rows']:,}", str(c["n_features"]), str(c["n_dead"]), f"{c['n_windows']:,}",
                          "not mined" if without is None else f"{without:,}", "cached" if outcome.skipped else "mined")
        console.print(table)
    return StageResult("exemplars", tuple(done), tuple(reused))
