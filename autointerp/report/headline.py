"""The calibrated answer: one short paragraph per pair of models, every number read from the comparison's
calibration (stats.json ``calibration`` = calibration.json), each next to what it is measured against."""

from __future__ import annotations

from autointerp.report.artifacts import PairInputs
from autointerp.report.fmt import count, num, pct, pvalue

_BASELINES = (("cka", "debiased linear CKA"), ("svcca", "SVCCA"), ("mutual_knn", "mutual kNN"))


def headline(p: PairInputs) -> str | None:
    """None when the comparison predates calibration (re-run `autointerp compare`)."""
    cal = (p.stats or {}).get("calibration")
    if not cal:
        return None
    parts = [f"**`{p.a}` vs `{p.b}`**: {pct(cal.get('shared_fraction'))} of activation-matched feature pairs are shared "
             f"({count(cal.get('n_shared'))} of {count(cal.get('n_pairs'))} above the document-derangement null, r > {num(cal.get('null_threshold'))})"]
    if cal.get("beyond_lexical_fraction") is not None:
        parts.append(f"{pct(cal['beyond_lexical_fraction'])} of the shared pairs are shared beyond word identity "
                     f"({count(cal.get('n_contextual'))} contextual, {count(cal.get('n_lexical'))} lexical: the same word in both models)")
    rep = [f"{name} {num(cal[key]['value'])} (null {num(cal[key]['null_mean'])}, p {pvalue(cal[key]['p_value'])})"
           for key, name in _BASELINES if cal.get(key)]
    if rep:
        cost = f" ({num(cal['representation_seconds'], 0)} s)" if cal.get("representation_seconds") is not None else ""
        parts.append(f"raw activations, word-pooled{cost}: " + ", ".join(rep))
    not_measured = cal.get("not_measured") or {}
    gaps = [what for key, what in (("ceiling_shared_fraction", "the same-model ceiling (same model, other SAE seed)"),
                                   ("floor_shared_fraction", "the random-weights floor")) if key in not_measured]
    if gaps:
        parts.append(f"{' and '.join(gaps)}: not measured yet")
    rare = (cal.get("n_rare_a") or 0) + (cal.get("n_rare_b") or 0)
    if rare:
        parts.append(f"{count(cal.get('n_rare_a'))} + {count(cal.get('n_rare_b'))} features active on fewer than "
                     f"{count(cal.get('min_support'))} units were left out of matching")
    return "; ".join(parts) + "."
