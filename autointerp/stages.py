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
from pathlib import Path

from autointerp.config import ModelEntry, RunConfig, to_toml
from autointerp.data.corpus import CorpusConfig, Document, collect_documents, load_saved_documents, save_documents
from autointerp.errors import UserError
from autointerp.io import atomic_path, read_json, write_json
from autointerp.models.load import load_model
from autointerp.training.harvest import HarvestResult, harvest

log = logging.getLogger("autointerp")

SELECTION = "selection.json"


def corpus_dir(run_dir: Path) -> Path:
    return run_dir / "corpus"


def harvest_dir(run_dir: Path, entry: ModelEntry) -> Path:
    return run_dir / entry.slug / "harvest"


def save_resolved_config(cfg: RunConfig) -> None:
    with atomic_path(cfg.run_path / "config.toml") as tmp:
        tmp.write_text(to_toml(cfg), encoding="utf-8")


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
    lm = load_model(entry.model, device=hcfg.device, dtype=hcfg.compute_dtype)
    lm.resolve_layer(hcfg.layer)  # fail on a bad layer before any corpus work
    lm.check_ctx_len(hcfg.ctx_len)
    docs = prepare_corpus(run_dir, cfg.corpus, cfg.max_tokens, lm.tokenizer, entry.model, overwrite=overwrite)
    return harvest(lm, docs, harvest_dir(run_dir, entry), hcfg, overwrite=overwrite, progress=progress)
