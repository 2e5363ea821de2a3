"""HTML for the feature pages: plain static documents, no script at all, every untrusted string escaped.

Corpus text and LLM labels go through ``esc`` (``html.escape`` with quotes) before they touch markup, in
element text and in attributes alike. A strict Content-Security-Policy meta tag is the second line of
defence: even if something slipped through, no script, frame, form or remote resource could load.
Tokens are shaded by activation with an inline ``background-color`` alpha and carry the value in a
``title`` attribute (a hover tooltip), so the pages need no JavaScript.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from urllib.parse import quote

import numpy as np

from autointerp.rundir.windows import Window

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 70em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.window { font-family: ui-monospace, monospace; white-space: pre-wrap; border: 1px solid #ddd; padding: 0.4em 0.6em; margin: 0.3em 0 0.8em; }
.tok { border-radius: 2px; }
.tok.max { outline: 1px solid #b34700; }
.meta { color: #666; font-size: 0.85em; }
.label { font-size: 1.2em; }
.failed { color: #a00; }
.window.pair { white-space: pre; overflow-x: auto; }
.pair .side { margin: 0.15em 0; }
.pair .who { display: inline-block; width: 11em; overflow: hidden; vertical-align: bottom; color: #666; font-size: 0.85em; }
svg.histogram rect.bar { fill: #e07000; }
svg.histogram text { font-size: 10px; fill: #555; }
.summary { background: #f6f6f6; padding: 0.5em 0.8em; border-left: 3px solid #e07000; }
"""


def esc(value) -> str:
    """Untrusted text as HTML (element text or a quoted attribute value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return html.escape(str(value), quote=True)


def href(*parts: str) -> str:
    """A relative URL from path segments (each percent-encoded), e.g. href('..', 'minilm-l6', '12.html')."""
    return "/".join(p if p == ".." else quote(p, safe="") for p in parts)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if math.isnan(value):
        return "—"
    return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.2e}"


def document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] | None = None) -> str:
    """Cells are already-safe HTML fragments; header strings are escaped here."""
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class=\"num\">{c}</td>" if n else f"<td>{c}</td>" for c, n in zip(r, numeric)) + "</tr>\n" for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def shaded_window(window: Window, scale: float) -> str:
    """One exemplar: tokens with activation > 0 get an orange background whose alpha is act / scale."""
    out = []
    for piece in window.segments():
        text = esc(piece.text)
        if piece.act is None:
            out.append(text)
            continue
        alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, piece.act / scale))
        cls = "tok max" if piece.index == window.max_index else "tok"
        style = f"background-color: rgba(255, 128, 0, {alpha:.3f})" if alpha > 0 else ""
        out.append(f"<span class=\"{cls}\" style=\"{style}\" title=\"{piece.act:.3f}\">{text}</span>")
    rank = window.rank_or_quantile
    meta = f"{esc(window.kind)} {'#' + str(rank + 1) if window.kind == 'top' else 'bin ' + str(rank)} · max {window.max_act:.3f} · {esc(window.doc_id)}"
    return f"<div class=\"meta\">{meta}</div>\n<div class=\"window\">{''.join(out)}</div>"
