"""Harvest activations at one site of one model over a list of documents.

The model runs only up to the hooked block (``forward_to_site``), in ``inference_mode``, over batches of
length-sorted contexts. Rows for special tokens are dropped unless ``keep_special`` is set. Shards are
written by a background thread while the next batches compute, and each finished shard is recorded in
``harvest.json`` — re-running after a kill continues from the first unrecorded shard. Under torchrun the
ranks share the shards (``harvest.ledger``) and the result is file-for-file the single-process harvest.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autointerp import __version__
from autointerp import distributed as ddp
from autointerp.data.corpus import Document, corpus_fingerprint
from autointerp.errors import UserError
from autointerp.io import read_json
from autointerp.models.forward import forward_to_site
from autointerp.models.load import LoadedModel
from autointerp.progress import progress_bar
from autointerp.harvest.contexts import (
    Context,
    SpecialFrame,
    build_contexts,
    build_sequence_contexts,
    length_sorted_batches,
    pad_batch,
    tokenize_documents,
)
from autointerp.harvest.config import LEVELS, POOLS, HarvestConfig  # noqa: F401 - re-exported
from autointerp.harvest.ledger import ShardLedger
from autointerp.harvest.shards import STORAGE_DTYPES, write_shard
from autointerp.rundir.layout import HARVEST_MANIFEST as MANIFEST, ShardPaths
from autointerp.rundir.record import Decision, StageRecord, decide

log = logging.getLogger("autointerp")



@dataclass
class HarvestResult:
    harvest_dir: Path
    n_rows: int
    n_shards: int
    d_model: int
    resumed_shards: int


def _identity_fields(cfg: HarvestConfig) -> dict:
    """The config fields a harvest's content depends on (batch size, device and shard size do not)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("batch_size", "device", "shard_tokens", "device_map")}


def _identity(lm: LoadedModel, cfg: HarvestConfig, fingerprint: str) -> dict:
    """What a harvest depends on; a mismatch with an existing directory means it is not resumable."""
    ident = _identity_fields(cfg)
    ident.update(layer=lm.resolve_layer(cfg.layer), model=lm.spec, corpus=fingerprint)
    return ident


def _check_existing(manifest_path: Path, identity: dict) -> dict | None:
    if not manifest_path.is_file():
        return None
    manifest = read_json(manifest_path)
    old = manifest.get("identity", {})
    # the manifest is the harvest's stage record: settings are the identity less the corpus it read
    settings = lambda ident: {k: v for k, v in ident.items() if k != "corpus"}
    record = StageRecord("harvest", settings(old), {"corpus": old.get("corpus")}, complete=True)
    if decide(record, settings(identity), {"corpus": identity["corpus"]}, overwrite=False, where=manifest_path.parent) is Decision.REDO:
        if ddp.is_main():  # other ranks only read; rank 0 rewrites the manifest before they rely on it
            manifest_path.unlink(missing_ok=True)  # another corpus: the shards are stale
        return None
    return manifest


def _plan_shards(contexts: list[Context], level: str, shard_tokens: int) -> list[list[int]]:
    """Consecutive context indices per shard. Deterministic, so a resumed run cuts shards identically."""
    shards, current, rows = [], [], 0
    for i, ctx in enumerate(contexts):
        current.append(i)
        rows += 1 if level == "sequence" else len(ctx)
        if rows >= shard_tokens:
            shards.append(current)
            current, rows = [], 0
    if current:
        shards.append(current)
    return shards


class _TokenText:
    """Decoded text of single token ids, memoised (a corpus uses a small part of the vocabulary)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, ids: np.ndarray) -> list[str]:
        missing = [int(i) for i in np.unique(ids) if int(i) not in self.cache]
        for i, text in zip(missing, self.tokenizer.batch_decode([[i] for i in missing])):
            self.cache[i] = text
        return [self.cache[int(i)] for i in ids]


def _pool_sequence(ctx: Context, hidden: torch.Tensor, pool: str) -> tuple[torch.Tensor, np.ndarray]:
    """One row for a whole context: the last real (non-special) token, or the mean over real tokens."""
    real = np.flatnonzero(ctx.is_content)
    if pool == "mean":
        return hidden[torch.from_numpy(real)].mean(0, keepdim=True), real[-1:]
    return hidden[int(real[-1])].unsqueeze(0), real[-1:]


def _index_rows(contexts: list[Context], picks: list[tuple[int, np.ndarray]], doc_ids: list[str], token_text: _TokenText) -> pd.DataFrame:
    ctx_ids = np.concatenate([np.full(len(w), c, np.int64) for c, w in picks])
    ctx_pos = np.concatenate([w for _, w in picks]).astype(np.int32)
    gather = lambda attr: np.concatenate([getattr(contexts[c], attr)[w] for c, w in picks])  # noqa: E731
    token_ids = gather("input_ids")
    doc_index = np.concatenate([np.full(len(w), contexts[c].doc_index, np.int64) for c, w in picks])
    frame = pd.DataFrame(
        {
            "doc_id": pd.Categorical.from_codes(doc_index, categories=pd.Index(doc_ids)).astype(str),
            "position": gather("positions"),
            "token_id": token_ids,
            "token": token_text(token_ids),
            "char_start": gather("char_start"),
            "char_end": gather("char_end"),
            "context_id": ctx_ids,
            "ctx_pos": ctx_pos,
        }
    )
    return frame


def _sequence_spans(contexts: list[Context], picks: list[tuple[int, np.ndarray]], frame: pd.DataFrame) -> pd.DataFrame:
    """At sequence level a row stands for the whole (truncated) document: span from its first real char."""
    frame["char_start"] = [int(contexts[c].char_start[contexts[c].is_content][0]) for c, _ in picks]
    frame["n_tokens"] = [int(contexts[c].is_content.sum()) for c, _ in picks]
    return frame


def harvest(lm: LoadedModel, docs: list[Document], harvest_dir: Path, cfg: HarvestConfig, *, overwrite: bool = False, progress: bool = True) -> HarvestResult:
    """Harvest ``cfg.layer``/``cfg.site`` activations of ``lm`` over ``docs`` into ``harvest_dir`` (resumable)."""
    cfg.validate()
    layer = lm.resolve_layer(cfg.layer)
    lm.check_ctx_len(cfg.ctx_len)
    module = lm.hook_module(layer, cfg.site)
    if not docs:
        raise UserError("no documents to harvest; the corpus is empty after filtering")
    frame = SpecialFrame.of(lm.tokenizer)
    if cfg.ctx_len <= frame.size:
        raise UserError(f"--ctx-len {cfg.ctx_len} leaves no room next to {frame.size} special tokens; use a larger --ctx-len")
    manifest_path = harvest_dir / MANIFEST
    identity = _identity(lm, cfg, corpus_fingerprint(docs))
    if overwrite and manifest_path.is_file() and ddp.is_main():
        manifest_path.unlink()
    existing = None if overwrite else _check_existing(manifest_path, identity)
    done = {s["index"]: s for s in (existing or {}).get("shards", []) if ShardPaths.of(harvest_dir, s["index"]).activations.is_file()}

    tokenized = tokenize_documents(lm.tokenizer, [d.text for d in docs])
    build = build_sequence_contexts if cfg.level == "sequence" else build_contexts
    contexts = build(tokenized, cfg.ctx_len, frame)
    if not contexts:
        raise UserError("every document tokenized to zero tokens; check the corpus text field")
    plan = _plan_shards(contexts, cfg.level, cfg.shard_tokens)
    manifest = {
        "version": __version__,
        "identity": identity,
        "model": {"spec": lm.spec, "path": lm.resolved.path, "source": lm.resolved.source, "blocks": lm.blocks_path, "n_layers": lm.n_layers,
                  "n_params": int(sum(t.numel() for t in lm.model.parameters()))},  # the report orders models by it
        "d_model": lm.d_model,
        "hook_name": f"{lm.blocks_path}.{layer}" + (".mlp" if cfg.site == "mlp" else ""),
        "n_documents": len(docs),
        "n_contexts": len(contexts),
        "n_shards": len(plan),
        "special_frame": {"prefix": list(frame.prefix), "suffix": list(frame.suffix)},
        "shards": [],
        "complete": False,
    }
    harvest_dir.mkdir(parents=True, exist_ok=True)
    ledger = ShardLedger(harvest_dir, manifest)
    done, todo = ledger.start(done, len(plan), resume=existing is not None)

    device = lm.model.get_input_embeddings().weight.device  # where inputs go (also under a device map)
    storage = STORAGE_DTYPES[cfg.dtype]
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    doc_ids = [d.doc_id for d in docs]
    token_text = _TokenText(lm.tokenizer)
    meta = {"model": lm.spec, "hook_name": manifest["hook_name"], "level": cfg.level, "layer": str(layer)}
    total_rows = sum(len(contexts[c]) for i in todo for c in plan[i])

    def finish_shard(index: int, acts: torch.Tensor, rows: pd.DataFrame) -> None:
        write_shard(harvest_dir, index, acts, rows, meta)
        ledger.record({"index": index, "rows": int(acts.shape[0]), "contexts": len(plan[index])})

    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1) as writer, progress_bar(f"harvest {lm.spec} L{layer}", total_rows, "tok", enabled=progress and bool(todo) and ddp.is_main()) as advance:
        try:
            for shard_index in todo:
                shard_contexts = plan[shard_index]
                chunks: list[torch.Tensor] = []
                picks: list[tuple[int, np.ndarray]] = []
                for batch in length_sorted_batches([contexts[c] for c in shard_contexts], cfg.batch_size):
                    members = [shard_contexts[b] for b in batch]
                    ids, mask = pad_batch([contexts[c] for c in members], pad_id)
                    hidden = forward_to_site(lm, module, torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                    if cfg.level == "token":  # one gather per batch, row-major = the order of `picks`
                        keep = np.zeros(ids.shape, dtype=bool)
                        for row, c in enumerate(members):
                            where = np.arange(len(contexts[c])) if cfg.keep_special else np.flatnonzero(contexts[c].is_content)
                            keep[row, where] = True
                            picks.append((c, where))
                        chunks.append(hidden[torch.from_numpy(keep).to(device)].to("cpu", storage))
                    else:
                        for row, c in enumerate(members):
                            acts, where = _pool_sequence(contexts[c], hidden[row], cfg.pool)
                            chunks.append(acts.to("cpu", storage))
                            picks.append((c, where))
                    advance(int(mask.sum()))
                rows = _index_rows(contexts, picks, doc_ids, token_text)
                if cfg.level == "sequence":
                    rows = _sequence_spans(contexts, picks, rows)
                if pending is not None:
                    pending.result()
                pending = writer.submit(finish_shard, shard_index, torch.cat(chunks), rows)
            if pending is not None:
                pending.result()
        except BaseException:
            if pending is not None and not pending.done():
                pending.result()  # let the shard being written finish cleanly, then stop
            raise
    manifest = ledger.finish()
    n_rows = sum(s["rows"] for s in manifest["shards"])
    return HarvestResult(harvest_dir, n_rows, len(plan), lm.d_model, resumed_shards=len(done))


def load_manifest(harvest_dir: Path) -> dict:
    path = Path(harvest_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"no harvest found in {harvest_dir}; run `autointerp harvest` first")
    return read_json(path)
