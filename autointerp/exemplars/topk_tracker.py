"""Vectorised per-group selection over a stream of sparse (feature, value, ...) records.

Exemplar mining sees SAE latents as flat records — one per (feature, context) hit — and must keep, per
feature, the n best by some score without a Python loop over features and without a dense
[tokens x d_sae] matrix. Everything here is one ``np.lexsort`` over the records plus group arithmetic:
sort by (group, score), number the records within each group, keep the ones whose rank is below the
group's quota. ``GroupedTopN`` merges a running state with each new batch the same way, so the state
never holds more than ``n`` records per group. ``select_windows`` turns the final states into the
exemplar windows (top / quantile / random, train / test) with the same group arithmetic.
"""

from __future__ import annotations

import numpy as np

Columns = dict[str, np.ndarray]


def group_ranks(sorted_groups: np.ndarray) -> np.ndarray:
    """0-based position of each record within its run of equal values (input sorted by group)."""
    n = len(sorted_groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_groups[1:] != sorted_groups[:-1]
    start_pos = np.flatnonzero(starts)
    run_lengths = np.diff(np.append(start_pos, n))
    return np.arange(n, dtype=np.int64) - np.repeat(start_pos, run_lengths)


def top_per_group(group: np.ndarray, score: np.ndarray, n: int | np.ndarray, largest: bool = True, tiebreak: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` best records per group (``n`` may be a per-group quota array) and their ranks.

    Result is ordered by group, then best first; ties in ``score`` go to the smaller ``tiebreak``
    (then to the earlier record: ``lexsort`` is stable).
    """
    keys = [] if tiebreak is None else [tiebreak]
    keys += [-score if largest else score, group]
    order = np.lexsort(keys)
    ranks = group_ranks(group[order])
    quota = n if np.isscalar(n) else np.asarray(n)[group[order]]
    keep = ranks < quota
    return order[keep], ranks[keep]


def max_per_pair(a: np.ndarray, b: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices keeping one record per distinct (a, b): the one with the largest score (earliest on ties)."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-score, b, a))
    sa, sb = a[order], b[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    return order[first]


def take(cols: Columns, idx: np.ndarray) -> Columns:
    return {k: v[idx] for k, v in cols.items()}


def concat(parts: list[Columns]) -> Columns:
    parts = [p for p in parts if p]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class GroupedTopN:
    """Running per-group top-n over batches of column records (one column must be ``group``).

    ``largest=False`` keeps the n smallest scores, which with uniform random scores is a bottom-k
    sample: a uniform reservoir sample without replacement of each group's records, mergeable batch by
    batch (a record survives iff its random key is among its group's n smallest over the whole stream).
    """

    def __init__(self, n: int, score: str, largest: bool = True, tiebreak: str | None = None, group: str = "feature"):
        self.n, self.score, self.largest, self.tiebreak, self.group = n, score, largest, tiebreak, group
        self.cols: Columns = {}

    def update(self, batch: Columns) -> None:
        if not batch or len(batch[self.group]) == 0 or self.n <= 0:
            return
        merged = concat([self.cols, batch])
        tb = merged[self.tiebreak] if self.tiebreak else None
        keep, _ = top_per_group(merged[self.group], merged[self.score], self.n, self.largest, tb)
        self.cols = take(merged, keep)

    def __len__(self) -> int:
        return len(self.cols[self.group]) if self.cols else 0


def pair_key_base(ctx_id: np.ndarray) -> int:
    """The ``n_ctx_ids`` of ``pair_key``: more than the largest context id."""
    return int(ctx_id.max()) + 1 if len(ctx_id) else 1


def pair_key(feature: np.ndarray, context: np.ndarray, n_ctx_ids: int) -> np.ndarray:
    """One int64 per (feature, context) pair (``n_ctx_ids``: more than the largest context id)."""
    return feature.astype(np.int64) * n_ctx_ids + context


def select_windows(scan, cfg, rng: np.random.Generator) -> Columns:
    """Per-feature window choice (rules in ``exemplars``' docstring), vectorised over all features.

    ``scan`` carries the pass-1 state: top / reservoir records (feature, act, row, context[, key]),
    n_ctx per feature, the sorted context table (ctx_id, ctx_start, ctx_len) and the negative pool
    (pool_ctx, fired [d_sae, pool]); ``cfg`` is an ``ExemplarConfig``. Returns columns feature,
    split (0 train / 1 test), kind (0 top / 1 quantile / 2 random), rank, context, row (max token, or
    a random centre for negatives), act; ordered by feature, kind, rank, act desc.
    """
    empty_i = np.zeros(0, np.int64)
    parts: list[Columns] = []
    n_ids = pair_key_base(scan.ctx_id)

    # top: ranks within feature, capped so small features keep contexts for the held-out set
    top = scan.top
    top_keys = empty_i
    if top:
        n = scan.n_ctx
        cap = np.minimum(cfg.n_top, n - np.minimum(n // 2, cfg.n_test_target))
        rank = group_ranks(top["feature"])
        keep = rank < cap[top["feature"]]
        t = take(top, keep)
        top_keys = pair_key(t["feature"], t["context"], n_ids)
        parts.append({"feature": t["feature"], "split": np.zeros(len(rank[keep]), np.int8), "kind": np.zeros(len(rank[keep]), np.int8),
                      "rank": rank[keep], "context": t["context"], "row": t["row"], "act": t["act"]})

    # quantile: equal-count bins over the reservoir minus the top windows
    res = scan.reservoir
    if res and cfg.n_quantiles and cfg.per_quantile:
        res = take(res, ~np.isin(pair_key(res["feature"], res["context"], n_ids), top_keys))
        f = res["feature"]
        order = np.lexsort((res["context"], res["act"], f))
        res, f = take(res, order), f[order]
        r = group_ranks(f)
        m = np.bincount(f, minlength=len(scan.n_ctx))[f]
        qbin = (r * cfg.n_quantiles) // np.maximum(m, 1)
        order = np.lexsort((rng.random(len(f)), qbin, f))
        res, f, qbin = take(res, order), f[order], qbin[order]
        p = group_ranks(f.astype(np.int64) * cfg.n_quantiles + qbin)
        keep = p < cfg.per_quantile
        res, f, qbin, p = take(res, keep), f[keep], qbin[keep], p[keep]
        # held out: one per bin (in random bin order) before a second per bin, ... -> stratified
        order = np.lexsort((rng.random(len(f)), p, f))
        res, f, qbin = take(res, order), f[order], qbin[order]
        t = group_ranks(f)
        n_test = np.floor(0.5 + cfg.test_fraction * np.bincount(f, minlength=len(scan.n_ctx))).astype(np.int64)
        split = (t < n_test[f]).astype(np.int8)
        parts.append({"feature": f, "split": split, "kind": np.ones(len(f), np.int8), "rank": qbin.astype(np.int64),
                      "context": res["context"], "row": res["row"], "act": res["act"]})

    # random negatives: pool contexts where the feature never fired
    alive = np.flatnonzero(scan.n_ctx > 0)
    n_pool = len(scan.pool_ctx)
    if cfg.n_random and n_pool and len(alive):
        for s in range(0, len(alive), 4096):
            feats = alive[s : s + 4096]
            keys = rng.random((len(feats), n_pool))
            keys[scan.fired[feats]] = np.inf
            cols = np.argsort(keys, axis=1)[:, : cfg.n_random]
            valid = np.isfinite(np.take_along_axis(keys, cols, axis=1))
            ordinal = np.broadcast_to(np.arange(cols.shape[1]), cols.shape)[valid]
            ctx = scan.pool_ctx[cols[valid]]
            where = np.searchsorted(scan.ctx_id, ctx)
            centre = scan.ctx_start[where] + np.floor(rng.random(len(ctx)) * scan.ctx_len[where]).astype(np.int64)
            parts.append({"feature": np.broadcast_to(feats[:, None], cols.shape)[valid].astype(np.int32),
                          "split": (ordinal % 2).astype(np.int8), "kind": np.full(len(ctx), 2, np.int8),
                          "rank": ordinal.astype(np.int64), "context": ctx, "row": centre, "act": np.zeros(len(ctx), np.float32)})

    w = concat([{k: np.asarray(v) for k, v in p.items()} for p in parts])
    if not w:
        return {}
    order = np.lexsort((-w["act"], w["rank"], w["kind"], w["feature"]))
    return take(w, order)
