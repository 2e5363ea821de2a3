"""Activation matching of two models at one or more unit levels, with its null, cached per level.

For each level: correlate over the real alignment, Hungarian on the live features (those active on at
least ``min_support`` units: rarer ones correlate perfectly by accident); then the same on
``null_permutations`` document derangements, whose matched correlations form the null. At pretrained widths
(``[compare] matching``, ``compare.matching_plan``) the dense matrix + Hungarian is replaced by each feature's
top partners + a sparse assignment (``compare.candidates``, ``compare.sparse_matching``), nulls included; a
width that cannot fit the memory budget is refused before the SAEs are even loaded. At word level each
matched pair is also classified lexical or contextual (``compare.lexical``). Each finished
level is saved under ``<compare dir>/cache/`` (safetensors, keyed by the inputs' identity), so an
interrupted compare resumes at the first unfinished level and a re-run after new labels skips the
expensive part entirely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from safetensors.numpy import save_file

from autointerp.compare.bootstrap import PairMoments, block_weights, document_blocks, matching_replicates, percentile_interval
from autointerp.compare.candidates import CandidateCorrelation
from autointerp.compare.correlation import Correlation, correlate
from autointerp.compare.encode import PooledActivations, pool_harvest
from autointerp.compare.inputs import ComparedModel
from autointerp.compare.lexical import WordTypes, classify_pairs, lexical_pairs
from autointerp.compare.matching import Assignment, NullModel, hungarian, null_model
from autointerp.compare.matching_plan import plan_matching
from autointerp.compare.sparse_matching import sparse_matching
from autointerp.compare.units import WordIndex, aligned_pairs, derangement, null_pairs
from autointerp.data.corpus import Document
from autointerp.errors import DamagedArtifact, UserError
from autointerp.io import atomic_path, read_json, read_safetensors
from autointerp.rundir.layout import PairDir, SAEFiles

log = logging.getLogger("autointerp")
_LEX_FLOATS = ("contextual_corr", "lexical_null_corr", "word_share_a", "word_share_b")
_KINDS = ("unshared", "lexical", "contextual")


@dataclass
class LevelResult:
    level: str
    corr: Correlation | CandidateCorrelation  # dense matrix, or the sparse path's candidate pairs
    assignment: Assignment  # live features only, feature ids
    null: NullModel
    null_permutation: np.ndarray  # which derangement each null sample came from
    rare_a: np.ndarray  # [d_a] bool: live but active on fewer than min_support units (left out of matching)
    rare_b: np.ndarray
    lexical: pd.DataFrame | None = None  # word level: per matched pair, lexical vs contextual (compare.lexical)
    lexical_summary: dict | None = None
    boot_shared: np.ndarray | None = None  # [B] shared pairs per document-bootstrap replicate (compare.bootstrap)
    boot_contextual: np.ndarray | None = None  # [B] contextual pairs per replicate (word level)
    boot_shared_bits: np.ndarray | None = None  # [B, ceil(pairs / 8)] packed: each pair shared in each replicate
    boot_contextual_bits: np.ndarray | None = None  # the same for contextual (word level)
    boot_blocks: int = 0  # resampling blocks of whole documents
    boot_seconds: float = 0.0  # what the replicates cost when they were computed

    def intervals(self) -> dict | None:
        """The replicate counts' percentile intervals ({"n_shared": [lo, hi], "n_contextual": ...}), centred on
        the counts (``compare.bootstrap``: a count above a threshold drifts under resampling); None when the
        bootstrap is off."""
        if self.boot_shared is None or not len(self.boot_shared):
            return None
        n = len(self.assignment.values)
        counts = {"n_shared": (self.boot_shared, int((self.assignment.values > self.null.threshold).sum()))}
        if self.boot_contextual is not None and len(self.boot_contextual) and self.lexical_summary:
            counts["n_contextual"] = (self.boot_contextual, self.lexical_summary.get("n_contextual"))
        out = {"n_replicates": len(self.boot_shared), "n_blocks": self.boot_blocks, "seconds": round(self.boot_seconds, 1), "centred": True}
        for key, (reps, value) in counts.items():
            ci = percentile_interval(reps, centre=value)
            out[key] = [float(min(max(ci[0], 0), n)), float(min(max(ci[1], 0), n))] if ci else None
            out[f"{key}_replicate_median"] = float(np.median(reps))
        return out

    def summary(self) -> dict:
        v = self.assignment.values
        shared = v > self.null.threshold
        return {
            "n_units": int(self.corr.n_units), "n_dead_a": int(self.corr.dead_a.sum()), "n_dead_b": int(self.corr.dead_b.sum()),
            "n_pairs": len(v), "n_shared": int(shared.sum()),
            "mean_corr": float(v.mean()) if len(v) else None, "median_corr": float(np.median(v)) if len(v) else None,
            "null_threshold": self.null.threshold, "null_mean": float(self.null.samples.mean()) if len(self.null.samples) else None,
            "null_max": float(self.null.samples.max()) if len(self.null.samples) else None,
            "null_samples": len(self.null.samples),
            "n_rare_a": int(self.rare_a.sum()), "n_rare_b": int(self.rare_b.sum()),
        } | self.matching_summary()

    def matching_summary(self) -> dict:
        """Which matching ran, and the live features it left without a partner (the dense Hungarian: the larger
        side's surplus; the sparse one also those without a candidate, counted apart)."""
        live_a, live_b = ~(self.corr.dead_a | self.rare_a), ~(self.corr.dead_b | self.rare_b)
        n = len(self.assignment.values)
        out = {"matching": "sparse" if isinstance(self.corr, CandidateCorrelation) else "dense",
               "n_unmatched_a": int(live_a.sum()) - n, "n_unmatched_b": int(live_b.sum()) - n,
               "null_unmatched": self.null.n_unmatched}
        if isinstance(self.corr, CandidateCorrelation):
            none_a, none_b = self.corr.no_candidate(live_a, live_b)
            out |= {"candidates": self.corr.k, "n_candidate_pairs": len(self.corr.values),
                    "n_no_candidate_a": none_a, "n_no_candidate_b": none_b, "exact_check": self.corr.check}
        return out


def levels_for(a: ComparedModel, b: ComparedModel, unit: str, document_level: bool) -> list[str]:
    """Word units need token-level harvests on both sides; document units always work."""
    if unit == "word" and a.level == "token" and b.level == "token":
        return ["word", "document"] if document_level else ["word"]
    return ["document"]


def _cache_key(identity: dict, level: str) -> str:
    return hashlib.sha256(json.dumps({"identity": identity, "level": level}, sort_keys=True, default=str).encode()).hexdigest()


def _load_cached(path: Path, key: str, level: str, alpha: float) -> LevelResult | None:
    if not path.is_file():
        return None
    try:
        t = read_safetensors(path, "numpy")
    except DamagedArtifact:  # a damaged cache is recomputed, never trusted
        return None
    if bytes(t["key"]).decode() != key or "rare_a" not in t:
        return None
    n_units, dead_a, dead_b = int(t["n_units"][0]), t["dead_a"].astype(bool), t["dead_b"].astype(bool)
    if "cand_rows" in t:
        corr = CandidateCorrelation(t["cand_rows"], t["cand_cols"], t["cand_values"], n_units, dead_a, dead_b, int(t["cand_k"][0]),
                                    check=json.loads(bytes(t["cand_check"]).decode()) if "cand_check" in t else None)
    else:
        corr = Correlation(t["corr"], n_units, dead_a, dead_b)
    assign = Assignment(t["rows"], t["cols"], t["values"])
    null = null_model([t["null"]], alpha, int(t["null_unmatched"][0]) if "null_unmatched" in t else 0)
    result = LevelResult(level, corr, assign, null, t["null_perm"], t["rare_a"].astype(bool), t["rare_b"].astype(bool))
    if "lex_kind" in t:
        result.lexical = pd.DataFrame({"feature_a": assign.rows.astype(np.int32), "feature_b": assign.cols.astype(np.int32), **{c: t[f"lex_{c}"] for c in _LEX_FLOATS},
                                       "kind": np.asarray(_KINDS, dtype=object)[t["lex_kind"].astype(np.int64)]})
        result.lexical_summary = json.loads(bytes(t["lex_summary"]).decode())
    if "boot_shared" in t:
        result.boot_shared, result.boot_blocks = t["boot_shared"], int(t["boot_blocks"][0])
        result.boot_seconds = float(t["boot_seconds"][0]) if "boot_seconds" in t else 0.0
        result.boot_contextual = t.get("boot_contextual")
        result.boot_shared_bits, result.boot_contextual_bits = t.get("boot_shared_bits"), t.get("boot_contextual_bits")
    return result


def _save_cached(path: Path, key: str, r: LevelResult) -> None:
    tensors = {
        "key": np.frombuffer(key.encode(), dtype=np.uint8).copy(), "n_units": np.array([r.corr.n_units], np.int64),
        "dead_a": r.corr.dead_a.astype(np.uint8), "dead_b": r.corr.dead_b.astype(np.uint8),
        "rows": r.assignment.rows, "cols": r.assignment.cols, "values": r.assignment.values,
        "null": r.null.samples, "null_perm": r.null_permutation,
        "rare_a": r.rare_a.astype(np.uint8), "rare_b": r.rare_b.astype(np.uint8),
        "null_unmatched": np.array([r.null.n_unmatched], np.int64),
    }
    if isinstance(r.corr, CandidateCorrelation):  # the sparse path never holds a dense matrix, nor does its cache
        tensors |= {"cand_rows": r.corr.rows, "cand_cols": r.corr.cols, "cand_values": r.corr.values, "cand_k": np.array([r.corr.k], np.int64),
                    "cand_check": np.frombuffer(json.dumps(r.corr.check).encode(), dtype=np.uint8).copy()}
    else:
        tensors["corr"] = r.corr.corr
    if r.lexical is not None:
        tensors |= {f"lex_{c}": r.lexical[c].to_numpy(np.float32) for c in _LEX_FLOATS}
        tensors["lex_kind"] = r.lexical["kind"].map(_KINDS.index).to_numpy(np.int8)
        tensors["lex_summary"] = np.frombuffer(json.dumps(r.lexical_summary, default=float).encode(), dtype=np.uint8).copy()
    if r.boot_shared is not None:
        tensors |= {"boot_shared": r.boot_shared.astype(np.int32), "boot_blocks": np.array([r.boot_blocks], np.int64),
                    "boot_seconds": np.array([r.boot_seconds], np.float64)}
        if r.boot_contextual is not None:
            tensors["boot_contextual"] = r.boot_contextual.astype(np.int32)
        for name in ("boot_shared_bits", "boot_contextual_bits"):
            if getattr(r, name) is not None:
                tensors[name] = np.ascontiguousarray(getattr(r, name), np.uint8)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def sae_width(m: ComparedModel) -> int:
    """d_sae from the SAE's cfg.json alone (no weights loaded)."""
    from autointerp.sae.saelens import config_from_json

    try:
        return int(config_from_json(read_json(SAEFiles(m.sae_dir).cfg)).d_sae)
    except (OSError, ValueError, UserError):  # unreadable: load_sae names the problem when it gets there
        return 0


def support(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Per feature: on how many of ``rows`` (units) it is active."""
    return np.bincount(matrix[rows].indices, minlength=matrix.shape[1])


def _match(method: str, pa: PooledActivations, pb: PooledActivations, rows_a, rows_b, valid_a, valid_b, cfg, progress: bool,
           label: str) -> tuple[Correlation | CandidateCorrelation, Assignment]:
    """Correlation + one-to-one assignment of the valid live features: the dense matrix and the Hungarian, or
    (sparse) each feature's top ``cfg.candidates`` partners and their certified assignment."""
    if method == "sparse":
        return sparse_matching(pa.matrix, pb.matrix, rows_a, rows_b, k=cfg.candidates, valid_a=valid_a, valid_b=valid_b,
                               progress=progress, label=label)
    corr = correlate(pa.matrix, pb.matrix, rows_a, rows_b, max_rows=cfg.unit_chunk, progress=progress, label=label)
    return corr, hungarian(corr.corr, valid_a & ~corr.dead_a, valid_b & ~corr.dead_b)


def _level_result(level: str, pa: PooledActivations, pb: PooledActivations, offsets: np.ndarray, cfg, progress: bool) -> LevelResult:
    rows_a, rows_b = aligned_pairs(pa.covered, pb.covered)
    method = plan_matching(cfg, pa.matrix.shape[1], pb.matrix.shape[1], pa.matrix.nnz + pb.matrix.nnz).method
    sup_a, sup_b = support(pa.matrix, rows_a), support(pb.matrix, rows_b)
    often_a, often_b = sup_a >= cfg.min_support, sup_b >= cfg.min_support
    # Features active on a handful of units correlate perfectly by accident (also in the null): left out.
    corr, assign = _match(method, pa, pb, rows_a, rows_b, often_a, often_b, cfg, progress, f"{level} correlation")
    rare_a, rare_b = ~corr.dead_a & ~often_a, ~corr.dead_b & ~often_b
    live_a, live_b = ~(corr.dead_a | rare_a), ~(corr.dead_b | rare_b)
    rng = np.random.default_rng(cfg.seed)
    samples, perms, unmatched = [], [], 0
    n_perm, slots = cfg.null_permutations, min(int(live_a.sum()), int(live_b.sum()))  # pairs a dense matching makes
    if slots:
        n_perm = min(max(n_perm, -(-cfg.min_null_samples // slots)), cfg.max_null_permutations)
    for p in range(n_perm):
        perm = derangement(len(offsets) - 1, rng)
        na, nb = null_pairs(offsets, pa.covered, pb.covered, perm)
        null_corr, null_assign = _match(method, pa, pb, na, nb, live_a, live_b, cfg, progress, f"{level} null {p + 1}")
        null_a, null_b = live_a & ~null_corr.dead_a, live_b & ~null_corr.dead_b
        matched = null_assign.values
        unmatched += min(int(null_a.sum()), int(null_b.sum())) - len(matched)  # 0 on the dense path
        samples.append(matched)
        perms.append(np.full(len(matched), p, np.int32))
        del null_corr
    null = null_model(samples, cfg.null_alpha, unmatched)
    perm_of = np.concatenate(perms)[np.argsort(np.concatenate(samples), kind="stable")] if samples else np.zeros(0, np.int32)
    return LevelResult(level, corr, assign, null, perm_of, rare_a, rare_b)


def _lexical(result: LevelResult, pa: PooledActivations, pb: PooledActivations, types: WordTypes, cfg) -> None:
    """Word level: is each matched pair shared beyond word identity? (rule: ``compare.lexical``)."""
    a = result.assignment
    frame, summary = classify_pairs(pa.matrix, pb.matrix, a.rows, a.cols, types, covered=pa.covered & pb.covered,
                                    null_threshold=result.null.threshold, alpha=cfg.lexical_alpha,
                                    n_permutations=cfg.lexical_permutations, seed=cfg.seed, min_excess=cfg.lexical_min_excess)
    result.lexical = frame[["feature_a", "feature_b", *_LEX_FLOATS, "kind"]].astype({"feature_a": np.int32, "feature_b": np.int32}).reset_index(drop=True)
    result.lexical_summary = summary


def _bootstrap(result: LevelResult, pa: PooledActivations, pb: PooledActivations, offsets: np.ndarray, cfg,
               types: WordTypes | None) -> None:
    """Document-bootstrap replicates of the shared (and, at word level, contextual) counts, the matching,
    null threshold and lexical null held fixed (``compare.bootstrap``)."""
    if cfg.bootstrap < 1 or not len(result.assignment.values):
        return
    started = time.perf_counter()
    a = result.assignment
    covered = pa.covered & pb.covered
    units = np.flatnonzero(covered)
    doc_of_unit = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    groups = document_blocks(doc_of_unit[units], cfg.bootstrap_blocks)
    weights = block_weights(int(groups.max()) + 1, cfg.bootstrap, cfg.seed)
    x, y = pa.matrix.tocsr()[units][:, a.rows], pb.matrix.tocsr()[units][:, a.cols]
    lexical = {}
    if types is not None and result.lexical is not None:
        # the lexical pairings classify_pairs drew (same seed, same order), each blocked by its A unit's document
        am, bm = pa.matrix.tocsr()[:, a.rows], pb.matrix.tocsr()[:, a.cols]
        block_of_doc = np.zeros(len(offsets) - 1, np.int64)
        block_of_doc[doc_of_unit[units]] = groups
        rng, recurring = np.random.default_rng(cfg.seed), types.recurring(covered)
        null = []
        for _ in range(cfg.lexical_permutations):
            ua, ub = lexical_pairs(types, np.flatnonzero(recurring), rng)
            null.append(PairMoments.of(am[ua], bm[ub], block_of_doc[doc_of_unit[ua]], int(groups.max()) + 1))
        lexical = {"recurring": recurring[units], "lexical_null": null,
                   "excess_threshold": (result.lexical_summary or {}).get("lexical_null_threshold")}
    reps = matching_replicates(x, y, groups, weights, result.null.threshold, **lexical)
    result.boot_shared, result.boot_contextual = reps["shared"], reps.get("contextual")
    result.boot_shared_bits, result.boot_contextual_bits = reps["shared_bits"], reps.get("contextual_bits")
    result.boot_blocks = weights.shape[1]
    result.boot_seconds = time.perf_counter() - started

# A model's pooled codes depend only on its harvest, its SAE and the documents (word units are the corpus's
# words, whatever the other model's tokenizer), so the compares of one `autointerp run` (the pair, each
# model's ceiling, the floor) share them instead of encoding the same harvest up to three times. Read-only.
_POOLED: OrderedDict[tuple, dict[str, PooledActivations]] = OrderedDict()
_POOLED_MAX_BYTES = 2 << 30  # kept while they fit (the default pair: ~50 MB a model), so a many-model run's pairs,
# ceilings and floors encode each model once; the least recently used go first, the newest always stays


def _pooled_key(m: ComparedModel, docs: list[Document], words: bool) -> tuple:
    weights = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(m.sae_dir.iterdir()) if p.suffix in (".safetensors", ".json"))
    return (str(m.harvest_dir.resolve()), json.dumps(m.manifest.get("identity"), sort_keys=True, default=str), str(m.sae_dir.resolve()),
            weights, len(docs), hashlib.sha256("\x00".join(d.doc_id for d in docs).encode()).hexdigest(), words)


def _nbytes(pooled: dict[str, PooledActivations]) -> int:
    return sum(p.matrix.data.nbytes + p.matrix.indices.nbytes + p.matrix.indptr.nbytes + p.covered.nbytes for p in pooled.values())


def _remember(key: tuple, pooled: dict[str, PooledActivations]) -> None:
    _POOLED[key] = pooled
    while len(_POOLED) > 1 and sum(_nbytes(v) for v in _POOLED.values()) > _POOLED_MAX_BYTES:
        _POOLED.popitem(last=False)


def activation_levels(a: ComparedModel, b: ComparedModel, docs: list[Document], cfg, identity: dict, pair: PairDir,
                      progress: bool = True) -> dict[str, LevelResult]:
    """LevelResult per level, from the cache where the inputs are unchanged, else computed."""
    from autointerp.sae.saelens import load_sae

    levels = levels_for(a, b, cfg.unit, cfg.document_level)
    keys = {lv: _cache_key(identity, lv) for lv in levels}
    results = {lv: _load_cached(pair.cache_file(lv), keys[lv], lv, cfg.null_alpha) for lv in levels}
    todo = [lv for lv in levels if results[lv] is None]
    if not todo:
        return results
    plan_matching(cfg, *(sae_width(m) for m in (a, b)))  # a width that cannot fit: refused before any encoding
    doc_index_of = {d.doc_id: i for i, d in enumerate(docs)}
    words = WordIndex.build(docs) if "word" in todo else None
    pooled = {}
    for m in (a, b):
        key = _pooled_key(m, docs, words is not None)
        if key in _POOLED:
            _POOLED.move_to_end(key)
            pooled[m.slug] = _POOLED[key]
        else:
            sae = load_sae(m.sae_dir)
            pooled[m.slug] = pool_harvest(sae, m.harvest_dir, m.manifest, doc_index_of, words, cfg.chunk_rows, progress, m.slug)
            del sae
            _remember(key, pooled[m.slug])
    for lv in todo:
        offsets = words.doc_offsets if lv == "word" else np.arange(len(docs) + 1, dtype=np.int64)
        results[lv] = _level_result(lv, pooled[a.slug][lv], pooled[b.slug][lv], offsets, cfg, progress)
        types = WordTypes.build(words, docs) if lv == "word" else None
        if types is not None:
            _lexical(results[lv], pooled[a.slug][lv], pooled[b.slug][lv], types, cfg)
        _bootstrap(results[lv], pooled[a.slug][lv], pooled[b.slug][lv], offsets, cfg, types)
        _save_cached(pair.cache_file(lv), keys[lv], results[lv])
        log.info("compare %s vs %s: %s level done (%d units)", a.slug, b.slug, lv, results[lv].corr.n_units)
    return results


class PairReplicates(NamedTuple):
    """A finished comparison's document-bootstrap replicates per matched pair (``compare.bootstrap``)."""

    rows: np.ndarray  # [P] model A's feature of each matched pair
    cols: np.ndarray  # [P] model B's feature
    shared_bits: np.ndarray  # [B, ceil(P / 8)] packed: pair shared in replicate
    contextual_bits: np.ndarray | None  # the same for contextual (shared beyond word identity); word level only


def pair_replicates(pair: PairDir, level: str = "word") -> PairReplicates | None:
    """The replicates the last ``autointerp compare`` of ``pair`` kept at ``level`` (None when the bootstrap was
    off, the level did not run, or the comparison predates per-pair replicates)."""
    path = pair.cache_file(level)
    if not path.is_file():
        return None
    try:
        t = read_safetensors(path, "numpy")
    except DamagedArtifact:  # a damaged cache holds no replicates
        return None
    if "boot_shared_bits" not in t:
        return None
    return PairReplicates(t["rows"], t["cols"], t["boot_shared_bits"], t.get("boot_contextual_bits"))
