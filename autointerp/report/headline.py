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
        sub = cal.get("representation_subsample") or {}
        where = [f"{count(sub['units'])} words of {count(sub['documents'])} documents"] if sub.get("units") is not None else []
        where += [f"{num(cal['representation_seconds'], 0)} s"] if cal.get("representation_seconds") is not None else []
        parts.append("raw activations, word-pooled" + (f" ({', '.join(where)})" if where else "") + ": " + ", ".join(rep))
    parts += _controls(cal)
    rare = (cal.get("n_rare_a") or 0) + (cal.get("n_rare_b") or 0)
    if rare:
        parts.append(f"{count(cal.get('n_rare_a'))} + {count(cal.get('n_rare_b'))} features active on fewer than "
                     f"{count(cal.get('min_support'))} units were left out of matching")
    return "; ".join(parts) + "."


def _per_model(cal: dict) -> str | None:
    """Of each model's matchable features, the share with a shared partner, between its ceiling and floor."""
    own, n = cal.get("shared_fraction_of") or {}, cal.get("n_matchable") or {}
    ceiling, floor = cal.get("ceiling_shared_fraction") or {}, cal.get("floor_shared_fraction") or {}
    if not isinstance(ceiling, dict) or not isinstance(floor, dict) or not own:
        return None
    floors = {f.get("against"): f.get("random") for f in cal.get("floors") or []}
    parts = []
    for slug, value in own.items():
        bounds = []
        if ceiling.get(slug) is not None:
            bounds.append(f"same-model ceiling {pct(ceiling[slug])}, i.e. {num(value / ceiling[slug], 2)}x of it" if ceiling[slug] else
                          f"same-model ceiling {pct(ceiling[slug])}")
        if floor.get(slug) is not None:
            bounds.append(f"random-weights floor {pct(floor[slug])} against random `{floors.get(slug)}`")
        parts.append(f"{pct(value)} of `{slug}`'s {count(n.get(slug))}" + (f" ({'; '.join(bounds)})" if bounds else ""))
    return "counted per model, the share of its matchable features with a shared partner: " + ", and ".join(parts)


def _controls(cal: dict) -> list[str]:
    """What the controls say about the fraction, or which control was not measured and why."""
    parts = []
    line = _per_model(cal)
    if line:
        parts.append(line)
    own, floor = cal.get("shared_fraction_of") or {}, cal.get("floor_shared_fraction") or {}
    for slug, f in (floor.items() if isinstance(floor, dict) else []):
        if own.get(slug) is not None and f is not None and own[slug] <= f:
            parts.append(f"for `{slug}` the sharing is not above the random-weights floor: at this level it comes from the tokenizer and the text")
    for f in cal.get("floors") or []:
        if f.get("beyond_lexical_fraction") is not None:
            parts.append(f"against random-weights `{f['random']}`, {pct(f['beyond_lexical_fraction'])} of the shared pairs are shared beyond word identity")
        rep = [f"{name} {num(f[key]['value'])}" for key, name in _BASELINES if f.get(key)]
        if rep:
            parts.append(f"raw activations of `{f['against']}` vs random-weights `{f['random']}`: " + ", ".join(rep))
    if cal.get("controls_seconds") is not None:
        parts.append(f"the controls cost {num(cal['controls_seconds'], 0)} s")
    labels = {"ceiling_shared_fraction": "the same-model ceiling", "floor_shared_fraction": "the random-weights floor"}
    for key, reason in (cal.get("not_measured") or {}).items():
        if key in labels:
            parts.append(f"{labels[key]}: {reason}")
    return parts


def sweep_line(sweep: dict | None, layers: dict[str, int | None]) -> str:
    """Which blocks of the two models align best (``autointerp sweep``), next to the layers this run compares."""
    if not sweep or not sweep.get("complete"):
        return "Best-aligned layers: not measured (`autointerp sweep`, or `[sweep] in_run = true`)."
    s = sweep.get("summary") or {}
    a, b = (s.get("model_a") or {}).get("slug"), (s.get("model_b") or {}).get("slug")
    best = []
    for key, name in _BASELINES:
        cell = ((s.get("metrics") or {}).get(key) or {}).get("best")
        if cell:
            tested = [e for e in s.get("null") or [] if isinstance(e, dict) and key in (e.get("best_for") or [])]
            null = (tested[0].get(key) or {}) if tested else {}
            tail = f", null {num(null.get('null_mean'))}" if null.get("null_mean") is not None else ""
            best.append(f"{name} at blocks {cell['layer_a']} / {cell['layer_b']} ({num(cell['value'])}{tail})")
    here = f"; this run compares blocks {layers.get(a)} / {layers.get(b)}" if a in layers and b in layers else ""
    return (f"Best-aligned layers of `{a}` / `{b}` (`autointerp sweep`, raw activations of every block pair, "
            f"{count(s.get('n_units'))} words): " + "; ".join(best) + here + ".")
