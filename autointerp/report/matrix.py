"""The sharing matrix of a run with three or more models (issue 27): the verdict's columns for every pair at once.

Why: with N models a reader gets N(N-1)/2 verdicts; the question "which models share what" is a matrix. Cell
(row i, column j) holds model i's share of features shared with model j (above the pair's null), the share
shared beyond word identity, and the pair's linear CKA, each with its 95% document-bootstrap interval and the
verdict's call (``compare.verdict``: above_floor / at_ceiling / between / not_above_floor). The diagonal holds
each model's same-model ceiling (a second SAE seed); the floor row each model's random-weights floor, the
largest (most conservative) floor among its pairs. Everything is read from the pairs' calibration
(``verdict``, with the controls: ``controls.calibration``): nothing is recomputed here.
"""

from __future__ import annotations

from autointerp.report.artifacts import RunInputs
from autointerp.report.fmt import cell_ci, md_table

MEASURES = {"shared": "shared", "beyond_words": "beyond_words", "cka": "cka"}  # matrix measure -> verdict column stem
TITLES = {"shared": "shared features (share of the row model's live features)",
          "beyond_words": "shared beyond word identity (share of the row model's live features)",
          "cka": "linear CKA of the raw activations (symmetric)"}
MIN_MODELS = 3


def _column(verdict: dict, stem: str, slug: str) -> dict | None:
    """The verdict column of ``stem`` for model ``slug`` (``shared_a`` / ``beyond_words_b`` / ``cka``)."""
    cols = verdict.get("columns") or {}
    if stem in cols:
        return cols[stem]
    return next((c for key, c in cols.items() if key.startswith(stem + "_") and c.get("model") == slug), None)


def _cell(col: dict | None) -> dict | None:
    if not col or col.get("value") is None:
        return None
    return {"value": col["value"], "ci": col.get("ci"), "call": col.get("call")}


def sharing_matrix(run: RunInputs) -> dict | None:
    """{"models": [...], "cells": {measure: [[cell | None]]}, "floor": {measure: [cell | None]}} for a run of
    ``MIN_MODELS`` or more models; None for fewer (the pair verdict says it all)."""
    slugs = [m.slug for m in run.models]
    if len(slugs) < MIN_MODELS:
        return None
    index = {s: i for i, s in enumerate(slugs)}
    n = len(slugs)
    cells = {m: [[None] * n for _ in range(n)] for m in MEASURES}
    floor: dict[str, list] = {m: [None] * n for m in MEASURES}
    for p in run.pairs:
        verdict = p.calibration.get("verdict")
        if not verdict or p.a not in index or p.b not in index:
            continue
        for measure, stem in MEASURES.items():
            for row, other in ((p.a, p.b), (p.b, p.a)):
                col = _column(verdict, stem, row)
                i, j = index[row], index[other]
                cells[measure][i][j] = _cell(col)
                if col is None:
                    continue
                ceiling = (col.get("ceiling") or {}).get(row)
                if ceiling and ceiling.get("value") is not None and cells[measure][i][i] is None:
                    cells[measure][i][i] = {"value": ceiling["value"], "ci": ceiling.get("ci"), "call": "ceiling"}
                f = col.get("floor")
                if f and f.get("value") is not None and (floor[measure][i] is None or f["value"] > floor[measure][i]["value"]):
                    floor[measure][i] = {"value": f["value"], "ci": f.get("ci"), "call": "floor"}
    if not any(c for rows in cells["shared"] for c in rows):
        return None
    return {"models": slugs, "cells": cells, "floor": floor}


def matrix_section(matrix: dict | None, plot: str | None = None) -> list[str]:
    """report.md's "Sharing matrix" section (empty for a two-model run)."""
    if not matrix:
        return []
    slugs = matrix["models"]
    out = ["## Sharing matrix", "",
           f"{len(slugs)} models, every pair compared. Row model i, column model j: the share of i's live features "
           "matched one-to-one with a feature of j above the pair's null (percent), with its 95% document-bootstrap "
           "interval and the verdict's call against the random-weights floor and the same-model ceiling. The diagonal "
           "is the model's same-model ceiling (a second SAE seed); the last row its random-weights floor (the largest "
           "among its pairs). A cell says more than word identity only where the beyond-words table clears the floor.", ""]
    for measure, title in TITLES.items():
        kind = "num" if measure == "cka" else "points"
        rows = [[f"`{s}`"] + [cell_ci(c, kind, with_call=True) for c in matrix["cells"][measure][i]] for i, s in enumerate(slugs)]
        rows.append(["floor (random weights)"] + [cell_ci(c, kind, with_call=True) for c in matrix["floor"][measure]])
        out += [f"**{title}**", "", md_table(["row \\ column"] + [f"`{s}`" for s in slugs], rows), ""]
    if plot:
        out += [f"![Sharing matrix]({plot})", ""]
    return out


def matrix_console(matrix: dict | None):
    """A rich table of the shared and beyond-words shares (the console summary of a many-model run)."""
    from rich.table import Table

    if not matrix:
        return None
    table = Table(title="sharing matrix: % of the row model's features shared / beyond words (diagonal: ceiling)")
    table.add_column("row \\ column")
    for s in matrix["models"]:
        table.add_column(s, justify="right")
    for i, s in enumerate(matrix["models"]):
        cells = []
        for j in range(len(matrix["models"])):
            a, b = matrix["cells"]["shared"][i][j], matrix["cells"]["beyond_words"][i][j]
            cells.append(f"{100 * a['value']:.1f} / {100 * b['value']:.1f}" if a and b else "n/a")
        table.add_row(s, *cells)
    floor = [f"{100 * a['value']:.1f} / {100 * b['value']:.1f}" if a and b else "n/a"
             for a, b in zip(matrix["floor"]["shared"], matrix["floor"]["beyond_words"])]
    table.add_row("floor", *floor)
    return table


def by_scale(run: RunInputs, matrix: dict | None) -> dict | None:
    """Whether sharing with the reference model (the run's first) rises with the other models' size: each other
    model's parameter count (harvest.json ``model.n_params``) and the share of the reference's features it shares
    (and beyond words), with intervals; the call compares the smallest and the largest under the verdict's rule
    (intervals apart: "rises" / "falls", else no claim). Other layers of the reference model are left out. None
    without two other models of known, distinct sizes."""
    if not matrix:
        return None
    params = {m.slug: ((m.manifest or {}).get("model") or {}).get("n_params") for m in run.models}
    spec = {m.slug: getattr(m, "spec", None) or m.slug for m in run.models}
    ref = matrix["models"][0]
    # another layer of the reference model itself is no point on a size axis
    others = [s for s in matrix["models"][1:] if params.get(s) and spec.get(s) != spec.get(ref)]
    if len(others) < 2 or len({params[s] for s in others}) < 2:
        return None
    others.sort(key=lambda s: params[s])
    j = {s: i for i, s in enumerate(matrix["models"])}
    rows = [{"model": s, "n_params": params[s], "shared": matrix["cells"]["shared"][0][j[s]],
             "beyond_words": matrix["cells"]["beyond_words"][0][j[s]]} for s in others]
    out = {"reference": ref, "models": rows}
    for measure in ("shared", "beyond_words"):
        small, large = rows[0][measure], rows[-1][measure]
        if not small or not large or not small.get("ci") or not large.get("ci"):
            out[f"{measure}_call"] = None
        elif large["ci"][0] > small["ci"][1]:
            out[f"{measure}_call"] = "rises"
        elif large["ci"][1] < small["ci"][0]:
            out[f"{measure}_call"] = "falls"
        else:
            out[f"{measure}_call"] = "no_claim"
    return out


def scale_section(scale: dict | None) -> list[str]:
    if not scale:
        return []
    rows = [[f"`{r['model']}`", f"{r['n_params'] / 1e6:,.0f}M", cell_ci(r["shared"], "points", with_call=True), cell_ci(r["beyond_words"], "points", with_call=True)] for r in scale["models"]]
    said = {"rises": "rises with size (the largest model's interval lies above the smallest's)",
            "falls": "falls with size (the largest model's interval lies below the smallest's)",
            "no_claim": "does not change detectably with size (the intervals overlap): no claim", None: "cannot be read (no intervals)"}
    return [f"**Sharing with `{scale['reference']}` by model size** (share of `{scale['reference']}`'s live features):", "",
            md_table(["model", "parameters", "shared", "beyond words"], rows), "",
            f"Sharing {said[scale['shared_call']]}; beyond words it {said[scale['beyond_words_call']]}.", ""]
