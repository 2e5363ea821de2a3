"""Stages that read and write the run directory (the CLI and ``autointerp run`` call these).

Layout (see design.md)::

    runs/<name>/config.toml             resolved config
    runs/<name>/corpus/                 documents.parquet, corpus.json, selection.json
    runs/<name>/<model>/harvest/        shard_*.safetensors + shard_*.parquet token index + harvest.json

The corpus is chosen once per run directory (the first harvested model's tokenizer counts the token
budget) and every model then harvests exactly those documents, so cross-model comparison sees the
same text.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from autointerp.config import ModelEntry, RunConfig, to_toml
from autointerp.data.corpus import CorpusConfig, Document, collect_documents, load_saved_documents, save_documents
from autointerp.errors import UserError
from autointerp.io import atomic_path, file_sha256, read_json, write_json
from autointerp.models.load import load_model
from autointerp.training.harvest import HarvestResult, harvest

log = logging.getLogger("autointerp")

SELECTION = "selection.json"


def corpus_dir(run_dir: Path) -> Path:
    return run_dir / "corpus"


def harvest_dir(run_dir: Path, entry: ModelEntry) -> Path:
    return run_dir / entry.slug / "harvest"


VERSION_FILE = "autointerp.json"


def save_resolved_config(cfg: RunConfig) -> None:
    """Save the resolved config (provenance for later stages), first saying how the run directory differs:
    other settings than last time, or outputs written by another autointerp version. Each stage then
    decides from its own recorded inputs whether to reuse, redo or refuse (naming what differs)."""
    from autointerp import __version__

    path = cfg.run_path / "config.toml"
    for line in run_dir_differences(cfg, settings=False):  # `autointerp run` also reports setting changes
        log.warning("%s", line)
    with atomic_path(path) as tmp:
        tmp.write_text(to_toml(cfg), encoding="utf-8")
    write_json(cfg.run_path / VERSION_FILE, {"version": __version__})


def run_dir_differences(cfg: RunConfig, settings: bool = True) -> list[str]:
    """Human-readable differences between ``cfg`` (and this code's version) and what the run directory holds.

    Single-stage commands pass ``settings=False``: a stage that cannot reuse its outputs already names the
    settings that differ in its own one-line error."""
    import tomllib

    from autointerp import __version__

    out = []
    path = cfg.run_path / "config.toml"
    has_outputs = any(cfg.run_path.glob("*/harvest/harvest.json"))  # a config saved by an attempt that failed early is no history
    if settings and path.is_file() and has_outputs:
        try:
            old = _flatten(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError):
            old = None
        if old is not None:
            new = _flatten(tomllib.loads(to_toml(cfg)))
            changed = [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            if changed:
                shown = "; ".join(changed[:8]) + (f"; and {len(changed) - 8} more" if len(changed) > 8 else "")
                out.append(f"{cfg.run_path} was last run with other settings ({shown}); stages whose inputs changed redo their work or say what to do")
    version_path = cfg.run_path / VERSION_FILE
    if version_path.is_file():
        old_version = read_json(version_path).get("version")
        if old_version != __version__:
            out.append(f"{cfg.run_path} was written by autointerp {old_version}; this is {__version__}: outputs whose recorded settings still match are reused (pass --overwrite to redo a stage with this version)")
    return out


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "prices" and key != "domains":
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                flat.update(_flatten(item, f"{name}[{i}]."))
        else:
            flat[name] = value
    return flat


def prepare_corpus(run_dir: Path, cfg: CorpusConfig, max_tokens: int, tokenizer, counted_with: str, overwrite: bool = False) -> list[Document]:
    """Documents for this run: loaded if already chosen with the same settings, else collected and saved."""
    folder = corpus_dir(run_dir)
    wanted = {"corpus": dataclasses.asdict(cfg), "max_tokens": max_tokens}
    if (folder / SELECTION).is_file():
        saved = read_json(folder / SELECTION)
        old = {"corpus": saved.get("corpus"), "max_tokens": saved.get("max_tokens")}
        if old != wanted and not overwrite:
            diffs = [f"{k}: {old['corpus'].get(k)!r} -> {v!r}" for k, v in wanted["corpus"].items() if (old["corpus"] or {}).get(k) != v]
            if old["max_tokens"] != max_tokens:
                diffs.append(f"max_tokens: {old['max_tokens']} -> {max_tokens}")
            raise UserError(f"{run_dir} already holds a corpus chosen with other settings ({'; '.join(diffs)}); use another --run-dir or --overwrite")
        if old == wanted:
            return load_saved_documents(folder)

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    docs, stats = collect_documents(cfg, count_tokens=count_tokens, max_tokens=max_tokens)
    save_documents(folder, docs, stats, cfg)
    write_json(folder / SELECTION, wanted | {"counted_with": counted_with, "n_docs": len(docs), "stats": dataclasses.asdict(stats)})
    return docs


def harvest_stage(cfg: RunConfig, entry: ModelEntry, *, overwrite: bool = False, progress: bool = True) -> HarvestResult:
    """Load one model, make sure the run's corpus exists, and harvest its activations (resumable)."""
    run_dir = cfg.run_path
    hcfg = cfg.harvest_for(entry)
    hcfg.validate()
    if not overwrite:
        done = completed_harvest(cfg, entry)
        if done is not None:
            return done
    lm = load_model(entry.model, device=hcfg.device, dtype=hcfg.compute_dtype)
    lm.resolve_layer(hcfg.layer)  # fail on a bad layer before any corpus work
    lm.check_ctx_len(hcfg.ctx_len)
    docs = prepare_corpus(run_dir, cfg.corpus, cfg.max_tokens, lm.tokenizer, entry.model, overwrite=overwrite)
    return harvest(lm, docs, harvest_dir(run_dir, entry), hcfg, overwrite=overwrite, progress=progress)


def completed_harvest(cfg: RunConfig, entry: ModelEntry) -> HarvestResult | None:
    """The finished harvest for ``entry`` when nothing it depends on changed, without loading the model.

    Mirrors ``harvest``'s identity check using only saved files (config, corpus selection, manifest), so a
    re-run of ``autointerp run`` skips model loading entirely; anything uncertain returns None and the
    normal path decides (and explains any mismatch).
    """
    from autointerp.training.harvest import _identity_fields, corpus_fingerprint, load_manifest

    hdir = harvest_dir(cfg.run_path, entry)
    selection = corpus_dir(cfg.run_path) / SELECTION
    if not (hdir / "harvest.json").is_file() or not selection.is_file():
        return None
    manifest = load_manifest(hdir)
    saved = read_json(selection)
    if not manifest.get("complete") or saved.get("corpus") != dataclasses.asdict(cfg.corpus) or saved.get("max_tokens") != cfg.max_tokens:
        return None
    hcfg = cfg.harvest_for(entry)
    n_layers = manifest.get("model", {}).get("n_layers")
    layer = hcfg.layer if hcfg.layer >= 0 or n_layers is None else n_layers + hcfg.layer
    expected = _identity_fields(hcfg) | {"layer": layer, "model": entry.model}
    old = manifest.get("identity", {})
    if any(old.get(k) != v for k, v in expected.items()):
        return None
    if old.get("corpus") != corpus_fingerprint(load_saved_documents(corpus_dir(cfg.run_path))):
        return None
    shards = manifest.get("shards", [])
    return HarvestResult(hdir, sum(s["rows"] for s in shards), len(shards), int(manifest["d_model"]), resumed_shards=len(shards))


def sae_dir(run_dir: Path, entry: ModelEntry) -> Path:
    return run_dir / entry.slug / "sae"


@dataclass
class TrainOutcome:
    sae_dir: Path
    skipped: bool  # inputs and config unchanged since a completed run
    summary: dict


def _train_identity(cfg: RunConfig, manifest: dict) -> dict:
    train = {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in ("device", "checkpoint_every")}
    return {"sae": dataclasses.asdict(cfg.sae), "train": train, "harvest": manifest["identity"]}


def train_stage(cfg: RunConfig, entry: ModelEntry, *, overwrite: bool = False, progress: bool = True) -> TrainOutcome:
    """Train an SAE on a model's harvested shards (last shard(s) held out), save it in the SAELens
    layout with metrics.json; resumes from checkpoints, and is a no-op when nothing changed."""
    from autointerp.training.buffer import held_out_split, iter_activation_batches
    from autointerp.training.harvest import load_manifest
    from autointerp.training.sae import SAEConfig, create_sae
    from autointerp.training.shards import ShardPaths
    from autointerp.training.trainer import TrainConfig, train_sae

    from autointerp.training import distributed as ddp

    if cfg.sae.architecture == "jumprelu":
        raise UserError("architecture 'jumprelu' is inference-only (for SAEs loaded from SAELens); train topk, batchtopk or relu")
    ddp.init_from_env()  # no-op unless launched by torchrun
    hdir = harvest_dir(cfg.run_path, entry)
    manifest = load_manifest(hdir)
    if not manifest.get("complete"):
        raise UserError(f"the harvest in {hdir} is incomplete; run `autointerp harvest` again to finish it, then train")
    out = sae_dir(cfg.run_path, entry)
    identity = _train_identity(cfg, manifest)
    record = out / "train.json"
    if record.is_file():
        previous = read_json(record)
        if previous.get("identity") == identity and previous.get("complete") and not overwrite:
            return TrainOutcome(out, True, previous["summary"])
        if previous.get("identity") != identity and not overwrite:
            changed = [k for k in identity if previous.get("identity", {}).get(k) != identity[k]]
            raise UserError(f"{out} holds an SAE trained with different {', '.join(changed)} settings; pass --overwrite to retrain or use another --run-dir")
    if overwrite:
        (out / "checkpoints" / "checkpoint.safetensors").unlink(missing_ok=True)
    shards = [ShardPaths.of(hdir, s["index"]).activations for s in manifest["shards"]]
    train_paths, eval_paths = held_out_split(shards, cfg.train.n_eval_shards)
    rows = {s["index"]: s["rows"] for s in manifest["shards"]}
    train_rows = sum(rows[int(p.stem.split("_")[1])] for p in train_paths)
    d_model = int(manifest["d_model"])
    sae_cfg = SAEConfig(
        d_in=d_model,
        d_sae=cfg.sae.d_sae or cfg.sae.expansion_factor * d_model,
        architecture=cfg.sae.architecture,
        k=cfg.sae.k,
        l1_coefficient=cfg.sae.l1_coefficient,
        normalize_activations=cfg.sae.normalize_activations,
        metadata={
            "model_name": entry.model,
            "hook_name": manifest["hook_name"],
            "hook_layer": manifest["identity"]["layer"],
            "context_size": manifest["identity"]["ctx_len"],
            "dataset_path": cfg.corpus.dataset,
            "level": manifest["identity"]["level"],
        },
    )
    t = cfg.train
    total = t.total_tokens or int(t.epochs * train_rows)
    tcfg = TrainConfig(
        total_tokens=max(t.batch_size, total - total % t.batch_size),
        batch_size=t.batch_size,
        lr=t.lr,
        warmup_steps=t.warmup_steps,
        auxk_alpha=t.auxk_alpha,
        dead_tokens_threshold=t.dead_tokens_threshold,
        b_dec_init=t.b_dec_init,
        checkpoint_every=t.checkpoint_every,
        seed=t.seed,
        device=t.device,
    )
    sae = create_sae(sae_cfg, seed=t.seed)
    batches = iter_activation_batches(train_paths, t.batch_size, buffer_rows=min(262_144, 4 * train_rows), seed=t.seed, loop=True)
    result = train_sae(sae, batches, tcfg, checkpoint_dir=out / "checkpoints", progress=progress)
    if not ddp.is_main():  # every rank holds the same SAE; rank 0 writes it
        ddp.barrier()
        return TrainOutcome(out, False, {"rank": ddp.rank(), "train_tokens": result.tokens})
    sae.save(out, result.log_feature_density())
    summary = _evaluate_sae(cfg, entry, sae, eval_paths, result, manifest)
    write_json(out / "metrics.json", summary)
    write_json(record, {"identity": identity, "complete": result.completed, "summary": summary, "world_size": ddp.world_size()})
    ddp.barrier()
    return TrainOutcome(out, False, summary)


def _evaluate_sae(cfg: RunConfig, entry: ModelEntry, sae, eval_paths: list[Path], result, manifest: dict) -> dict:
    """Metrics on the held-out shard(s); for causal LMs also CE loss with the reconstruction spliced in."""
    from autointerp.training.buffer import iter_activation_batches
    from autointerp.training.metrics import compute_metrics

    lm = docs = None
    if cfg.train.ce_contexts > 0 and manifest["identity"]["level"] == "token":
        lm = load_model(entry.model, device=cfg.train.device, dtype="float32")
        lm = lm if lm.is_causal else None  # CE loss needs a language-model head
        docs = load_saved_documents(corpus_dir(cfg.run_path)) if lm is not None else None
    eval_batches = iter_activation_batches(eval_paths, cfg.train.batch_size, seed=0)
    metrics = compute_metrics(
        sae.cpu().eval(), eval_batches, train_result=result, lm=lm, docs=docs,
        harvest_manifest=manifest if lm is not None else None, ce_contexts=cfg.train.ce_contexts,
    )
    summary = dataclasses.asdict(metrics)
    summary.update(d_sae=sae.cfg.d_sae, train_tokens=result.tokens, train_steps=result.steps, train_fvu=result.fvu)
    return summary


@dataclass
class ExemplarOutcome:
    out_dir: Path
    skipped: bool
    counts: dict


def exemplars_stage(cfg: RunConfig, entry: ModelEntry, *, overwrite: bool = False, progress: bool = True) -> ExemplarOutcome:
    """Encode the harvest with the trained SAE and mine per-feature exemplars (no-op when unchanged)."""
    from autointerp.training.exemplars import mine_exemplars
    from autointerp.training.sae import WEIGHTS_FILE
    from autointerp.training.sae_io import load_sae

    sdir = sae_dir(cfg.run_path, entry)
    if not (sdir / WEIGHTS_FILE).is_file():
        raise UserError(f"no trained SAE in {sdir}; run `autointerp train` first")
    out = cfg.run_path / entry.slug
    identity = {"exemplars": dataclasses.asdict(cfg.exemplars), "sae_sha256": file_sha256(sdir / WEIGHTS_FILE)}
    record = out / "exemplars_stage.json"
    if not overwrite and record.is_file() and read_json(record).get("identity") == identity and (out / "exemplars.parquet").is_file():
        return ExemplarOutcome(out, True, read_json(record)["counts"])
    sae = load_sae(sdir)
    docs = load_saved_documents(corpus_dir(cfg.run_path))
    result = mine_exemplars(sae, harvest_dir(cfg.run_path, entry), docs, out, cfg.exemplars, progress=progress)
    counts = {"n_rows": result.n_rows, "n_features": result.n_features, "n_dead": result.n_dead, "n_windows": result.n_windows, "level": result.level}
    write_json(record, {"identity": identity, "counts": counts})
    return ExemplarOutcome(out, False, counts)
