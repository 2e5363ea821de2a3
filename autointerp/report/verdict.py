"""The verdict table, its calls and its sentences, rendered three ways from one set of rows: markdown (the
top of report.md), a rich table (the console summary) and HTML (the index page).

Rows: the model pair, each model's same-model ceiling, the random-weights floor; columns: features with a
shared partner (% of each model's matchable features), features shared beyond word identity (count and %
of each model's), debiased CKA, SVCCA and mutual kNN; every value with its 95% document-bootstrap interval.
The numbers, calls and sentences come from ``compare.verdict`` (stored in calibration.json).
"""

from __future__ import annotations

import html
from typing import NamedTuple

from rich.table import Table

from autointerp.compare.verdict import RULE
from autointerp.controls.base import RANDOM_FLOOR_TITLE, SEED_CEILING_TITLE
from autointerp.report.artifacts import PairInputs, RunInputs
from autointerp.report.fmt import cell_ci, count, num, pct, pvalue

COLUMNS = (("shared_a", "shared, % of {a}"), ("shared_b", "shared, % of {b}"), ("count", "beyond words, pairs"),
           ("beyond_words_a", "beyond words, % of {a}"), ("beyond_words_b", "beyond words, % of {b}"),
           ("cka", "debiased CKA"), ("svcca", "SVCCA"), ("mutual_knn", "mutual kNN"))
REPRESENTATION = ("cka", "svcca", "mutual_knn")


class VerdictRow(NamedTuple):
    label: str
    cells: list[str]


def verdict_of(p: PairInputs) -> dict | None:
    return p.calibration.get("verdict")


def _kind(key: str) -> str:
    return "int" if key == "count" else "num" if key in REPRESENTATION else "pct"


def rows(v: dict, a: str, b: str) -> list[VerdictRow]:
    """Pair, ceilings and floor rows of one verdict (cells in ``COLUMNS`` order), then the calls."""
    cols = v["columns"]

    def pick(key: str, what) -> str:
        if key == "count":
            return cell_ci(what(cols["beyond_words_a"], "count"), "int")
        return cell_ci(what(cols[key], None), _kind(key))

    out = [VerdictRow(f"{a} vs {b}", [pick(k, lambda c, sub: c.get(sub) if sub else c) for k, _ in COLUMNS])]
    for slug, side in ((a, "a"), (b, "b")):
        if cols[f"shared_{side}"]["ceiling"].get(slug) or cols[f"beyond_words_{side}"]["ceiling"].get(slug):
            cells = []
            for key, _ in COLUMNS:
                if key == "count":
                    cells.append(cell_ci((cols[f"beyond_words_{side}"].get("ceiling_count") or {}).get(slug), "int"))
                elif key.endswith(f"_{side}"):
                    cells.append(cell_ci(cols[key]["ceiling"].get(slug), _kind(key)))
                else:
                    cells.append("")
            title = (cols[f"shared_{side}"].get("ceiling_title") or {}).get(slug) or SEED_CEILING_TITLE
            out.append(VerdictRow(f"ceiling: {slug} vs {slug} ({title})", cells))
    if any(cols[k]["floor"] for k, _ in COLUMNS if k != "count"):
        floor_of = {"count": cell_ci(cols["beyond_words_a"].get("floor_count"), "int")}
        out.append(VerdictRow(f"floor: {_floor_title(cols)}", [floor_of.get(k) or cell_ci(cols[k]["floor"], _kind(k)) for k, _ in COLUMNS]))
    out.append(VerdictRow("call", ["" if k == "count" else (cols[k]["call"] or "no call") for k, _ in COLUMNS]))
    return out


def _floor_title(cols: dict) -> str:
    """The floor row's name: the control every column's floor comes from (each column reads the highest
    floor, so different columns may read different controls: then they are all named)."""
    titles = dict.fromkeys(c.get("floor_title") or RANDOM_FLOOR_TITLE for k, _ in COLUMNS if k != "count" and (c := cols[k])["floor"])
    return " / ".join(titles)


def headers(a: str, b: str) -> list[str]:
    return [h.format(a=a, b=b) for _, h in COLUMNS]


def verdict_markdown(p: PairInputs) -> list[str]:
    """The table, the rule and the sentences for one pair; [] when the comparison predates the verdict."""
    v = verdict_of(p)
    if not v:
        return []
    head = ["", *headers(p.a, p.b)]
    lines = ["| " + " | ".join(head) + " |", "| :--- |" + " ---: |" * (len(head) - 1)]
    lines += ["| " + " | ".join([f"**{r.label}**" if r.label == "call" else r.label, *r.cells]) + " |" for r in rows(v, p.a, p.b)]
    cal = p.calibration
    method = (cal.get("intervals") or {}).get("method")
    notes = [f"*Decision rule, per column*: {RULE}."]
    if method:
        notes.append(f"*Intervals*: {method}; CKA, SVCCA and mutual kNN on their document subsample (SVCCA's principal "
                     "subspaces and the kNN neighbour lists held fixed). The raw activations of a model against a second "
                     "SAE of itself are identical, so those three have no ceiling.")
    return [*lines, "", *notes, "", *[" ".join(v.get("sentences") or [])], ""]


def verdict_console(run: RunInputs) -> list[Table]:
    """The table transposed (a row per measure: pair, ceiling, floor, call) so an 80-column terminal shows
    every number whole."""
    tables = []
    for p in run.pairs:
        v = verdict_of(p)
        if not v:
            continue
        table = Table(title=f"verdict: {p.a} vs {p.b} (95% intervals)", caption=" ".join(v.get("sentences") or []))
        for col, justify in (("measure", "left"), ("pair", "right"), ("ceiling", "right"), ("floor", "right"), ("call", "left")):
            table.add_column(col, justify=justify, no_wrap=col == "call")
        all_rows = rows(v, p.a, p.b)
        pair, call = all_rows[0], all_rows[-1]
        ceilings = [r for r in all_rows if r.label.startswith("ceiling")]
        floors = [r for r in all_rows if r.label.startswith("floor")]
        for i, header in enumerate(headers(p.a, p.b)):
            ceiling = " / ".join(c for r in ceilings if (c := r.cells[i]))
            table.add_row(header, pair.cells[i], ceiling, " ".join(r.cells[i] for r in floors), call.cells[i])
        tables.append(table)
    return tables


def verdict_html(run: RunInputs) -> str:
    """The verdict tables for the index page (all corpus-free text, escaped anyway)."""
    parts = []
    for p in run.pairs:
        v = verdict_of(p)
        if not v:
            continue
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["", *headers(p.a, p.b)])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in [r.label, *r.cells]) + "</tr>" for r in rows(v, p.a, p.b))
        parts.append(f'<section class="verdict"><h2>Verdict: {html.escape(p.a)} vs {html.escape(p.b)}</h2>'
                     f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                     f"<p>{html.escape(' '.join(v.get('sentences') or []))}</p><p><small>{html.escape(RULE)}</small></p></section>")
    return "".join(parts)


def calibration_details(p: PairInputs) -> list[str]:
    """What the table's numbers are made of: the matching and its null, the representation subsample and the
    nulls of the raw-activation measures, left-out features, controls not measured, and the costs."""
    cal = p.calibration
    if not cal:
        return []
    out = [f"- Activation matching at {cal.get('unit') or 'word'} level: {count(cal.get('n_shared'))} of {count(cal.get('n_pairs'))} "
           f"Hungarian-matched pairs ({pct(cal.get('shared_fraction'))}) correlate above the document-derangement null "
           f"(r > {num(cal.get('null_threshold'))}); {count(cal.get('n_contextual'))} of them stay correlated beyond word identity "
           f"({pct(cal.get('beyond_lexical_fraction'))}), {count(cal.get('n_lexical'))} are the same word in both models."]
    matchable = cal.get("n_matchable") or {}
    if matchable:
        out.append("- Matchable features (live, active on at least " + f"{count(cal.get('min_support'))} units): "
                   + ", ".join(f"`{slug}` {count(n)}" for slug, n in matchable.items())
                   + f"; {count(cal.get('n_rare_a'))} + {count(cal.get('n_rare_b'))} rarer features were left out.")
    rep = [f"{name} {num(cal[key]['value'])} (null {num(cal[key].get('null_mean'))}, p {pvalue(cal[key].get('p_value'))})"
           for key, name in (("cka", "debiased CKA"), ("svcca", "SVCCA"), ("mutual_knn", "mutual kNN")) if cal.get(key)]
    if rep:
        sub = cal.get("representation_subsample") or {}
        where = f" on {count(sub.get('units'))} words of {count(sub.get('documents'))} documents" if sub.get("units") is not None else ""
        out.append(f"- Raw activations, word-pooled{where}, against their document-derangement nulls: " + ", ".join(rep) + ".")
    costs = [f"representation {num(cal['representation_seconds'], 0)} s" for _ in [0] if cal.get("representation_seconds") is not None]
    boot = cal.get("representation_bootstrap") or {}
    if boot.get("seconds") is not None:
        costs.append(f"its intervals {num(boot['seconds'], 0)} s")
    if cal.get("controls_seconds") is not None:
        costs.append(f"controls {num(cal['controls_seconds'], 0)} s")
    if costs:
        out.append("- Cost: " + ", ".join(costs) + ".")
    labels = {"ceiling_shared_fraction": "Same-model ceiling", "floor_shared_fraction": "Random-weights floor", "representation": "Raw-activation measures"}
    out += [f"- {labels.get(key, key)}: {reason}" for key, reason in (cal.get("not_measured") or {}).items()]
    return out
