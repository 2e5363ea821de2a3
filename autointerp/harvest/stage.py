"""The harvest stage: choose the run's corpus once, then harvest each model's activations (resumable).

The corpus is chosen once per run directory (the first harvested model's tokenizer counts the token
budget) and every model then harvests exactly those documents, so cross-model comparison sees the
same text. The harvest manifest (``harvest.json``) is the stage's record: a finished harvest whose
settings and corpus still match is recognised from its files without loading the model.

Under ``torchrun --nproc-per-node N -m autointerp harvest`` every rank loads the model (on its own GPU),
rank 0 chooses the corpus while the others wait, and the ranks share the shards (``harvest.ledger``).
"""

from __future__ import annotations

import dataclasses

from autointerp import distributed as ddp

from rich.table import Table

from autointerp.config import ModelEntry, RunConfig
from autointerp.data.corpus import CorpusConfig, Document, collect_documents, corpus_settings, corpus_fingerprint, load_saved_documents, save_documents
from autointerp.errors import UserError
from autointerp.harvest.harvester import HarvestResult, _identity_fields, harvest, load_manifest
from autointerp.io import read_json, write_json
from autointerp.models.load import load_model
from autointerp.progress import console
from autointerp.rundir.layout import ModelDir, RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import StageResult
from autointerp.rundir.sae_source import check_run_saes


def prepare_corpus(run: RunDir, cfg: CorpusConfig, max_tokens: int, tokenizer, counted_with: str, overwrite: bool = False) -> list[Document]:
    """Documents for this run: loaded if already chosen with the same settings, else collected and saved."""
    wanted = {"corpus": dataclasses.asdict(cfg), "max_tokens": max_tokens}
    if run.selection.is_file():
        saved = read_json(run.selection)
        old = {"corpus": corpus_settings(saved.get("corpus")), "max_tokens": saved.get("max_tokens")}
        if old != wanted and not overwrite:
            diffs = [f"{k}: {old['corpus'].get(k)!r} -> {v!r}" for k, v in wanted["corpus"].items() if (old["corpus"] or {}).get(k) != v]
            if old["max_tokens"] != max_tokens:
                diffs.append(f"max_tokens: {old['max_tokens']} -> {max_tokens}")
            raise UserError(f"{run.root} already holds a corpus chosen with other settings ({'; '.join(diffs)}); use another --run-dir or --overwrite")
        if old == wanted:
            return load_saved_documents(run.corpus)

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    docs, stats = collect_documents(cfg, count_tokens=count_tokens, max_tokens=max_tokens)
    save_documents(run.corpus, docs, stats, cfg)
    write_json(run.selection, wanted | {"counted_with": counted_with, "n_docs": len(docs), "stats": dataclasses.asdict(stats)})
    return docs


def harvest_stage(cfg: RunConfig, entry: ModelEntry, *, overwrite: bool = False, progress: bool = True,
                  model: ModelDir | None = None) -> HarvestResult:
    """Load one model, make sure the run's corpus exists, and harvest its activations (resumable) into
    ``model`` (default: the entry's directory in the run; the controls put theirs elsewhere)."""
    run = RunDir(cfg.run_path)
    model = model or run.model(entry.slug)
    hcfg = cfg.harvest_for(entry)
    hcfg.validate()
    ddp.init_from_env()  # no-op unless launched by torchrun
    if hcfg.device_map and ddp.world_size() > 1:
        raise UserError("[harvest] device_map spreads one model over every GPU, so it cannot be combined with torchrun ranks; run it in one process")
    if not overwrite:
        done = completed_harvest(cfg, entry, model)
        if done is not None:
            return done
    lm = load_model(entry.model, device=ddp.device_for_rank(hcfg.device), dtype=hcfg.compute_dtype, device_map=hcfg.device_map or None, random_init=entry.init_seed if entry.random else None)
    lm.resolve_layer(hcfg.layer)  # fail on a bad layer before any corpus work
    lm.check_ctx_len(hcfg.ctx_len)
    docs = None
    if ddp.is_main():  # rank 0 chooses (and saves) the corpus; the other ranks then read it
        docs = prepare_corpus(run, cfg.corpus, cfg.max_tokens, lm.tokenizer, entry.model, overwrite=overwrite)
    ddp.barrier()
    if docs is None:
        docs = prepare_corpus(run, cfg.corpus, cfg.max_tokens, lm.tokenizer, entry.model)
    return harvest(lm, docs, model.harvest, hcfg, overwrite=overwrite, progress=progress)


def completed_harvest(cfg: RunConfig, entry: ModelEntry, model: ModelDir | None = None) -> HarvestResult | None:
    """The finished harvest for ``entry`` when nothing it depends on changed, without loading the model.

    Mirrors ``harvest``'s identity check using only saved files (config, corpus selection, manifest), so a
    re-run of ``autointerp run`` skips model loading entirely; anything uncertain returns None and the
    normal path decides (and explains any mismatch).
    """
    run = RunDir(cfg.run_path)
    model = model or run.model(entry.slug)
    if not model.manifest.is_file() or not run.selection.is_file():
        return None
    manifest = load_manifest(model.harvest)
    saved = read_json(run.selection)
    if not manifest.get("complete") or corpus_settings(saved.get("corpus")) != dataclasses.asdict(cfg.corpus) or saved.get("max_tokens") != cfg.max_tokens:
        return None
    hcfg = cfg.harvest_for(entry)
    n_layers = manifest.get("model", {}).get("n_layers")
    layer = hcfg.layer if hcfg.layer >= 0 or n_layers is None else n_layers + hcfg.layer
    expected = _identity_fields(hcfg) | {"layer": layer, "model": entry.identity}
    old = manifest.get("identity", {})
    if any(old.get(k) != v for k, v in expected.items()):
        return None
    if old.get("corpus") != corpus_fingerprint(load_saved_documents(run.corpus)):
        return None
    shards = manifest.get("shards", [])
    return HarvestResult(model.harvest, sum(s["rows"] for s in shards), len(shards), int(manifest["d_model"]), resumed_shards=len(shards))


def _status(result: HarvestResult) -> str:
    if result.resumed_shards == result.n_shards:
        return "cached"
    return f"resumed after {result.resumed_shards} shards" if result.resumed_shards else "harvested"


def run(cfg: RunConfig, *, overwrite: bool = False, models: list[ModelEntry] | None = None) -> StageResult:
    """Harvest ``models`` (default: every configured model) and print one table (the stage contract:
    ``autointerp.stages``; the run's config, saved by the caller, lists all of ``cfg.models``)."""
    models = cfg.models if models is None else models
    done, reused = [], []
    with run_lock(cfg.run_path, create=True):
        check_run_saes(cfg.run_path, models, "harvest", overwrite=overwrite)  # --sae / sae = ... vs the run's SAE
        table = Table(title=f"harvest: {cfg.run_path}")
        for col in ("model", "layer", "level", "rows", "d_model", "shards", "status"):
            table.add_column(col)
        for entry in models:
            result = harvest_stage(cfg, entry, overwrite=overwrite)
            (reused if _status(result) == "cached" else done).append(entry.slug)
            hcfg = cfg.harvest_for(entry)
            table.add_row(entry.slug, str(hcfg.layer), hcfg.level, f"{result.n_rows:,}", str(result.d_model), str(result.n_shards), _status(result))
        if ddp.is_main():
            console.print(table)
    return StageResult("harvest", tuple(done), tuple(reused))
