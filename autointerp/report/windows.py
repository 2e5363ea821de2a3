"""Exemplar windows for the report: read only the features and kinds shown, and cut them into text pieces.

``exemplars.parquet`` holds hundreds of thousands of windows; the report needs the top few of a few
hundred features, so it reads with a pyarrow filter and only the columns it uses. A window's ``text``
is the document slice ``[char_start[0], char_end[-1])``, so token spans relative to ``char_start[0]``
locate every token (and the gaps between tokens) in the original text — no re-tokenization, and
WordPiece tokens like ``##ity`` show as the document's own characters.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pyarrow.parquet as pq

COLUMNS = ["feature", "kind", "rank_or_quantile", "doc_id", "max_act", "max_index", "tokens", "acts", "char_start", "char_end", "text"]


class Window(NamedTuple):
    feature: int
    kind: str  # top | quantile
    rank: int  # rank (top, 0 = highest) or quantile bin (0 = lowest)
    doc_id: str
    max_act: float
    max_index: int
    tokens: list[str]
    acts: list[float]
    char_start: list[int]
    char_end: list[int]
    text: str | None


class Piece(NamedTuple):
    """A run of window text: a token (``act`` is its activation, ``index`` its position) or a gap (act None)."""

    text: str
    act: float | None
    index: int | None


def load_windows(path: Path, features: Iterable[int], n_top: int, n_quantile: int) -> dict[int, list[Window]]:
    """Per feature: its ``n_top`` best top windows (rank order), then ``n_quantile`` quantile windows (highest bins first)."""
    wanted = sorted({int(f) for f in features})
    if not wanted or not Path(path).is_file() or (n_top <= 0 and n_quantile <= 0):
        return {}
    kinds = [k for k, n in (("top", n_top), ("quantile", n_quantile)) if n > 0]
    table = pq.read_table(path, columns=COLUMNS, filters=[("feature", "in", wanted), ("kind", "in", kinds)])
    frame = table.to_pandas()
    out: dict[int, list[Window]] = {}
    for feature, group in frame.groupby("feature", sort=True):
        top = group[group["kind"] == "top"].sort_values("rank_or_quantile").head(n_top)
        quantile = group[group["kind"] == "quantile"].sort_values(["rank_or_quantile", "max_act"], ascending=False).head(n_quantile)
        out[int(feature)] = [_window(row) for part in (top, quantile) for row in part.itertuples(index=False)]
    return out


def _window(row) -> Window:
    text = row.text if isinstance(row.text, str) else None
    return Window(int(row.feature), str(row.kind), int(row.rank_or_quantile), str(row.doc_id), float(row.max_act),
                  int(row.max_index), [str(t) for t in row.tokens], [float(a) for a in row.acts],
                  [int(c) for c in row.char_start], [int(c) for c in row.char_end], text)


def pieces(window: Window) -> list[Piece]:
    """The window as alternating gap / token pieces that concatenate back to its text.

    Falls back to the token strings themselves when the text is absent or the spans do not fit it
    (overlapping or out-of-range offsets), so a page always shows something faithful to the tokens.
    """
    text = window.text
    spans = list(zip(window.char_start, window.char_end))
    if text is None or not spans or not _spans_fit(spans, len(text)):
        return [Piece(tok, act, i) for i, (tok, act) in enumerate(zip(window.tokens, window.acts))]
    base = spans[0][0]
    out: list[Piece] = []
    cursor = 0
    for i, ((start, end), act) in enumerate(zip(spans, window.acts)):
        start, end = start - base, end - base
        if start > cursor:
            out.append(Piece(text[cursor:start], None, None))
        out.append(Piece(text[start:end], act, i))
        cursor = max(cursor, end)
    if cursor < len(text):
        out.append(Piece(text[cursor:], None, None))
    return out


def _spans_fit(spans: list[tuple[int, int]], length: int) -> bool:
    base = spans[0][0]
    previous_end = base
    for start, end in spans:
        if start < previous_end or end < start or end - base > length:
            return False
        previous_end = end
    return True


def snippet(window: Window, chars: int) -> tuple[str, str, str]:
    """(before, max token, after): about ``chars`` characters of context around the window's max token."""
    parts = pieces(window)
    at = next((k for k, p in enumerate(parts) if p.index == window.max_index), None)
    if at is None:
        return "", " ".join(window.tokens)[:chars], ""
    before = "".join(p.text for p in parts[:at])
    after = "".join(p.text for p in parts[at + 1:])
    keep_after = min(len(after), max(chars // 4, chars - len(before)))
    keep_before = max(0, chars - keep_after)
    before = ("…" + before[len(before) - keep_before:]) if len(before) > keep_before else before
    after = (after[:keep_after] + "…") if len(after) > keep_after else after
    return before, parts[at].text, after
