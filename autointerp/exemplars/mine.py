"""Mine exemplars: per-feature statistics and top / quantile / random windows with per-token activations.

Two passes over a harvest directory, both streaming one shard at a time:

1. **Scan.** Encode every row in chunks of ``chunk_rows`` (``autointerp.sae.encode``, as compare does). Latents stay sparse: each chunk becomes flat
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
- hard_negative (token level; ``hard_negatives``): held-out windows holding one of the feature's main words
  (from the lexical profile of its training windows, computed here) where it does not fire, as many as it
  has held-out activating windows; a third pass over the harvest.
Each feature also gets a class (token / contextual / topical / other; ``feature_classes``) from statistics the
scan accumulates, written with its statistics to feature_stats.parquet.
Every (feature, context_id) occurs at most once, so train and test never share a window's context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
import tempfile
from contextlib import nullcontext
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
from autointerp.exemplars.config import ExemplarConfig
from autointerp.exemplars.feature_classes import RULE as CLASS_RULE, ClassStats
from autointerp.exemplars.hard_negatives import DEFINITION as HARD_NEGATIVE_DEFINITION, select_hard_negatives
from autointerp.exemplars.harvest_reader import INDEX_COLUMNS, open_harvest, read_checked, read_index
from autointerp.exemplars.kinds import ACTIVATING_KINDS, HARD_NEGATIVE, KINDS, SPLITS
from autointerp.exemplars.profile import compute_profiles, profiles_from_frame
from autointerp.rundir.layout import ModelDir
from autointerp.sae.encode import chunk_codes, inference, sparse_codes
from autointerp.exemplars.topk_tracker import (
    Columns,
    GroupedTopN,
    concat,
    max_per_pair,
    pair_key_base,
    select_windows,
    take,
)

SEQUENCE_TEXT_CHARS = 2000  # sequence level: a window is the whole document, cut to this many chars

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
    HARD_NEGATIVE: HARD_NEGATIVE_DEFINITION,
    "n_hard_negatives": "feature_stats: the feature's hard-negative windows; 0 when none exists (it fires wherever its main words occur, or they occur nowhere else) or at sequence level (not mined)",
    "disjoint": "each (feature, context_id) appears at most once",
    "feature_class": "feature_stats (token level): token / contextual / topical / other / dead, by the rule in exemplars.json feature_classes.rule (autointerp.exemplars.feature_classes), with its statistics word_eta2, doc_concentration, top_word_share, word_fire_rate",
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
    profile: pd.DataFrame | None = None  # the lexical profile of the training windows (``exemplars.profile``), for the stage to write
    n_without_hard_negatives: int = 0  # features with held-out activating windows but no hard negative


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


def _scan(sae, harvest_dir: Path, shards: list[dict], cfg: ExemplarConfig, rng: np.random.Generator, device, advance,
          spill: Path | None = None, classes: ClassStats | None = None) -> _Scan:
    """Pass 1. With ``spill``, each shard's positive latents are also saved there as sorted ``feature * rows +
    row`` keys (``<shard index>.npy``), for the hard-negative pass to read instead of encoding again; with
    ``classes``, the statistics of the feature-class rule are accumulated (``feature_classes``)."""
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
        acts, index = read_checked(harvest_dir, shard, d_in)
        n = acts.shape[0]
        ctx_col = index["context_id"].to_numpy(np.int64)
        uniq, first, counts = np.unique(ctx_col, return_index=True, return_counts=True)
        runs = 1 + int(np.count_nonzero(ctx_col[1:] != ctx_col[:-1])) if n else 0
        if runs != len(uniq):
            raise UserError(f"shard {shard['index']} in {harvest_dir} has non-contiguous context rows; re-run `autointerp harvest --overwrite`")
        ctx_parts.append((uniq, first.astype(np.int64) + offset, counts.astype(np.int64)))

        parts, keys = [], [np.zeros(0, np.int64)]
        word, doc = classes.shard(index) if classes is not None else (None, None)
        for _, _, r, f, v in chunk_codes(sae, acts, cfg.chunk_rows, device):
            f = f.astype(np.int32)
            if classes is not None:
                classes.add(f, v, word[r], doc[r])
            if spill is not None:
                keys.append(f.astype(np.int64) * n + r)
            n_active += np.bincount(f, minlength=d_sae)
            sum_act += np.bincount(f, weights=v, minlength=d_sae)
            keep = max_per_pair(f, ctx_col[r], v)  # shrink early: one record per (feature, context)
            parts.append({"feature": f[keep], "act": v[keep], "row": r[keep]})
        if spill is not None:
            np.save(spill / f"{shard['index']}.npy", np.sort(np.concatenate(keys)))
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


def _token_acts(sae, acts: torch.Tensor, token_rows: np.ndarray, features: np.ndarray, chunk_rows: int, device) -> np.ndarray:
    """The activation of ``features[i]`` on shard row ``token_rows[i]``, for every window token."""
    uniq, inv = np.unique(token_rows, return_inverse=True)
    # Re-encode just the rows the windows need, kept sparse as sorted keys (row * d_sae + feature) -> act;
    # each window token then looks up its own feature with one searchsorted.
    d_sae = sae.cfg.d_sae
    keys, vals = [], []
    for s in range(0, len(uniq), chunk_rows):
        r, f, v = sparse_codes(sae, acts[torch.from_numpy(uniq[s : s + chunk_rows])], device)
        keys.append((r + s) * d_sae + f)
        vals.append(v)
    keys, vals = np.concatenate(keys), np.concatenate(vals)
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    query = inv.astype(np.int64) * d_sae + features
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    return np.where(keys[pos] == query, vals[pos], 0.0).astype(np.float32) if len(keys) else np.zeros(len(query), np.float32)


def _gather_shard(sae, acts: torch.Tensor | None, index: pd.DataFrame, w: Columns, lo: np.ndarray, hi: np.ndarray,
                  docs: Mapping[str, str] | None, sequence: bool, chunk_rows: int, device) -> pa.Table:
    """Tokens, provenance and the window feature's per-token activations of windows in one shard (``acts`` None:
    windows known not to fire, all activations 0)."""
    lengths = hi - lo
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    token_rows = np.repeat(lo, lengths) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths))
    token_acts = (_token_acts(sae, acts, token_rows, np.repeat(w["feature"], lengths).astype(np.int64), chunk_rows, device)
                  if acts is not None else np.zeros(len(token_rows), np.float32))

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
            docs: Mapping[str, str] | None, sequence: bool, device, advance, encode: bool = True) -> pa.Table:
    """The windows as a table in ``EXEMPLAR_SCHEMA``, in their order (``encode`` False: windows known not to
    fire, whose activations are all 0 without reading or encoding the shard's activations)."""
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
            acts, index = read_checked(harvest_dir, shard, sae.cfg.d_in) if encode else (None, read_index(harvest_dir, shard, list(INDEX_COLUMNS)))
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
    manifest, shards = open_harvest(harvest_dir, sae.cfg.d_in)
    level = (manifest.get("identity") or {}).get("level", "token")
    entities = None  # the documents' entities, for the lexical profile (a doc_id -> text mapping has none)
    if docs is not None and not isinstance(docs, Mapping):
        entities = {d.doc_id: d.entity for d in docs}
        docs = {d.doc_id: d.text for d in docs}
    rng = np.random.default_rng(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    with inference(sae) as device:
        with tempfile.TemporaryDirectory(prefix=".latents-", dir=out_dir) if level == "token" else nullcontext() as spill:
            spill = Path(spill) if spill else None  # token level: the scan keeps the latents for the hard negatives
            with progress_bar("exemplars: encode", len(shards), "shards", enabled=progress) as advance:
                classes = ClassStats(sae.cfg.d_sae) if level == "token" else None
                scan = _scan(sae, harvest_dir, shards, cfg, rng, device, advance, spill, classes)
            windows = select_windows(scan, cfg, rng)
            with progress_bar("exemplars: windows", len(shards), "shards", enabled=progress) as advance:
                table = _gather(sae, harvest_dir, shards, scan, windows, cfg, docs, level == "sequence", device, advance)
            documents = pd.DataFrame({"doc_id": list(docs), "text": list(docs.values())}) if docs is not None else None
            if documents is not None and entities is not None:
                documents["entity"] = documents["doc_id"].map(entities)
            profile = compute_profiles(table, documents)
            if spill is not None:
                with progress_bar("exemplars: hard negatives", 2 * len(shards), "shards", enabled=progress) as advance:
                    table = _with_hard_negatives(sae, harvest_dir, shards, scan, windows, table, profile, spill, docs, cfg, device, advance)

    d_sae = sae.cfg.d_sae
    dead = scan.n_active == 0
    n_hard = _count(table, (HARD_NEGATIVE,), d_sae)
    without = int(((_count(table, ACTIVATING_KINDS, d_sae, "test") > 0) & (n_hard == 0)).sum())
    stats = pd.DataFrame({
        "feature": np.arange(d_sae, dtype=np.int32),
        "n_active_tokens": scan.n_active,
        "density": scan.n_active / max(scan.n_rows, 1),
        "max_act": scan.max_act,
        "mean_act": (scan.sum_act / np.maximum(scan.n_active, 1)).astype(np.float32),
        "n_contexts_active": scan.n_ctx,
        "dead": dead,
        "n_hard_negatives": n_hard,
    })
    if classes is not None:  # token level: the feature's class (``feature_classes``) with its statistics
        stats = pd.concat([stats, classes.classify(scan.sum_act, n_hard)], axis=1)
    hard_meta = ({"mined": True, "n_windows": int(n_hard.sum()), "n_features_with": int((n_hard > 0).sum()), "n_features_without": without}
                 if level == "token" else {"mined": False, "reason": "sequence level: hard negatives are mined at token level only"})
    meta = {"config": asdict(cfg), "harvest_dir": str(harvest_dir), "level": level, "n_rows": scan.n_rows,
            "n_contexts": len(scan.ctx_id), "negative_pool": len(scan.pool_ctx), "hard_negatives": hard_meta,
            "feature_classes": ({"rule": CLASS_RULE, "counts": stats["feature_class"].value_counts().to_dict()} if classes is not None
                                else {"classified": False, "reason": "sequence level: classes need word types"})}
    files = write_exemplars(ModelDir(out_dir), table, stats, meta)
    return ExemplarResult(out_dir, files.exemplars, files.feature_stats, level, scan.n_rows, len(scan.ctx_id), d_sae,
                          int(dead.sum()), table.num_rows, profile, without)


def _with_hard_negatives(sae, harvest_dir: Path, shards: list[dict], scan: _Scan, windows: Columns, table: pa.Table, profile: pd.DataFrame,
                         spill: Path, docs: Mapping[str, str] | None, cfg: ExemplarConfig, device, advance) -> pa.Table:
    """``table`` with each feature's hard negatives (``hard_negatives``) after its other windows."""
    words = {f: p.main_words() for f, p in profiles_from_frame(profile).items()}
    hard = select_hard_negatives(harvest_dir, shards, lambda shard: np.load(spill / f"{shard['index']}.npy"), windows, words, docs,
                                 pair_key_base(scan.ctx_id), sae.cfg.d_sae, cfg, advance)
    hard = _gather(sae, harvest_dir, shards, scan, hard, cfg, docs, False, device, advance, encode=False)
    table = pa.concat_tables([table, hard])
    return table.take(pc.sort_indices(table, [("feature", "ascending")]))  # a stable sort: kinds keep their order


def _count(table: pa.Table, kinds: tuple[str, ...], d_sae: int, split: str | None = None) -> np.ndarray:
    """Windows of ``kinds`` (and ``split``) per feature."""
    mask = pc.is_in(table["kind"], value_set=pa.array(list(kinds), pa.string()))
    if split is not None:
        mask = pc.and_(mask, pc.equal(table["split"], split))
    features = table.filter(mask)["feature"].to_numpy()
    return np.bincount(features, minlength=d_sae).astype(np.int64)


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
