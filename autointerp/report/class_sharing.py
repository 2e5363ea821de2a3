"""Each model's feature-class mix and the sharing per class: the pair, the same-model ceiling, the floor.

Why: "33% of Gemma's features are shared" mixes token detectors (which any model with the same words shares)
with contextual and topical features (the concepts the question is about). Per class, the share of a model's
live features of that class that are shared (activation matching above its null), and shared beyond word
identity (matches kind "contextual"), read against the same numbers for the same-model ceiling (a second SAE
seed) and the random-weights floor (the model against a random-weights copy of the other), where they ran.
Classes come from the exemplars' ``feature_class`` (``exemplars.feature_classes``); a model's floor column is
available when the model is the real side of a floor comparison.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.exemplars.feature_classes import read_classes
from autointerp.report.fmt import count, md_table, pct, pct_ci
from autointerp.rundir.layout import PairDir, RunDir
from autointerp.io import read_parquet

CLASS_ORDER = ("token", "contextual", "topical", "other")


def _sides(pair: PairDir, slug: str) -> tuple[pd.DataFrame, str] | None:
    """The pair's matches and which column holds ``slug``'s features (None when it is not there)."""
    from autointerp.io import read_json

    if not pair.matches.is_file() or not pair.stats.is_file():
        return None
    stats = read_json(pair.stats)
    side = "feature_a" if stats.get("model_a") == slug else "feature_b" if stats.get("model_b") == slug else None
    if side is None:
        return None
    m = read_parquet(pair.matches)
    return m[m["method"].isin(["activation", "both"])], side


def _replicates(pair: PairDir | None, slug: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Per kind ("shared", "beyond"): (``slug``'s feature of each matched pair, [B, pairs] bool: shared there in
    each document-bootstrap replicate), read and unpacked once per comparison; None without replicates."""
    from autointerp.compare.activation import pair_replicates
    from autointerp.io import read_json

    reps = pair_replicates(pair) if pair is not None else None
    if reps is None:
        return None
    side = reps.rows if read_json(pair.stats).get("model_a") == slug else reps.cols
    return {kind: (side, np.unpackbits(bits, axis=1, count=len(side)).astype(bool))
            for kind, bits in (("shared", reps.shared_bits), ("beyond", reps.contextual_bits)) if bits is not None}


def _interval(replicates: dict | None, members: set[int], kind: str, estimate: int) -> list[float] | None:
    """The interval of the share of ``members`` shared (``kind`` "shared") or shared beyond words ("beyond"):
    the replicates of the count over the matched pairs whose side is a member, centred on ``estimate`` as the
    verdict's counts are (``compare.bootstrap``); None without replicates."""
    from autointerp.compare.bootstrap import percentile_interval

    if not replicates or kind not in replicates or not members:
        return None
    side, flags = replicates[kind]
    ci = percentile_interval(flags[:, np.isin(side, list(members))].sum(axis=1), centre=estimate)
    return None if ci is None else [min(max(ci[0], 0.0), len(members)) / len(members), min(max(ci[1], 0.0), len(members)) / len(members)]


def _shared(pair: PairDir, slug: str) -> tuple[set[int], set[int]] | None:
    """``slug``'s shared features and those shared beyond word identity in one comparison."""
    found = _sides(pair, slug)
    if found is None:
        return None
    m, side = found
    shared = m[m["shared"].fillna(False).astype(bool)]
    beyond = shared[shared["kind"] == "contextual"] if "kind" in shared.columns else shared.iloc[:0]
    return {int(f) for f in shared[side]}, {int(f) for f in beyond[side]}


def class_sharing(run_dir: Path, slug: str) -> pd.DataFrame | None:
    """Per class of ``slug``'s live features: count, share of the live features, and shared / beyond-words
    fractions in the pair, the ceiling and the floor (NaN where that comparison did not run)."""
    run = RunDir(Path(run_dir))
    classes = read_classes(run.model(slug).feature_stats)
    if not classes:
        return None
    sources = {"pair": next((p for p in run.pairs() if slug in p.names), None), "ceiling": run.controls.ceiling_pair(slug)}
    floors = sorted(run.controls.root.joinpath("floor").glob(f"{slug}__*")) if run.controls.root.is_dir() else []
    sources["floor"] = PairDir(floors[0]) if floors else None
    sets = {name: _shared(pair, slug) if pair is not None else None for name, pair in sources.items()}
    replicates = {name: _replicates(pair, slug) if sets[name] is not None else None for name, pair in sources.items()}
    live = {f: c for f, c in classes.items() if c != "dead"}
    rows = []
    for cls in CLASS_ORDER:
        members = {f for f, c in live.items() if c == cls}
        row = {"class": cls, "features": len(members), "share_of_live": len(members) / max(len(live), 1)}
        for name, found in sets.items():
            for kind, subset in zip(("shared", "beyond"), found or (None, None)):
                n = len(members & subset) if subset is not None else None
                row[f"{name}_{kind}"] = n / len(members) if n is not None and members else float("nan")
                row[f"{name}_{kind}_ci"] = _interval(replicates[name], members, kind, n) if n is not None else None
        rows.append(row)
    return pd.DataFrame(rows)


def class_section(run_dir: Path, slugs: list[str]) -> list[str]:
    """report.md's "Feature classes" section (empty when no model has classes)."""
    out = []
    for slug in slugs:
        frame = class_sharing(run_dir, slug)
        if frame is None:
            continue
        rows = [[r["class"], f"{count(int(r['features']))} ({pct(r['share_of_live'])})"]
                + [pct_ci(r[f"{s}_{k}"], r[f"{s}_{k}_ci"]) for s in ("pair", "ceiling", "floor") for k in ("shared", "beyond")]
                for _, r in frame.iterrows()]
        out += [f"**`{slug}`**", "", md_table(["class", "live features", "pair: shared", "pair: beyond words", "ceiling: shared",
                                                "ceiling: beyond words", "floor: shared", "floor: beyond words"], rows), ""]
    if not out:
        return []
    return (["## Feature classes", "",
             "Each live feature's class from its own activations (`exemplars.json` feature_classes.rule): *token* (word identity "
             "explains at least half its variance), *topical* (its mass spread over many words but concentrated in documents, "
             ">= 5x a shuffled-document null), *contextual* (its mass on a few words, yet it fires on at most half of their "
             "occurrences), *other*. Per class, the share of those features shared with the other model (above the null) and "
             "shared beyond word identity; the same for the same-model ceiling (a second SAE seed) and the random-weights floor. "
             "In brackets, 95% document-bootstrap intervals (the matching and its thresholds held fixed, centred on the "
             "estimate, as in the verdict). A class's sharing means something only where the pair's interval clears the floor's.", ""] + out)
