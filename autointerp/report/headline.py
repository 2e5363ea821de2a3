"""Which layers of the two models align best (``autointerp sweep``), next to the layers the run compares.
(The answer itself is the verdict table: ``report.verdict``.)"""

from __future__ import annotations

from autointerp.report.fmt import count, num

_BASELINES = (("cka", "debiased linear CKA"), ("svcca", "SVCCA"), ("mutual_knn", "mutual kNN"))


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
