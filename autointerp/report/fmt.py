"""Small formatting helpers shared by the markdown sections: numbers, escaping, tables.

Corpus text and LLM labels are untrusted: in markdown they are escaped so that a ``|`` cannot break a
table, ``*``/``_`` cannot turn into emphasis, and ``<script>`` shows as text in renderers that allow HTML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from autointerp.fmt import is_missing, pct  # noqa: F401 (the report's sections import them from here)

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def num(value, digits: int = 3) -> str:
    """A float with ``digits`` decimals; 'n/a' for None/NaN."""
    if is_missing(value):
        return "n/a"
    return f"{float(value):.{digits}f}"


def pct_ci(value, ci, digits: int = 1) -> str:
    """A share with its interval in points, "12.5% [10.1, 15.0]"; the bare share when there is no interval."""
    if is_missing(value) or not ci or any(is_missing(x) for x in ci):
        return pct(value, digits)
    return f"{pct(value, digits)} [{100 * float(ci[0]):.{digits}f}, {100 * float(ci[1]):.{digits}f}]"


def count(value) -> str:
    if is_missing(value):
        return "n/a"
    return f"{int(value):,}"


def pvalue(value) -> str:
    if is_missing(value):
        return "n/a"
    value = float(value)
    return "<1e-4" if value < 1e-4 else f"{value:.4f}"


_CELL_VALUE = {"pct": lambda v: f"{100 * v:.1f}%", "points": lambda v: f"{100 * v:.1f}", "num": lambda v: f"{v:.3f}",
               "int": lambda v: f"{v:,.0f}"}


def cell_ci(cell: dict | None, kind: str, with_call: bool = False) -> str:
    """A verdict cell ({"value", "ci", "call"}, ``compare.verdict``) as "value [lo, hi]": ``kind`` "pct" (12.5%),
    "points" (a share in percent without the sign: 12.5), "num" (0.125) or "int" (1,250); ``with_call`` appends
    the call, " (above_floor)", except on the ceiling and floor cells, which are the references. One rendering
    for the verdict table and the sharing matrix, so the two read the same."""
    if not cell or cell.get("value") is None:
        return "n/a"
    f = _CELL_VALUE[kind]
    ci = cell.get("ci")
    text = f(cell["value"]) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")
    call = cell.get("call") if with_call else None
    return text + (f" ({call})" if call and call not in ("ceiling", "floor") else "")


def md_text(text, limit: int | None = None) -> str:
    """Untrusted text as one markdown table cell: one line, markdown and HTML specials neutralised."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return "—"
    text = " ".join(str(text).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_marked(before: str, token: str, after: str) -> str:
    """An exemplar with its max token in bold: ``…context **token** context…`` (all parts escaped)."""
    token_md = md_text(token.strip()) if token.strip() else "␣"
    lead = " " if (token[:1].isspace() or before[-1:].isspace()) else ""
    trail = " " if (token[-1:].isspace() or after[:1].isspace()) else ""
    left = md_text(before) if before.strip() else ""
    right = md_text(after) if after.strip() else ""
    return f"{left}{lead}**{token_md}**{trail}{right}".strip()


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table; ``align`` per column: 'l' or 'r'."""
    rows = [list(r) for r in rows]
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
