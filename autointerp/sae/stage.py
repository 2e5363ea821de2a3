"""The train stage: an SAE per model on its harvested shards (last shard(s) held out), saved in the SAELens
layout with held-out metrics; resumes from checkpoints, and is a no-op when nothing changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from autointerp import distributed as ddp
from autointerp.config import ModelEntry, RunConfig, section_settings
from autointerp.data.corpus import load_saved_documents
from autointerp.errors import UserError
from autointerp.harvest.buffer import held_out_split, iter_activation_batches
from autointerp.harvest.harvester import load_manifest
from autointerp.io import write_json
from autointerp.models.load import load_model
from autointerp.progress import console
from autointerp.rundir.layout import ModelDir, RunDir, SAEFiles, ShardPaths, shard_number
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import Decision, StageRecord, StageResult, decide
from autointerp.rundir.sae_source import check_run_saes
from autointerp.sae.metrics import compute_metrics
from autointerp.sae.pretrained.install import install_pretrained, prepare_pretrained, uses_pretrained
from autointerp.sae.registry import architecture, create_sae, trainable_names
from autointerp.sae.saelens import save_sae
from autointerp.sae.trainer import train_sae


@dataclass
class TrainOutcome:
    sae_dir: Path
    skipped: bool  # inputs and config unchanged since a completed run
    summary: dict


def _settings(cfg: RunConfig) -> dict:
    """What the SAE depends on among the user's settings (device, checkpoint and log spacing do not change it)."""
    train = {k: list(v) if isinstance(v, tuple) else v for k, v in section_settings(cfg.train).items()
             if k not in ("device", "checkpoint_every", "log_every")}
    return {"sae": section_settings(cfg.sae), "train": train}


def train_stage(cfg: RunConfig, entry: ModelEntry, *, overwrite: bool = False, progress: bool = True,
                model: ModelDir | None = None, files: SAEFiles | None = None) -> TrainOutcome:
    """Train an SAE on a model's harvested shards (last shard(s) held out), save it in the SAELens
    layout with metrics.json; resumes from checkpoints, and is a no-op when nothing changed."""
    model = model or RunDir(cfg.run_path).model(entry.slug)  # the controls pass their own directories
    if uses_pretrained(entry) and (files is None or files.root == model.sae.root):  # installed, never trained
        return TrainOutcome(*install_pretrained(cfg, entry, model, overwrite=overwrite))
    if not architecture(cfg.sae.architecture).trainable:
        raise UserError(f"architecture {cfg.sae.architecture!r} is inference-only (for pretrained SAEs); "
                        f"train one of {', '.join(trainable_names())}")
    ddp.init_from_env()  # no-op unless launched by torchrun
    hdir, files = model.harvest, files or model.sae
    manifest = load_manifest(hdir)
    if not manifest.get("complete"):
        raise UserError(f"the harvest in {hdir} is incomplete; run `autointerp harvest` again to finish it, then train")
    out = files.root
    settings, inputs = _settings(cfg), {"harvest": manifest["identity"]}
    previous = StageRecord.load(files.record)
    decision = decide(previous, settings, inputs, overwrite=overwrite, where=out)
    if decision is Decision.REUSE:
        return TrainOutcome(out, True, previous.summary)
    if decision is Decision.REDO:
        files.checkpoint.unlink(missing_ok=True)  # a checkpoint of the stale SAE must not be resumed
    shards = [ShardPaths.of(hdir, s["index"]).activations for s in manifest["shards"]]
    train_paths, eval_paths = held_out_split(shards, cfg.train.n_eval_shards)
    rows = {s["index"]: s["rows"] for s in manifest["shards"]}
    train_rows = sum(rows[shard_number(p)] for p in train_paths)
    sae_cfg = cfg.sae.for_input(int(manifest["d_model"]), metadata={
        "model_name": entry.model,
        "hook_name": manifest["hook_name"],
        "hook_layer": manifest["identity"]["layer"],
        "context_size": manifest["identity"]["ctx_len"],
        "dataset_path": cfg.corpus.dataset,
        "level": manifest["identity"]["level"],
    })
    tcfg = cfg.train.for_rows(train_rows)  # total_tokens: epochs x train_rows unless set
    sae = create_sae(sae_cfg, seed=tcfg.seed)
    batches = iter_activation_batches(train_paths, tcfg.batch_size, buffer_rows=min(262_144, 4 * train_rows), seed=tcfg.seed, loop=True)
    result = train_sae(sae, batches, tcfg, checkpoint_dir=files.checkpoints, progress=progress)
    if not ddp.is_main():  # every rank holds the same SAE; rank 0 writes it
        ddp.barrier()
        return TrainOutcome(out, False, {"rank": ddp.rank(), "train_tokens": result.tokens})
    save_sae(sae, out, result.log_feature_density())
    summary = _evaluate_sae(cfg, entry, sae, eval_paths, result, manifest)
    write_json(files.metrics, summary)
    StageRecord("train", settings, inputs, complete=result.completed, summary=summary | {"world_size": ddp.world_size()}).save(files.record)
    ddp.barrier()
    return TrainOutcome(out, False, summary)


def _evaluate_sae(cfg: RunConfig, entry: ModelEntry, sae, eval_paths: list[Path], result, manifest: dict) -> dict:
    """Metrics on the held-out shard(s); for causal LMs also CE loss with the reconstruction spliced in."""
    lm = docs = None
    if cfg.train.ce_contexts > 0 and manifest["identity"]["level"] == "token":
        lm = load_model(entry.model, device=cfg.train.device, dtype="float32", random_init=entry.init_seed if entry.random else None)
        lm = lm if lm.is_causal else None  # CE loss needs a language-model head
        docs = load_saved_documents(RunDir(cfg.run_path).corpus) if lm is not None else None
    eval_batches = iter_activation_batches(eval_paths, cfg.train.batch_size, seed=0)
    metrics = compute_metrics(
        sae.cpu().eval(), eval_batches, train_result=result, lm=lm, docs=docs,
        harvest_manifest=manifest if lm is not None else None, ce_contexts=cfg.train.ce_contexts,
    )
    summary = dataclasses.asdict(metrics)
    summary.update(d_sae=sae.cfg.d_sae, train_tokens=result.tokens, train_steps=result.steps, train_fvu=result.fvu)
    return summary


def run(cfg: RunConfig, *, overwrite: bool = False, models: list[ModelEntry] | None = None) -> StageResult:
    """Train an SAE per model (or install its pretrained one) and print their held-out metrics (the stage
    contract: ``autointerp.stages``)."""
    done, reused = [], []
    with run_lock(cfg.run_path):
        models = cfg.models if models is None else models
        check_run_saes(cfg.run_path, models, "train", overwrite=overwrite)  # another SAE than the run's: said, not mixed
        rundir = RunDir(cfg.run_path)  # pretrained SAEs are all read and checked before anything is written
        prepared = {e.slug: prepare_pretrained(cfg, e, rundir.model(e.slug), overwrite=overwrite) for e in models if uses_pretrained(e)}
        table = Table(title=f"SAE metrics on held-out tokens: {cfg.run_path}")
        for col in ("model", "d_sae", "FVU", "L0", "dead", "Gini", "cos p95", "CE rec."):
            table.add_column(col)
        for entry in models:
            if entry.slug in prepared:
                outcome = TrainOutcome(*install_pretrained(cfg, entry, rundir.model(entry.slug), overwrite=overwrite, prepared=prepared[entry.slug]))
            else:
                outcome = train_stage(cfg, entry, overwrite=overwrite)
            m = outcome.summary
            (reused if outcome.skipped else done).append(entry.slug)
            if "rank" in m:  # a non-zero data-parallel rank: rank 0 reports
                continue
            ce = "n/a" if m.get("ce_loss_recovered") is None else f"{m['ce_loss_recovered']:.1%}"
            label = entry.slug + (" (cached)" if outcome.skipped else "")
            table.add_row(label, str(m.get("d_sae", "")), f"{m['fvu']:.3f}", f"{m['l0']:.1f}", f"{m['dead_fraction']:.1%}", f"{m['gini']:.2f}", f"{m['decoder_cos_p95']:.2f}", ce)
        if ddp.is_main():
            console.print(table)
    return StageResult("train", tuple(done), tuple(reused))
