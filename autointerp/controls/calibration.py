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
from autointerp.io import read_json
from autointerp.rundir.layout import PairDir, RunDir

# what with_controls adds to compare's calibration (a calibration.json written when the controls still merged
# themselves into it holds them: they are taken out before the controls of now are put in)
_CONTROL_KEYS = ("shared_over_ceiling", "ceiling", "floors", "controls_seconds")


def control_summary(stats: dict, seconds: float | None) -> dict:
    """What controls.json keeps of one control comparison (its own calibration, as the pair's is)."""
    cal = stats.get("calibration") or {}
    keep = ("shared_fraction", "n_shared", "n_pairs", "null_threshold", "beyond_lexical_fraction", "n_contextual",
            "n_lexical", "cka", "svcca", "mutual_knn", "intervals", "representation_bootstrap")
    return {k: cal.get(k) for k in keep} | per_model(stats) | {"seconds": seconds}


def with_controls(cal: dict, controls: dict | None, stats: dict) -> dict:
    """The pair's calibration (``stats``: the pair's stats.json) with the controls that concern it, all counted
    per model (``per_model``): model X's ceiling is the share of its features with a shared partner in a
    second SAE of X (another seed); its floor, the share with a shared partner in the random-weights copy
    of the other model."""
    out, controls = dict(cal), controls or {}
    a, b = stats.get("model_a"), stats.get("model_b")
    out |= per_model(stats)
    not_measured = dict(out.get("not_measured") or {})
    ceiling = {slug: (c.get("shared_fraction_of") or {}).get(slug) for slug, c in (controls.get("ceiling") or {}).items() if slug in (a, b)}
    if ceiling:
        out["ceiling_shared_fraction"] = ceiling
        own = out["shared_fraction_of"]
        out["shared_over_ceiling"] = {slug: (own[slug] / v if own.get(slug) is not None and v else None) for slug, v in ceiling.items()}
        out["ceiling"] = {slug: controls["ceiling"][slug] for slug in ceiling}
        not_measured.pop("ceiling_shared_fraction", None)
    floors = [f for f in controls.get("floor") or [] if {f.get("random"), f.get("against")} == {a, b}]
    if floors:
        out["floor_shared_fraction"] = {f["against"]: (f.get("shared_fraction_of") or {}).get(f["against"]) for f in floors}
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
