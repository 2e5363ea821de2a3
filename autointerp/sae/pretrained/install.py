"""The train stage for a model with ``sae = ...``: nothing is trained. The pretrained SAE is read, checked
against the harvest (width, layer, site: a disagreement names both sides), saved into the run's SAE directory
in our SAELens layout (so exemplars, explain, score, compare and report read it like a trained one), evaluated
on the harvested tokens, and recorded with its source (metrics.json ``sae_source``; the report names it).
Every check runs before anything is written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from autointerp.config import ModelEntry, RunConfig
from autointerp.data.corpus import load_saved_documents
from autointerp.errors import UserError
from autointerp.harvest.buffer import held_out_split, iter_activation_batches
from autointerp.harvest.harvester import load_manifest
from autointerp.io import write_json
from autointerp.models.load import load_model
from autointerp.rundir.layout import ModelDir, RunDir, ShardPaths
from autointerp.rundir.record import Decision, StageRecord, decide
from autointerp.sae.metrics import compute_metrics
from autointerp.sae.pretrained import load_pretrained
from autointerp.sae.pretrained.common import Pretrained
from autointerp.sae.pretrained.formats import describe, hub_reference, same_reference
from autointerp.sae.saelens import save_sae


def uses_pretrained(entry: ModelEntry) -> bool:
    """A model with ``sae = ...`` (its random-weights control, if any, still gets an SAE trained)."""
    return entry.sae is not None and not entry.random


def check_against_harvest(pre: Pretrained, manifest: dict, entry: ModelEntry) -> None:
    """Width, layer and site of the SAE vs what was harvested for ``entry``; one line each, naming both."""
    ident = manifest["identity"]
    layer, site, width = int(ident["layer"]), ident.get("site", "resid"), int(manifest["d_model"])
    where = f"{entry.slug} layer {layer} ({site})"
    if pre.sae.cfg.d_in != width:
        raise UserError(f"the SAE {pre.path} has d_in = {pre.sae.cfg.d_in} but {where} has width {width}; "
                        "use an SAE trained on this model's activations")
    if pre.hook is not None and pre.layer is None:
        raise UserError(f"the SAE {pre.path} reads hook {pre.hook!r}, which autointerp cannot harvest; "
                        "use an SAE of the residual stream or of an MLP output")
    if pre.layer is not None and pre.layer != layer:
        raise UserError(f"the SAE {pre.path} reads layer {pre.layer} ({pre.hook}) but [[models]] {entry.slug} is "
                        f"harvested at layer {layer}; set layer = {pre.layer} for it (or use the SAE for layer {layer})")
    if pre.site is not None and pre.site != site:
        raise UserError(f"the SAE {pre.path} reads site {pre.site!r} ({pre.hook}) but [[models]] {entry.slug} is "
                        f"harvested at site {site!r}; set site = \"{pre.site}\" for it")


def prepare_pretrained(cfg: RunConfig, entry: ModelEntry, model: ModelDir, *, overwrite: bool = False) -> Pretrained | None:
    """Read and check ``entry``'s SAE against its harvest without writing anything; None when the installed
    one is up to date. the train stage calls it for every model before writing anything."""
    manifest = load_manifest(model.harvest)
    if not manifest.get("complete"):
        raise UserError(f"the harvest in {model.harvest} is incomplete; run `autointerp harvest` again to finish it")
    previous = StageRecord.load(model.sae.record)
    recorded = (previous.settings.get("pretrained_sae") if previous is not None else None)
    if recorded is not None and describe(entry.sae) != recorded and same_reference(recorded, entry.sae):
        entry.sae = recorded  # the same file spelled another way (./sae vs sae): the same SAE
    if decide(previous, *_identity(entry, manifest), overwrite=overwrite, where=model.sae.root) is Decision.REUSE:
        return None
    pre = load_pretrained(entry.sae)
    check_against_harvest(pre, manifest, entry)
    return pre


def _identity(entry: ModelEntry, manifest: dict) -> tuple[dict, dict]:
    """(settings, inputs) of the record: the reference is a setting; the harvest and, for a local path, the
    files' sizes and modification times are inputs, so an SAE replaced in place is installed again."""
    inputs = {"harvest": manifest["identity"]}
    if hub_reference(entry.sae) is None:
        inputs["sae_files"] = _local_files(Path(str(entry.sae)).expanduser())
    return {"pretrained_sae": describe(entry.sae)}, inputs


def _local_files(path: Path) -> dict[str, list[int]]:
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())[:64] if path.is_dir() else []
    return {(f.name if f == path else str(f.relative_to(path))): [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def install_pretrained(cfg: RunConfig, entry: ModelEntry, model: ModelDir, *, overwrite: bool = False,
                       prepared: Pretrained | None = None) -> tuple[Path, bool, dict]:
    """(SAE directory, reused?, summary) for a model whose SAE is given; see the module docstring."""
    files = model.sae
    pre = prepared or prepare_pretrained(cfg, entry, model, overwrite=overwrite)
    if pre is None:
        return files.root, True, StageRecord.load(files.record).summary
    manifest = load_manifest(model.harvest)
    settings, inputs = _identity(entry, manifest)
    source = settings["pretrained_sae"]
    ident = manifest["identity"]
    pre.sae.cfg = dataclasses.replace(pre.sae.cfg, metadata={
        **pre.sae.cfg.metadata, "model_name": entry.model, "hook_name": manifest["hook_name"],
        "hook_layer": ident["layer"], "context_size": ident["ctx_len"], "dataset_path": cfg.corpus.dataset,
        "level": ident["level"], "sae_source": source, "sae_format": pre.format, "sae_hook": pre.hook})
    summary = _evaluate(cfg, entry, pre, manifest, model.harvest)
    summary.update(sae_source=source, sae_format=pre.format, sae_description=pre.describe(source), sae_path=str(pre.path))
    files.checkpoint.unlink(missing_ok=True)
    files.sparsity.unlink(missing_ok=True)  # a trained SAE's density must not describe this one
    save_sae(pre.sae, files.root)
    write_json(files.metrics, summary)
    StageRecord("train", settings, inputs, complete=True, summary=summary).save(files.record)
    return files.root, False, summary


def _evaluate(cfg: RunConfig, entry: ModelEntry, pre: Pretrained, manifest: dict, harvest_dir: Path) -> dict:
    """Held-out metrics as for a trained SAE (the last shard(s); all of them when there is only one)."""
    paths = sorted(ShardPaths.of(harvest_dir, s["index"]).activations for s in manifest["shards"])
    eval_paths = held_out_split(paths, cfg.train.n_eval_shards)[1] if len(paths) > cfg.train.n_eval_shards else paths
    lm = docs = None
    if cfg.train.ce_contexts > 0 and manifest["identity"]["level"] == "token":
        lm = load_model(entry.model, device=cfg.train.device, dtype="float32")
        lm = lm if lm.is_causal else None  # CE loss needs a language-model head
        docs = load_saved_documents(RunDir(cfg.run_path).corpus) if lm is not None else None
    metrics = compute_metrics(pre.sae.cpu().eval(), iter_activation_batches(eval_paths, cfg.train.batch_size, seed=0),
                              lm=lm, docs=docs, harvest_manifest=manifest if lm is not None else None,
                              ce_contexts=cfg.train.ce_contexts)
    return dataclasses.asdict(metrics) | {"d_sae": pre.sae.cfg.d_sae, "train_tokens": 0, "train_steps": 0}
