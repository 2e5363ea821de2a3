"""The calibration a reader sees: compare's ``calibration.json`` of a pair with the controls that concern it.

Why here, assembled on reading: compare writes what it computed (``compare.calibration``) and the controls
write ``controls.json`` (every control's sharing); neither rewrites the other's files. This package is the
lowest that may read both, so ``pair_calibration`` is the one place they are put together, and every reader
(the report, its crosscoder section) calls it instead of reading calibration.json.
"""

from __future__ import annotations

from pathlib import Path

from autointerp.compare.calibration import NOT_MEASURED, per_model
from autointerp.compare.verdict import verdict
from autointerp.controls.base import RANDOM_FLOOR_TITLE, SEED_CEILING_TITLE
from autointerp.io import read_json
from autointerp.rundir.layout import PairDir, RunDir

# what with_controls adds to compare's calibration (a calibration.json written when the controls still merged
# themselves into it holds them: they are taken out before the controls of now are put in)
_CONTROL_KEYS = ("shared_over_ceiling", "ceiling", "floors", "controls_seconds")


def control_summary(stats: dict, seconds: float | None, cost: dict | None = None) -> dict:
    """What controls.json keeps of one control comparison (its own calibration, as the pair's is): ``seconds``
    (wall, which the calibration reads) and ``cost`` (``autointerp.rundir.cost``) when it ran, None when it
    reused its outputs (the stage then keeps the ones recorded when it ran)."""
    cal = stats.get("calibration") or {}
    keep = ("shared_fraction", "n_shared", "n_pairs", "null_threshold", "beyond_lexical_fraction", "n_contextual",
            "n_lexical", "cka", "svcca", "mutual_knn", "intervals", "representation_bootstrap")
    return {k: cal.get(k) for k in keep} | per_model(stats) | {"seconds": seconds, "cost": cost}


def entries(record: dict | None) -> list[dict]:
    """Every control summary of a controls.json record, in the order they ran. A record written before the
    controls were registered (``{"ceiling": {model: summary}, "floor": [summary]}``) is read as the two
    built-in controls."""
    record = record or {}
    if "controls" in record:
        return [e for made in (record["controls"] or {}).values() for e in made or []]
    out = []
    for slug, c in (record.get("ceiling") or {}).items():
        out.append(c | {"control": "ceiling", "role": "ceiling", "title": SEED_CEILING_TITLE,
                        "label": f"{slug} vs {slug}@seed{c.get('seed')}", "stands_for": {slug: slug}})
    for f in record.get("floor") or []:
        real, copy = f.get("against"), f"{f.get('random')}@random"
        out.append(f | {"control": "floor", "role": "floor", "title": RANDOM_FLOOR_TITLE,
                        "label": f"{real} vs {copy}", "stands_for": {real: real, copy: f.get("random")}})
    return out


def with_controls(cal: dict, controls: dict | None, stats: dict) -> dict:
    """The pair's calibration (``stats``: the pair's stats.json) with the controls that concern it, all counted
    per model (``per_model``): model X's ceiling is the share of its features with a shared partner in a
    second SAE of X (another seed); its floor, the share with a shared partner in a comparison that needs no
    learned weights (X against a random-weights copy of the other model, or that copy's own share). A control
    concerns the pair when every real model it stands for is one of the pair's; the first ceiling of each model
    is its ceiling, and the verdict reads the highest floor."""
    out, controls = dict(cal), controls or {}
    a, b = stats.get("model_a"), stats.get("model_b")
    out |= per_model(stats)
    not_measured = dict(out.get("not_measured") or {})
    mine = [e for e in entries(controls) if e.get("stands_for") and set(e["stands_for"].values()) <= {a, b}]
    ceilings: dict[str, dict] = {}
    for e in mine:
        if e.get("role") == "ceiling":
            for side, real in e["stands_for"].items():
                if side == real:
                    ceilings.setdefault(real, e)
    if ceilings:
        out["ceiling_shared_fraction"] = {slug: (e.get("shared_fraction_of") or {}).get(slug) for slug, e in ceilings.items()}
        own = out["shared_fraction_of"]
        out["shared_over_ceiling"] = {slug: (own[slug] / v if own.get(slug) is not None and v else None)
                                      for slug, v in out["ceiling_shared_fraction"].items()}
        out["ceiling"] = ceilings
        not_measured.pop("ceiling_shared_fraction", None)
    floors = [e for e in mine if e.get("role") == "floor"]
    if floors:
        # each real model's share in the comparisons it takes part in as itself (the pair's own column)
        out["floor_shared_fraction"] = {real: (f.get("shared_fraction_of") or {}).get(side)
                                        for f in floors for side, real in f["stands_for"].items() if side == real}
        out["floors"] = floors
        not_measured.pop("floor_shared_fraction", None)
    for key, reason in (controls.get("off") or {}).items():
        if key in not_measured:
            not_measured[key] = reason
    out["not_measured"] = not_measured
    out["controls_seconds"] = controls.get("seconds")
    out["verdict"] = verdict(out, a, b)
    return out


def _compare_only(cal: dict) -> dict:
    """``cal`` as compare computed it: controls merged in by an older ``autointerp controls`` taken out."""
    out = {k: v for k, v in cal.items() if k not in _CONTROL_KEYS}
    not_measured = dict(out.get("not_measured") or {})
    for key in ("ceiling_shared_fraction", "floor_shared_fraction"):
        out[key] = None
        not_measured[key] = NOT_MEASURED
    return out | {"not_measured": not_measured}


def pair_calibration(run_dir: Path, pair: PairDir, stats: dict | None = None) -> dict:
    """The calibration of ``pair`` (compare's, from its stats.json; ``stats`` when already read) with the
    controls of ``run_dir`` that concern it; compare's alone when ``autointerp controls`` has not run. {} when
    the pair has not been compared."""
    if stats is None:
        try:
            stats = read_json(pair.stats)
        except (OSError, ValueError):
            return {}
    cal = stats.get("calibration") or {}
    record = RunDir(run_dir).controls.record
    if not cal or not record.is_file():
        return cal
    return with_controls(_compare_only(cal), read_json(record), stats)
