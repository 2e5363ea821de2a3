"""What a comparison's sharing number means: ``calibration.json`` next to the matches.

"44% of matched pairs are shared" cannot be read alone. This module gathers what it is measured against:
the share of shared pairs that stay correlated beyond word identity (``compare.lexical``), and the
representation-level baselines on the raw activations (debiased CKA, SVCCA, mutual kNN, each with its
document-derangement null; ``compare.representation``). The same-model ceiling (two SAE seeds) and the
random-weights floor are the controls' (controls.json): ``controls.calibration.pair_calibration`` puts
them next to this file's numbers when a reader asks, so this file keeps only what compare computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import numpy as np

from autointerp.compare.inputs import ComparedModel
from autointerp.compare.representation import pooled_word_activations, representation_baselines
from autointerp.compare.units import WordIndex
from autointerp.compare.verdict import verdict
from autointerp.data.corpus import Document
from autointerp.io import read_json, write_json
from autointerp.rundir.layout import PairDir

log = logging.getLogger("autointerp")
INTERVAL_METHOD = ("document bootstrap (whole documents resampled in blocks, 95% percentile intervals centred on the estimate); "
                   "the matching, the null threshold, the lexical pairings and the excess threshold are held fixed and each "
                   "matched pair's correlations are recomputed from per-document sufficient statistics")
NOT_MEASURED = "not measured: run `autointerp controls` (part of `autointerp run`; [controls] ceiling / floor)"


def representation(a: ComparedModel, b: ComparedModel, docs: list[Document], cfg, identity: dict, pair: PairDir,
                   progress: bool = True) -> dict | None:
    """The three raw-activation baselines at word level (cached by the inputs' identity); None when either
    harvest is not token level (no word units) or ``[compare] representation = false``."""
    if not cfg.representation or a.level != "token" or b.level != "token":
        return None
    key = hashlib.sha256(json.dumps({"identity": identity, "what": "representation", "permutations": cfg.representation_permutations,
                                     "max_units": cfg.representation_max_units, "units": cfg.representation_units,
                                     "bootstrap": [cfg.bootstrap, cfg.svcca_bootstrap, cfg.bootstrap_blocks]},
                                    sort_keys=True, default=str).encode()).hexdigest()
    cached = _cached(pair, key)
    if cached is not None:
        return cached
    started = time.perf_counter()
    words = WordIndex.build(docs)
    doc_index_of = {d.doc_id: i for i, d in enumerate(docs)}
    pooled = [pooled_word_activations(m.harvest_dir, m.manifest, doc_index_of, words, progress, m.slug) for m in (a, b)]
    keep = words.subsample(cfg.representation_units, cfg.seed)  # whole documents: the derangements permute among them
    rows = np.concatenate([np.arange(words.doc_offsets[d], words.doc_offsets[d + 1]) for d in keep])
    offsets = np.concatenate([[0], np.cumsum(words.words_per_doc[keep])])
    bootstrap = {"n_replicates": cfg.bootstrap, "svcca_replicates_n": cfg.svcca_bootstrap, "max_blocks": cfg.bootstrap_blocks} if cfg.bootstrap else None
    result = representation_baselines(pooled[0].matrix[rows], pooled[1].matrix[rows], offsets, covered_a=pooled[0].covered[rows],
                                      covered_b=pooled[1].covered[rows], seed=cfg.seed, n_permutations=cfg.representation_permutations,
                                      max_units=cfg.representation_max_units, bootstrap=bootstrap)
    result["subsample"] = {"documents": len(keep), "of_documents": len(docs), "units": int(len(rows)), "of_units": words.n_units}
    result["seconds"] = round(time.perf_counter() - started, 1)  # the control's cost, kept with the cached result
    pair.cache.mkdir(parents=True, exist_ok=True)
    write_json(pair.representation_cache, {"key": key, "result": result})
    return result


def _cached(pair: PairDir, key: str) -> dict | None:
    try:
        saved = read_json(pair.representation_cache)
    except (OSError, ValueError):
        return None
    return saved.get("result") if saved.get("key") == key else None


def _baseline(entry: dict | None, interval: dict | None) -> dict | None:
    if entry is None:
        return None
    return {k: entry.get(k) for k in ("value", "null_mean", "null_sd", "p_value", "z", "n_units", "n_permutations")} | {
        "ci": (interval or {}).get("ci")}


def calibration_record(stats: dict, rep: dict | None) -> dict:
    """calibration.json: the headline numbers of one comparison with what each is measured against."""
    act, lex = stats.get("activation") or {}, stats.get("lexical") or {}
    out = {
        "unit": stats.get("unit"),
        "shared_fraction": act.get("fraction_shared"),
        "n_shared": stats.get("n_shared"), "n_pairs": act.get("n_pairs"),
        "null_threshold": (stats.get("null") or {}).get("threshold"),
        "beyond_lexical_fraction": lex.get("beyond_lexical_fraction"),
        "n_contextual": lex.get("n_contextual"), "n_lexical": lex.get("n_lexical"),
        "ceiling_shared_fraction": None, "floor_shared_fraction": None,
        "not_measured": {"ceiling_shared_fraction": NOT_MEASURED, "floor_shared_fraction": NOT_MEASURED},
        "min_support": stats.get("min_support"), "n_rare_a": stats.get("n_rare_a"), "n_rare_b": stats.get("n_rare_b"),
        "intervals": (stats.get("intervals") or None) and stats["intervals"] | {"method": INTERVAL_METHOD},
    }
    out |= per_model(stats)
    intervals = (rep or {}).get("intervals") or {}
    for name in ("cka", "svcca", "mutual_knn"):
        out[name] = _baseline((rep or {}).get(name), intervals.get(name))
    out["representation_bootstrap"] = {k: v for k, v in intervals.items() if not isinstance(v, dict)} or None
    out["representation_seconds"] = (rep or {}).get("seconds")
    out["representation_subsample"] = (rep or {}).get("subsample")  # the whole documents the three were measured on
    if rep is None:
        out["not_measured"]["representation"] = "needs token-level harvests of both models ([compare] representation = true)"
    out["verdict"] = verdict(out, stats.get("model_a"), stats.get("model_b"))
    return out


def per_model(stats: dict) -> dict:
    """Sharing counted per model: of each model's matchable features (not dead, not rare), the share with a
    shared partner. The share of *matched pairs* depends on the smaller dictionary (Hungarian matches
    min(n_a, n_b) pairs), so only these per-model shares compare across pairs of different sizes (a model
    against itself, against another model, against random weights)."""
    out = {"n_matchable": {}, "shared_fraction_of": {}, "contextual_fraction_of": {}, "ci": {"shared_fraction_of": {}, "contextual_fraction_of": {}}}
    counts = {"shared_fraction_of": stats.get("n_shared"), "contextual_fraction_of": (stats.get("lexical") or {}).get("n_contextual")}
    intervals = stats.get("intervals") or {}
    ranges = {"shared_fraction_of": intervals.get("n_shared"), "contextual_fraction_of": intervals.get("n_contextual")}
    for side in ("a", "b"):
        slug = stats.get(f"model_{side}")
        n = (stats.get(f"n_features_{side}") or 0) - (stats.get(f"n_dead_{side}") or 0) - (stats.get(f"n_rare_{side}") or 0)
        out["n_matchable"][slug] = n
        for key, k in counts.items():
            out[key][slug] = (k / n) if k is not None and n > 0 else None
            out["ci"][key][slug] = [v / n for v in ranges[key]] if ranges[key] and n > 0 else None
    return out
