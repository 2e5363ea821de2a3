"""The compare stage for one pair of models: activation + label matching, agreement, domains, abstraction.

Writes the pair directory (``RunDir.pair``: matches, null, features tables and stats), each atomically, and
the stage record last (``autointerp.rundir.record``): an unchanged re-run is a no-op, new labels redo only
the label part (correlations come from the per-level cache), an interrupted run resumes from that cache.
Column/key contract: ``tables.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.compare.activation import activation_levels
from autointerp.compare.analysis import (
    abstraction_sample,
    compare_abstraction,
    compare_specificity,
    entities_of,
    exemplar_spans,
    label_specificity,
)
from autointerp.compare.calibration import calibration_record, representation
from autointerp.compare.config import CompareConfig
from autointerp.compare.domains import domain_counts, side_domains
from autointerp.config import ModelEntry, RunConfig
from autointerp.compare.inputs import (
    ComparedModel,
    model_inputs,
    check_same_corpus,
    extra_identity,
    input_identity,
    load_labels,
    model_names,
)
from autointerp.compare.label_priority import write_label_priority
from autointerp.compare.labels import LabelMatching, label_space, match_labels
from autointerp.compare.summary import print_summary
from autointerp.compare.tables import (
    DEFINITIONS,
    MATCHES_SCHEMA,
    features_table,
    matches_table,
    write_parquet,
)
from autointerp.data.corpus import saved_entity_source
from autointerp.errors import UserError
from autointerp.io import read_json, write_json
from autointerp.rundir.layout import PairDir, RunDir
from autointerp.rundir.lock import run_lock
from autointerp.rundir.record import StageResult, Decision, StageRecord, decide

log = logging.getLogger("autointerp")
EXPLAIN_HINT = "run `autointerp explain` first"


@dataclass
class CompareOutcome:
    out_dir: Path
    skipped: bool
    stats: dict


def _activation_identity(cfg: CompareConfig, a: ComparedModel, b: ComparedModel) -> dict:
    keep = ("unit", "document_level", "null_permutations", "min_null_samples", "max_null_permutations", "seed",
            "min_support", "lexical_permutations", "lexical_alpha", "lexical_min_excess", "bootstrap", "bootstrap_blocks",
            "matching", "candidates", "dense_max_pairs")
    return {"config": {k: getattr(cfg, k) for k in keep}, "inputs": input_identity(a, b)}


def _labels(cfg: CompareConfig, a: ComparedModel, b: ComparedModel, sizes: tuple[int, int]) -> tuple[LabelMatching | None, str | None]:
    frames = {m.slug: load_labels(m) for m in (a, b)}
    for m, d_sae in zip((a, b), sizes):
        f = frames[m.slug]
        if f is not None and len(f) and (f["feature"].max() >= d_sae or f["feature"].min() < 0):
            raise UserError(f"{m.labels_path} labels feature {int(f['feature'].max())} but the SAE of {m.slug} has {d_sae} "
                            "features; the labels belong to another SAE - re-run `autointerp explain --overwrite`")
    missing = [slug for slug, f in frames.items() if f is None]
    if missing:
        return None, f"no labels for {', '.join(missing)}: {EXPLAIN_HINT}"
    empty = [slug for slug, f in frames.items() if len(f) == 0]
    if empty:
        return None, f"no successful labels for {', '.join(empty)}: re-run `autointerp explain` (all labels failed)"
    spaces = [label_space(frames[m.slug], cfg.embedder) for m in (a, b)]
    return match_labels(spaces[0], spaces[1], cfg.seed), None


def compare_pair(run_dir: Path, a: ComparedModel, b: ComparedModel, cfg: CompareConfig, *, overwrite: bool = False,
                 progress: bool = True, pair: PairDir | None = None) -> CompareOutcome:
    """Match ``a`` against ``b`` into ``pair`` (default: the run's ``compare/<A>__<B>``; the controls pass theirs)."""
    cfg.validate()
    pair = pair or RunDir(run_dir).pair(a.slug, b.slug)
    out = pair.root
    docs = check_same_corpus(run_dir, a, b)
    act_identity = _activation_identity(cfg, a, b)
    settings, inputs = dataclasses.asdict(cfg), {"activation": act_identity, "extra": extra_identity(a, b)}
    decision = decide(StageRecord.load(pair.record), settings, inputs, overwrite=overwrite, where=out)
    if decision is Decision.REUSE and all(p.is_file() for p in pair.outputs()):
        if not pair.label_priority.is_file():  # a comparison made before explain read its rankings from there
            write_label_priority(pair, (a.slug, b.slug), (a.model_dir, b.model_dir))
        return CompareOutcome(out, True, read_json(pair.stats))
    if overwrite:
        for level in ("word", "document"):
            pair.cache_file(level).unlink(missing_ok=True)
        pair.representation_cache.unlink(missing_ok=True)

    levels = activation_levels(a, b, docs, cfg, act_identity, pair, progress)
    primary = levels["word"] if "word" in levels else levels["document"]
    labels, label_reason = _labels(cfg, a, b, primary.corr.shape)
    if label_reason:
        log.info("label matching skipped: %s", label_reason)

    sides = {side: side_domains(m, ~(dead | rare), cfg.domains, cfg.embedder)
             for side, m, dead, rare in (("a", a, primary.corr.dead_a, primary.rare_a), ("b", b, primary.corr.dead_b, primary.rare_b))}
    domains = {side: found.domains for side, found in sides.items()}
    matches = matches_table(primary, labels, domains, cfg.combined_weight)
    entities = entities_of(docs)
    spans = {m.slug: exemplar_spans(m.exemplars_path, d, entities) for m, d in ((a, primary.corr.shape[0]), (b, primary.corr.shape[1]))}
    specificity = {"a": label_specificity(labels.a.embeddings) if labels else None,
                   "b": label_specificity(labels.b.embeddings) if labels else None}
    feats = features_table(a.slug, b.slug, primary, labels, domains, spans, specificity)
    stats = _stats(cfg, a, b, primary, levels, labels, label_reason, matches, spans, sides)
    stats["abstraction"]["label_specificity"] = compare_specificity(specificity["a"], specificity["b"])
    stats["abstraction"]["entity_source"] = saved_entity_source(RunDir(run_dir).corpus)
    stats["abstraction"]["n_entities"] = len(set(entities.values()))
    calibration = calibration_record(stats, representation(a, b, docs, cfg, act_identity, pair, progress))
    stats["calibration"] = calibration

    write_parquet(matches, pair.matches, MATCHES_SCHEMA)
    null = pd.DataFrame({"corr": primary.null.samples.astype(np.float32), "permutation": primary.null_permutation.astype(np.int32)})
    write_parquet(null, pair.null)
    write_parquet(feats, pair.features)
    write_json(pair.stats, stats)
    write_json(pair.calibration, calibration)
    write_label_priority(pair, (a.slug, b.slug), (a.model_dir, b.model_dir))
    StageRecord("compare", settings, inputs).save(pair.record)
    return CompareOutcome(out, False, stats)


def _stats(cfg, a, b, primary, levels, labels, label_reason, matches: pd.DataFrame, spans, sides: dict) -> dict:
    act = matches[matches["method"] != "label"]
    lab = matches[matches["method"] != "activation"]
    shared = act[act["shared"]]
    agreement = _agreement(matches)
    tests = {}
    for metric in ("top_entities_spanned", "top_docs_spanned"):
        (xa, full_a), (xb, full_b) = abstraction_sample(spans[a.slug], metric), abstraction_sample(spans[b.slug], metric)
        tests[metric] = compare_abstraction(a.slug, xa, b.slug, xb, metric, min_effect=cfg.claim_min_effect).as_dict() | {"n_top_windows": [full_a, full_b]}
    v = primary.assignment.values
    matching = primary.matching_summary()
    # over the pairs a dense matching makes (min of the live counts): the sparse one leaves the rest unmatched
    slots = len(v) + min(matching["n_unmatched_a"], matching["n_unmatched_b"])
    return {
        "model_a": a.slug, "model_b": b.slug, "unit": primary.level, "n_units": int(primary.corr.n_units),
        "n_features_a": int(primary.corr.shape[0]), "n_features_b": int(primary.corr.shape[1]),
        "n_dead_a": int(primary.corr.dead_a.sum()), "n_dead_b": int(primary.corr.dead_b.sum()),
        "min_support": cfg.min_support, "n_rare_a": int(primary.rare_a.sum()), "n_rare_b": int(primary.rare_b.sum()),
        **matching,
        "lexical": primary.lexical_summary or {"available": False, "reason": "word level only (the primary unit is documents)"},
        "null": {"threshold": primary.null.threshold, "alpha": cfg.null_alpha, "n_samples": len(primary.null.samples),
                 "n_unmatched": primary.null.n_unmatched,
                 "method": f"{cfg.null_method}: (1 - alpha) quantile of Hungarian-matched correlations over "
                           f"{int(primary.null_permutation.max()) + 1 if len(primary.null_permutation) else 0} document derangement(s) between the models",
                 "quantiles": _quantiles(primary.null.samples)},
        "n_shared": len(shared),
        "activation": {"n_pairs": len(v), "mean_corr": float(v.mean()) if len(v) else None,
                       "median_corr": float(np.median(v)) if len(v) else None, "quantiles": _quantiles(v),
                       "fraction_shared": float(len(shared) / slots) if slots else None},
        "label": {"available": labels is not None, "reason": label_reason, "n_pairs": len(lab),
                  "mean_similarity": float(lab["label_similarity"].mean()) if len(lab) else None,
                  "n_labelled_a": len(labels.a.features) if labels else 0, "n_labelled_b": len(labels.b.features) if labels else 0},
        "agreement": agreement,
        "domains": domain_counts(list(cfg.domains), sides["a"], sides["b"], shared["domain"]),
        "abstraction": tests["top_entities_spanned"] | {"documents": tests["top_docs_spanned"]},
        "levels": {name: r.summary() for name, r in levels.items()},
        "intervals": primary.intervals(),
        "definitions": DEFINITIONS,
    }


def _quantiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    qs = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    return {f"q{int(q * 100):02d}": float(x) for q, x in zip(qs, np.quantile(values, qs))} | {"max": float(np.max(values))}


def _agreement(matches: pd.DataFrame, n_examples: int = 20) -> dict:
    """Same partner from both matchings? Counted over A features that got a partner from each."""
    by_a = {}
    for method in ("activation", "label"):
        rows = matches[matches["method"].isin([method, "both"])]
        by_a[method] = dict(zip(rows["feature_a"].tolist(), rows["feature_b"].tolist()))
    common = sorted(set(by_a["activation"]) & set(by_a["label"]))
    n_both = int((matches["method"] == "both").sum())
    act = matches[matches["method"] != "label"]
    disagree = act[act["feature_a"].isin([f for f in common if by_a["activation"][f] != by_a["label"][f]])]
    disagree = disagree.sort_values("activation_corr", ascending=False).head(n_examples)
    label_partner = {f: by_a["label"][f] for f in disagree["feature_a"].tolist()}
    return {
        "n_both": n_both, "n_comparable": len(common), "fraction": (n_both / len(common)) if common else None,
        "n_shared_both": int(((matches["method"] == "both") & matches["shared"]).sum()),
        "n_disagree": len(common) - n_both,
        "disagreements": [{"feature_a": int(r.feature_a), "activation_partner": int(r.feature_b),
                           "activation_corr": float(r.activation_corr), "shared": bool(r.shared),
                           "label_partner": int(label_partner[int(r.feature_a)]),
                           "label_a": r.label_a, "label_b_activation_partner": r.label_b}
                          for r in disagree.itertuples()],
    }


def run(cfg: RunConfig, *, overwrite: bool = False, models: list[ModelEntry] | None = None) -> StageResult:
    """Every pair of ``models`` (default: the configured ones), in config order (the stage contract:
    ``autointerp.stages``); the result's detail holds each pair's ``CompareOutcome``."""
    outcomes = compare_models(cfg, cfg.models if models is None else models, overwrite=overwrite)
    names = [outcome.out_dir.name for outcome in outcomes]
    return StageResult("compare", tuple(n for n, o in zip(names, outcomes) if not o.skipped),
                       tuple(n for n, o in zip(names, outcomes) if o.skipped), outcomes)


def compare_models(cfg: RunConfig, models: list[ModelEntry], *, overwrite: bool = False, progress: bool = True) -> list:
    with run_lock(cfg.run_path):
        if len(models) < 2:
            raise UserError(f"compare needs at least two models; the run config lists {', '.join(m.slug for m in models) or 'none'} - add another model to the run config (a second models entry)")
        cfg.compare.validate()
        outcomes = []
        for ea, eb in itertools.combinations(models, 2):
            a, b = model_inputs(cfg.run_path, ea), model_inputs(cfg.run_path, eb)
            outcome = compare_pair(cfg.run_path, a, b, cfg.compare, overwrite=overwrite, progress=progress)
            print_summary(outcome.out_dir, outcome.stats, outcome.skipped, names=(model_names(a), model_names(b)))
            outcomes.append(outcome)
        return outcomes
