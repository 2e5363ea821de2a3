"""The verdict: each headline number next to its same-model ceiling and random-weights floor, with
intervals, a stated decision rule per column and two or three sentences generated from the table.

Decision rule, per column (the pair's 95% interval against the controls' 95% intervals):

* ``above_floor``: the pair's interval lies entirely above the floor's and below the ceiling's (or no
  ceiling exists for the column: raw activations of a model against itself are identical);
* ``at_ceiling``: entirely above the floor's and reaching the ceiling's (overlapping it or above it);
* ``not_above_floor``: overlapping or below the floor's, and not reaching the ceiling's;
* ``between``: overlapping both the floor's and the ceiling's (the controls are too close to place it);
* ``None``: no floor measured, or no interval (bootstrap off): no claim.

Everything is read from one comparison's calibration (``calibration.json`` with the controls put next to
it by ``controls.calibration.with_controls``); the verdict is stored there and in the report's ``report.json``.
"""

from __future__ import annotations

from autointerp.fmt import pct

CALLS = ("above_floor", "at_ceiling", "not_above_floor", "between")
REPRESENTATION = (("cka", "debiased CKA"), ("svcca", "SVCCA"), ("mutual_knn", "mutual kNN"))
RULE = ("above_floor: the pair's 95% interval lies entirely above the floor's (and below the ceiling's, or no ceiling); "
        "at_ceiling: entirely above the floor's and reaching the ceiling's; not_above_floor: overlapping or below the "
        "floor's and not reaching the ceiling's; between: overlapping both; no call where a control or an interval is missing")


def call(pair: dict, floor: dict | None, ceiling: dict | None) -> str | None:
    """The rule above on {"value", "ci": [lo, hi]} cells."""
    if not floor or not pair.get("ci") or not floor.get("ci"):
        return None
    above = pair["ci"][0] > floor["ci"][1]
    reaches = bool(ceiling and ceiling.get("ci")) and pair["ci"][1] >= ceiling["ci"][0]
    if above:
        return "at_ceiling" if reaches else "above_floor"
    return "between" if reaches else "not_above_floor"


def _cell(value, ci) -> dict | None:
    return None if value is None else {"value": value, "ci": ci}


def _fraction(summary: dict, key: str, slug: str) -> dict | None:
    return _cell((summary.get(key) or {}).get(slug), ((summary.get("ci") or {}).get(key) or {}).get(slug))


def _count(summary: dict, key: str) -> dict | None:
    """{"value", "ci"} of a count of pairs (``n_shared`` / ``n_contextual``) with its bootstrap interval."""
    return _cell(summary.get(key), (summary.get("intervals") or {}).get(key))


def _side(control: dict, slug: str) -> str | None:
    """The side of a control's comparison that stands for the real model ``slug`` (``controls.base.Control``)."""
    return next((side for side, real in (control.get("stands_for") or {}).items() if real == slug), None)


def _floor_cell(floors: list[dict], pick) -> tuple[dict | None, dict | None]:
    """(cell, floor record) of the highest floor (the conservative one) among those that measure it."""
    cells = [(c, f) for f in floors if (c := pick(f)) is not None]
    return max(cells, key=lambda cf: cf[0]["value"]) if cells else (None, None)


def verdict(cal: dict, a: str, b: str) -> dict:
    """{"columns": {name: {"value", "ci", "ceiling": {model: cell}, "floor": cell, "call", ...}}, "rule",
    "sentences"} for the pair ``a`` vs ``b``."""
    floors, ceilings = cal.get("floors") or [], cal.get("ceiling") or {}
    columns = {}
    for side, slug, other in (("a", a, b), ("b", b, a)):
        for name, key, count in (("shared", "shared_fraction_of", "n_shared"), ("beyond_words", "contextual_fraction_of", "n_contextual")):
            # a floor measures this model's column through the side that stands for it: the model itself matched
            # against a random copy of the other (its own fraction), or its random copy matched against the other
            floor, record = _floor_cell(floors, lambda f: _fraction(f, key, s) if (s := _side(f, slug)) else None)
            ceiling = {slug: c for s, rec in ceilings.items() if s == slug and (c := _fraction(rec, key, slug)) is not None}
            pair = _fraction(cal, key, slug) or {"value": None, "ci": None}
            col = pair | {"ceiling": ceiling, "floor": floor, "model": slug, "count": _count(cal, count),
                          "floor_count": _count(record, count) if record else None,
                          "ceiling_count": {s: _count(rec, count) for s, rec in ceilings.items() if s == slug},
                          "floor_title": record.get("title") if record else None,
                          "ceiling_title": {s: rec.get("title") for s, rec in ceilings.items() if s == slug}}
            col["call"] = call(pair, floor, ceiling.get(slug))
            columns[f"{name}_{side}"] = col
    for key, _ in REPRESENTATION:
        entry = cal.get(key) or {}
        pair = {"value": entry.get("value"), "ci": entry.get("ci")}
        floor, record = _floor_cell(floors, lambda f: _cell((f.get(key) or {}).get("value"), (f.get(key) or {}).get("ci")) if f.get(key) else None)
        columns[key] = pair | {"ceiling": {}, "floor": floor, "call": call(pair, floor, None), "floor_title": record.get("title") if record else None}
    return {"columns": columns, "rule": RULE, "sentences": sentences(columns, cal, a, b)}


def _ci(cell: dict | None, fmt=pct) -> str:
    if not cell or cell.get("value") is None:
        return "n/a"
    ci = cell.get("ci")
    return fmt(cell["value"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


_SHARED = {"not_above_floor": "is no more than a random network's", "above_floor": "is above a random network's",
           "at_ceiling": "is above a random network's and reaches the same-model ceiling",
           "between": "cannot be placed: its interval overlaps both the random network's and the same-model ceiling's"}


def sentences(columns: dict, cal: dict, a: str, b: str) -> list[str]:
    """Two or three sentences from the table: word-level sharing, sharing beyond words, raw activations.
    Only what the rule says; a missing control is named with the reason."""
    out = []
    missing = cal.get("not_measured") or {}
    sa = columns["shared_a"]
    if sa["call"] is None:
        reason = missing.get("floor_shared_fraction") or ("no intervals ([compare] bootstrap = 0)" if sa.get("value") is not None else "not measured")
        out.append(f"No claim about word-level sharing: the random-weights floor or an interval is missing ({reason}).")
    else:
        parts = [f"`{columns[c]['model']}` {_ci(columns[c])} vs {_ci(columns[c]['floor'])}" for c in ("shared_a", "shared_b") if columns[c]["floor"]]
        tail = "" if columns["shared_b"]["call"] in (None, sa["call"]) else f" (for `{b}`: {columns['shared_b']['call'].replace('_', ' ')})"
        out.append(f"Word-level sharing {_SHARED[sa['call']]}{tail}: features with a shared partner, "
                   + "; ".join(parts) + " against random weights.")
    ba = columns["beyond_words_a"]
    if ba["call"] is not None and ba.get("count"):
        n = ba["count"]["value"]
        floor_n = (ba.get("floor_count") or {}).get("value")
        ceiling_n = ((ba.get("ceiling_count") or {}).get(a) or {}).get("value")
        times = n / floor_n if floor_n else None
        ratio = (f"{times:.0f} times the floor's {floor_n:,}" if times >= 10 else f"{times:.1f} times the floor's {floor_n:,}") if times is not None \
            else f"against {floor_n} for the random-weights floor"
        frac = ba["ceiling"].get(a)
        ceil = f" and {ba['value'] / frac['value']:.2f} of the same-model ceiling ({ceiling_n:,} features)" if frac and frac["value"] and ceiling_n is not None else ""
        verb = {"above_floor": "above the floor", "at_ceiling": "above the floor, at the ceiling",
                "not_above_floor": "not above the floor", "between": "overlapping both floor and ceiling"}[ba["call"]]
        out.append(f"Beyond word identity the models share {n:,} features ({_ci(ba)} of `{a}`'s), {ratio}{ceil}: {verb}.")
    elif ba.get("value") is not None:
        out.append("No claim beyond word identity: the random-weights floor or an interval is missing.")
    rep = [(name, c) for key, name in REPRESENTATION if (c := columns[key]).get("value") is not None and c["floor"]]
    if rep and all(c["call"] == "above_floor" for _, c in rep):
        out.append("Raw activations are more alike than against random weights on every measure: "
                   + "; ".join(f"{name} {_ci(c, _num)} vs {_ci(c['floor'], _num)}" for name, c in rep) + ".")
    elif rep:
        out.append("Raw activations against random weights: " + "; ".join(
            f"{name} {_ci(c, _num)} vs {_ci(c['floor'], _num)} ({(c['call'] or 'no call').replace('_', ' ')})" for name, c in rep) + ".")
    return out
