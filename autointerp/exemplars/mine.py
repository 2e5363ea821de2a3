"""Mine exemplars: per-feature statistics and top / quantile / random windows with per-token activations.

Two passes over a harvest directory, both streaming one shard at a time:

1. **Scan.** Encode every row in chunks of ``chunk_rows``. Latents stay sparse: each chunk becomes flat
   records (feature, act, row) for the non-zero entries of ``(top_acts, top_indices)``; a dense
   [tokens x d_sae] matrix is never built. Records are reduced to one per (feature, context) — the
   context's max, which identifies a window — and merged into per-feature running states with one
   ``lexsort`` each (see ``topk_tracker``): the ``n_top`` highest windows, a uniform bottom-k
   reservoir of ``reservoir`` activating windows (for quantile sampling), and, for a random pool of
   contexts, which features ever fired there (for negatives). Feature statistics are bincounts.
2. **Gather.** For each chosen window, take the token rows ``window_before`` before to
   ``window_after`` after its max token (clipped to the context), re-encode those rows and keep the
   window feature's activation per token, plus tokens and character provenance.

Selection, per feature with N activating contexts (definitions also written to exemplars.json):
- top: the highest-max windows, rank 0 = highest; at most ``n_top`` and, when N is small, only as many
  as leave min(N // 2, n_test) contexts for the held-out set (n_test = round(test_fraction * Q),
  Q = n_quantiles * per_quantile). Always split "train".
- quantile: the reservoir minus the top windows, sorted by max act and cut into ``n_quantiles``
  equal-count bins (rank_or_quantile 0 = lowest activations); ``per_quantile`` drawn at random per bin.
  round(test_fraction * drawn) of them are held out as "test", stratified across bins; the rest "train".
- random: up to ``n_random`` contexts from the pool where the feature never fired (dense features may get
  fewer); window centred on a random token; max_act 0; alternate ordinals train / test.
Every (feature, context_id) occurs at most once, so train and test never share a window's context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from autointerp.errors import UserError
from autointerp.io import atomic_path, write_json
from autointerp.progress import progress_bar
from autointerp.harvest.harvester import load_manifest
from autointerp.harvest.shards import read_shard
from autointerp.exemplars.config import ExemplarConfig
from autointerp.rundir.layout import ModelDir
from autointerp.exemplars.topk_tracker import (
    Columns,
    GroupedTopN,
    concat,
    max_per_pair,
    select_windows,
    take,
)

SEQUENCE_TEXT_CHARS = 2000  # sequence level: a window is the whole document, cut to this many chars
KINDS = ("top", "quantile", "random")
SPLITS = ("train", "test")
_INDEX_COLUMNS = ("doc_id", "token_id", "token", "char_start", "char_end", "context_id")

EXEMPLAR_SCHEMA = pa.schema([
    ("feature", pa.int32()), ("split", pa.string()), ("kind", pa.string()), ("rank_or_quantile", pa.int32()),
    ("context_id", pa.int64()), ("doc_id", pa.string()), ("max_act", pa.float32()), ("max_index", pa.int32()),
    ("tokens", pa.list_(pa.string())), ("token_ids", pa.list_(pa.int64())), ("acts", pa.list_(pa.float32())),
    ("char_start", pa.list_(pa.int64())), ("char_end", pa.list_(pa.int64())), ("text", pa.string()),
])

DEFINITIONS = {
    "window": "one context region: tokens window_before before to window_after after the feature's max token in that context, clipped to the context",
    "n_active_tokens": "rows (tokens; documents at sequence level) where the feature's SAE activation > 0",
    "density": "n_active_tokens / total rows",
    "mean_act": "mean activation over firing rows (0 for dead features)",
    "n_contexts_active": "contexts with at least one firing row",
    "dead": "never fired on this harvest",
    "top": "highest-max windows, rank 0 highest, split train; capped so small features keep min(N//2, n_test) contexts for test",
    "quantile": "reservoir sample of activating windows minus top windows, equal-count bins by max act (0 = lowest), per_quantile per bin; round(test_fraction * drawn) held out as test, stratified over bins",
    "random": "contexts from a random pool where the feature never fired; acts all 0; max_index = random centre; alternate train/test",
    "disjoint": "each (feature, context_id) appears at most once",
}


@dataclass
class ExemplarResult:
    out_dir: Path
    exemplars_path: Path
    stats_path: Path
    level: str
    n_rows: int  # harvest rows scanned (tokens, or documents at sequence level)
    n_contexts: int
    n_features: int
    n_dead: int
    n_windows: int


# ------------------------------------------------------------------------------------------- harvest
def _open_harvest(harvest_dir: Path, d_in: int) -> tuple[dict, list[dict]]:
    if not Path(harvest_dir).is_dir():
        raise UserError(f"no harvest found in {harvest_dir}; run `autointerp harvest` first")
    manifest = load_manifest(harvest_dir)
    shards = sorted(manifest.get("shards", []), key=lambda s: s["index"])
    if not manifest.get("complete") or not shards:
        raise UserError(f"the harvest in {harvest_dir} is incomplete ({len(shards)} shard(s) done); run `autointerp harvest` first to finish it")
    d_model = manifest.get("d_model")
    if d_model is not None and int(d_model) != d_in:
        raise UserError(f"SAE d_in={d_in} does not match the harvest's d_model={d_model} in {harvest_dir}; use the SAE trained on this model and layer")
    return manifest, shards


def _read(harvest_dir: Path, shard: dict, d_in: int) -> tuple[torch.Tensor, pd.DataFrame]:
    try:
        acts, index = read_shard(harvest_dir, shard["index"])
    except Exception as e:  # missing / truncated file: safetensors, arrow and OS errors differ
        raise UserError(f"shard {shard['index']} in {harvest_dir} is missing or corrupt ({e}); re-run `autointerp harvest --overwrite`") from e
    missing = [c for c in _INDEX_COLUMNS if c not in index.columns]
    if missing or acts.ndim != 2 or acts.shape[0] != len(index):
        raise UserError(f"shard {shard['index']} in {harvest_dir} is malformed (missing columns {missing} or {acts.shape[0]} activation rows vs {len(index)} index rows); re-run `autointerp harvest --overwrite`")
    if acts.shape[1] != d_in:
        raise UserError(f"SAE d_in={d_in} does not match the harvest's d_model={acts.shape[1]} in {harvest_dir}; use the SAE trained on this model and layer")
    return acts, index


def _encode(sae, x: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Sparse latents of one chunk as numpy (acts [n, k] float32, indices [n, k])."""
    with torch.inference_mode():
        out = sae.encode(x.to(device=device, dtype=torch.float32))
    return out.top_acts.float().cpu().numpy(), out.top_indices.cpu().numpy()


def _hits(sae, x: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (feature, act, row-in-chunk) records of the chunk's positive latents."""
    acts, idx = _encode(sae, x, device)
    rows, cols = np.nonzero(acts > 0)
    return idx[rows, cols].astype(np.int32), acts[rows, cols], rows.astype(np.int64)


# ------------------------------------------------------------------------------------------ pass 1
@dataclass
class _Scan:
    n_rows: int
    shard_offsets: np.ndarray  # global row of each shard's first row (+ total at the end)
    ctx_id: np.ndarray  # sorted context ids
    ctx_start: np.ndarray  # global first row
    ctx_len: np.ndarray
    n_active: np.ndarray
    sum_act: np.ndarray
    max_act: np.ndarray
    n_ctx: np.ndarray
    top: Columns  # feature, act, row, context: sorted by feature, act desc
    reservoir: Columns  # feature, act, row, context, key
    pool_ctx: np.ndarray
    fired: np.ndarray  # [d_sae, len(pool_ctx)] bool


def _scan(sae, harvest_dir: Path, shards: list[dict], cfg: ExemplarConfig, rng: np.random.Generator, device, advance) -> _Scan:
    d_sae, d_in = sae.cfg.d_sae, sae.cfg.d_in
    n_active = np.zeros(d_sae, np.int64)
    sum_act = np.zeros(d_sae, np.float64)
    max_act = np.zeros(d_sae, np.float32)
    n_ctx = np.zeros(d_sae, np.int64)
    top = GroupedTopN(cfg.n_top, "act", largest=True, tiebreak="context")
    reservoir = GroupedTopN(cfg.reservoir, "key", largest=False)
    pool_ctx, pool_key = np.zeros(0, np.int64), np.zeros(0, np.float64)
    fired = np.zeros((d_sae, 0), dtype=bool)
    ctx_parts, offsets, offset = [], [0], 0
    for shard in shards:
        acts, index = _read(harvest_dir, shard, d_in)
        n = acts.shape[0]
        ctx_col = index["context_id"].to_numpy(np.int64)
        uniq, first, counts = np.unique(ctx_col, return_index=True, return_counts=True)
        runs = 1 + int(np.count_nonzero(ctx_col[1:] != ctx_col[:-1])) if n else 0
        if runs != len(uniq):
            raise UserError(f"shard {shard['index']} in {harvest_dir} has non-contiguous context rows; re-run `autointerp harvest --overwrite`")
        ctx_parts.append((uniq, first.astype(np.int64) + offset, counts.astype(np.int64)))

        parts = []
        for start in range(0, n, cfg.chunk_rows):
            f, v, r = _hits(sae, acts[start : start + cfg.chunk_rows], device)
            r += start
            n_active += np.bincount(f, minlength=d_sae)
            sum_act += np.bincount(f, weights=v, minlength=d_sae)
            keep = max_per_pair(f, ctx_col[r], v)  # shrink early: one record per (feature, context)
            parts.append({"feature": f[keep], "act": v[keep], "row": r[keep]})
        hits = concat(parts)
        if hits and len(hits["feature"]):
            hits["context"] = ctx_col[hits["row"]]
            hits = take(hits, max_per_pair(hits["feature"], hits["context"], hits["act"]))  # contexts split by chunks
            hits["row"] = hits["row"] + offset
            n_ctx += np.bincount(hits["feature"], minlength=d_sae)
            np.maximum.at(max_act, hits["feature"], hits["act"])
            top.update(hits)
            reservoir.update({**hits, "key": rng.random(len(hits["feature"])).astype(np.float32)})

        # Bottom-k random pool of contexts; a context's firing features are known once its shard is read.
        new_key = rng.random(len(uniq))
        all_key = np.concatenate([pool_key, new_key])
        keep = np.arange(len(all_key)) if len(all_key) <= cfg.negative_pool else np.sort(np.argpartition(all_key, cfg.negative_pool - 1)[: cfg.negative_pool])
        old_keep, new_keep = keep[keep < len(pool_key)], keep[keep >= len(pool_key)] - len(pool_key)
        fired_new = np.zeros((d_sae, len(new_keep)), dtype=bool)
        if hits and len(hits["feature"]) and len(new_keep):
            col_of = np.full(len(uniq), -1, np.int64)
            col_of[new_keep] = np.arange(len(new_keep))
            col = col_of[np.searchsorted(uniq, hits["context"])]
            m = col >= 0
            fired_new[hits["feature"][m], col[m]] = True
        fired = np.concatenate([fired[:, old_keep], fired_new], axis=1)
        pool_ctx = np.concatenate([pool_ctx[old_keep], uniq[new_keep]])
        pool_key = all_key[keep]
        offset += n
        offsets.append(offset)
        advance(1)

    ctx_id = np.concatenate([p[0] for p in ctx_parts])
    order = np.argsort(ctx_id, kind="stable")
    ctx_id = ctx_id[order]
    if len(ctx_id) > 1 and (ctx_id[1:] == ctx_id[:-1]).any():
        raise UserError(f"a context spans several shards in {harvest_dir}; the harvest is malformed - re-run `autointerp harvest --overwrite`")
    return _Scan(offset, np.asarray(offsets, np.int64), ctx_id, np.concatenate([p[1] for p in ctx_parts])[order],
                 np.concatenate([p[2] for p in ctx_parts])[order], n_active, sum_act, max_act, n_ctx,
                 top.cols, reservoir.cols, pool_ctx, fired)


# ------------------------------------------------------------------------------------------ pass 2
def _list_array(values: np.ndarray | list, offsets: np.ndarray, typ: pa.DataType) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, typ))


def _gather_shard(sae, acts: torch.Tensor, index: pd.DataFrame, w: Columns, lo: np.ndarray, hi: np.ndarray,
                  docs: Mapping[str, str] | None, sequence: bool, chunk_rows: int, device) -> pa.Table:
    """Tokens, provenance and the window feature's per-token activations of windows in one shard."""
    lengths = hi - lo
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    token_rows = np.repeat(lo, lengths) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths))
    uniq, inv = np.unique(token_rows, return_inverse=True)
    # Re-encode just the rows the windows need, kept sparse as sorted keys (row * d_sae + feature) -> act;
    # each window token then looks up its own feature with one searchsorted.
    d_sae = sae.cfg.d_sae
    keys, vals = [], []
    for s in range(0, len(uniq), chunk_rows):
        a, i = _encode(sae, acts[torch.from_numpy(uniq[s : s + chunk_rows])], device)
        r, c = np.nonzero(a > 0)
        keys.append((r + s).astype(np.int64) * d_sae + i[r, c])
        vals.append(a[r, c])
    keys, vals = np.concatenate(keys), np.concatenate(vals)
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    query = inv.astype(np.int64) * d_sae + np.repeat(w["feature"], lengths)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    token_acts = np.where(keys[pos] == query, vals[pos], 0.0).astype(np.float32) if len(keys) else np.zeros(len(query), np.float32)

    doc_col = index["doc_id"].astype(str).to_numpy(object)
    cs_col, ce_col = index["char_start"].to_numpy(np.int64), index["char_end"].to_numpy(np.int64)
    doc_ids = doc_col[lo]
    text = None
    if docs is not None:
        text = []
        for d, a, b in zip(doc_ids, cs_col[lo], ce_col[hi - 1]):
            if d not in docs:
                raise UserError(f"document {d!r} of the harvest is not among the supplied documents; pass the corpus the harvest was made from")
            t = docs[d][a:b]
            text.append(t[:SEQUENCE_TEXT_CHARS] if sequence else t)
    off32 = offsets.astype(np.int32)
    return pa.table({
        "_order": pa.array(w["order"], pa.int64()),
        "feature": pa.array(w["feature"], pa.int32()),
        "split": pa.array(np.asarray(SPLITS, dtype=object)[w["split"]], pa.string()),
        "kind": pa.array(np.asarray(KINDS, dtype=object)[w["kind"]], pa.string()),
        "rank_or_quantile": pa.array(w["rank"], pa.int32()),
        "context_id": pa.array(w["context"], pa.int64()),
        "doc_id": pa.array(doc_ids, pa.string()),
        "max_act": pa.array(w["act"], pa.float32()),
        "max_index": pa.array(w["row_local"] - lo, pa.int32()),
        "tokens": _list_array(index["token"].astype(str).to_numpy(object)[token_rows], off32, pa.string()),
        "token_ids": _list_array(index["token_id"].to_numpy(np.int64)[token_rows], off32, pa.int64()),
        "acts": _list_array(token_acts, off32, pa.float32()),
        "char_start": _list_array(cs_col[token_rows], off32, pa.int64()),
        "char_end": _list_array(ce_col[token_rows], off32, pa.int64()),
        "text": pa.array(text if text is not None else [None] * len(lo), pa.string()),
    })


def _gather(sae, harvest_dir: Path, shards: list[dict], scan: _Scan, windows: Columns, cfg: ExemplarConfig,
            docs: Mapping[str, str] | None, sequence: bool, device, advance) -> pa.Table:
    if not windows:
        return EXEMPLAR_SCHEMA.empty_table()
    windows = {**windows, "order": np.arange(len(windows["feature"]))}
    where = np.searchsorted(scan.ctx_id, windows["context"])
    start, end = scan.ctx_start[where], scan.ctx_start[where] + scan.ctx_len[where]
    lo = np.maximum(start, windows["row"] - cfg.window_before)
    hi = np.minimum(end, windows["row"] + cfg.window_after + 1)
    shard_of = np.searchsorted(scan.shard_offsets, windows["row"], side="right") - 1
    tables = []
    for s_pos, shard in enumerate(shards):
        sel = np.flatnonzero(shard_of == s_pos)
        if len(sel):
            acts, index = _read(harvest_dir, shard, sae.cfg.d_in)
            off = scan.shard_offsets[s_pos]
            w = take(windows, sel)
            w["row_local"] = w["row"] - off
            tables.append(_gather_shard(sae, acts, index, w, lo[sel] - off, hi[sel] - off, docs, sequence, cfg.chunk_rows, device))
        advance(1)
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [("_order", "ascending")]))
    return table.drop_columns(["_order"]).cast(EXEMPLAR_SCHEMA)


# ------------------------------------------------------------------------------------------ public
def mine_exemplars(sae, harvest_dir: Path, docs: Mapping[str, str] | list | None, out_dir: Path, cfg: ExemplarConfig | None = None,
                   progress: bool = True) -> ExemplarResult:
    """Write ``feature_stats.parquet``, ``exemplars.parquet`` and ``exemplars.json`` into ``out_dir``.

    ``docs`` maps doc_id -> text (a list of ``Document`` is accepted too); without it ``text`` is null.
    Re-running overwrites the outputs atomically.
    """
    cfg = cfg or ExemplarConfig()
    cfg.validate()
    harvest_dir, out_dir = Path(harvest_dir), Path(out_dir)
    manifest, shards = _open_harvest(harvest_dir, sae.cfg.d_in)
    level = (manifest.get("identity") or {}).get("level", "token")
    if docs is not None and not isinstance(docs, Mapping):
        docs = {d.doc_id: d.text for d in docs}
    device = next(sae.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    was_training = sae.training
    sae.eval()  # BatchTopK must use its inference threshold, not batch-dependent selection
    try:
        with progress_bar("exemplars: encode", len(shards), "shards", enabled=progress) as advance:
            scan = _scan(sae, harvest_dir, shards, cfg, rng, device, advance)
        windows = select_windows(scan, cfg, rng)
        with progress_bar("exemplars: windows", len(shards), "shards", enabled=progress) as advance:
            table = _gather(sae, harvest_dir, shards, scan, windows, cfg, docs, level == "sequence", device, advance)
    finally:
        sae.train(was_training)

    d_sae = sae.cfg.d_sae
    dead = scan.n_active == 0
    stats = pd.DataFrame({
        "feature": np.arange(d_sae, dtype=np.int32),
        "n_active_tokens": scan.n_active,
        "density": scan.n_active / max(scan.n_rows, 1),
        "max_act": scan.max_act,
        "mean_act": (scan.sum_act / np.maximum(scan.n_active, 1)).astype(np.float32),
        "n_contexts_active": scan.n_ctx,
        "dead": dead,
    })
    meta = {"config": asdict(cfg), "harvest_dir": str(harvest_dir), "level": level, "n_rows": scan.n_rows,
            "n_contexts": len(scan.ctx_id), "negative_pool": len(scan.pool_ctx)}
    files = write_exemplars(ModelDir(out_dir), table, stats, meta)
    return ExemplarResult(out_dir, files.exemplars, files.feature_stats, level, scan.n_rows, len(scan.ctx_id), d_sae,
                          int(dead.sum()), table.num_rows)


def write_exemplars(files: ModelDir, windows: pa.Table, stats: pd.DataFrame, meta: dict) -> ModelDir:
    """The one writer of a model's exemplar artifacts: the windows (``EXEMPLAR_SCHEMA``), the per-feature
    statistics and the description (``meta`` plus counts and column definitions), each atomically."""
    if not windows.schema.equals(EXEMPLAR_SCHEMA):
        raise ValueError(f"exemplar windows must have EXEMPLAR_SCHEMA, got {windows.schema}")
    files.root.mkdir(parents=True, exist_ok=True)
    with atomic_path(files.exemplars) as tmp:
        pq.write_table(windows, tmp, row_group_size=50_000)
    with atomic_path(files.feature_stats) as tmp:
        stats.to_parquet(tmp, index=False)
    write_json(files.exemplars_meta, meta | {"n_features": len(stats), "n_dead": int(stats["dead"].sum()),
                                             "n_windows": windows.num_rows, "definitions": DEFINITIONS})
    return files
