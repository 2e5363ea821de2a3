"""Report section on concept domains: every live matchable feature per domain, for the pair and its controls.

Why the controls: "B has more geography features than A" or "most shared pairs are about numbers" only
means something next to what a model shares with a second SAE of itself (the ceiling) and with a
random-weights network reading the same text (the floor). Each control ran the same ``compare_pair`` into
its own directory (``RunDir.controls``); its stats.json carries the same ``domains`` counts, where the
shared pairs are counted by the real model's feature (the control's side has no exemplars, so no names).
The counts and the method are the comparison stage's own (``compare.domains``), read, never recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from autointerp.io import read_json
from autointerp.report.artifacts import PairInputs
from autointerp.report.fmt import count, md_table, md_text
from autointerp.rundir.layout import PairDir, RunDir


class Column(NamedTuple):
    """One count column of the domain table: its header and {domain: count} (None: not measured)."""

    header: str
    counts: dict | None


def _stats(pair: PairDir) -> dict | None:
    try:
        return read_json(pair.stats) if pair.stats.is_file() else None
    except (OSError, ValueError):
        return None


def control_columns(p: PairInputs) -> list[Column]:
    """Shared features per domain in the pair's controls that exist: each model's ceiling (its SAE vs a
    second seed), and each floor (one real model vs the other's random-weights control)."""
    if p.run_dir is None:
        return []
    controls = RunDir(Path(p.run_dir)).controls
    out = []
    for slug in (p.a, p.b):
        stats = _stats(controls.ceiling_pair(slug))
        if stats and stats.get("domains"):
            out.append(Column(f"ceiling: `{slug}` shared with its 2nd seed", stats["domains"].get("counts_shared")))
    for real, randomised in ((p.a, p.b), (p.b, p.a)):
        stats = _stats(controls.floor_pair(real, randomised))
        if stats and stats.get("domains"):
            out.append(Column(f"floor: `{real}` shared with random `{randomised}`", stats["domains"].get("counts_shared")))
    return out


def _cell(counts: dict | None, name: str) -> str:
    return "n/a" if counts is None else count(counts.get(name, 0))


def domain_section(p: PairInputs) -> str:
    d = (p.stats or {}).get("domains") or {}
    names = list(d.get("names") or [])
    lines = ["#### Concept domains", ""]
    if not names:
        return "\n".join(lines + ["_No domain assignment in stats.json._", ""])
    if "method" not in d:
        lines.append("_These counts predate domains over all features (labelled features only): run `autointerp compare` again._")
        lines.append("")
    else:
        lines.append(f"Method: {md_text(d['method'])}. Features: each model's live matchable features "
                     f"(`{p.a}` {count(d.get('n_live_a'))}, `{p.b}` {count(d.get('n_live_b'))}); shared pairs by the `{p.a}` feature's domain.")
        lines.append("")
    columns = [Column(f"`{p.a}` features", d.get("counts_a")), Column(f"`{p.b}` features", d.get("counts_b")),
               Column("shared pairs", d.get("counts_shared")), *control_columns(p)]
    rows = [[md_text(n), *[_cell(c.counts, n) for c in columns]] for n in names]
    unassigned = [d.get("n_unassigned_a"), d.get("n_unassigned_b"), d.get("n_shared_unassigned")]
    if any(unassigned):
        rows.append(["_no name and no window_", *[count(x) for x in unassigned], *[""] * (len(columns) - 3)])
    lines.append(md_table(["domain", *[c.header for c in columns]], rows, ["l", *["r"] * len(columns)]))
    lines.append("")
    return "\n".join(lines)
