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

import pyarrow as pa
import pyarrow.compute as pc
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
    rows = _read_rows(Path(path), wanted, n_top, n_quantile)
    grouped: dict[int, list[Window]] = {}
    for row in rows:
        grouped.setdefault(int(row["feature"]), []).append(Window(
            int(row["feature"]), row["kind"], int(row["rank_or_quantile"]), str(row["doc_id"]), float(row["max_act"]),
            int(row["max_index"]), list(row["tokens"]), list(row["acts"]), list(row["char_start"]), list(row["char_end"]),
            row["text"] if isinstance(row["text"], str) else None))
    out: dict[int, list[Window]] = {}
    for feature in sorted(grouped):
        windows = grouped[feature]
        top = sorted((w for w in windows if w.kind == "top"), key=lambda w: w.rank)[:n_top]
        quantile = sorted((w for w in windows if w.kind == "quantile"), key=lambda w: (-w.rank, -w.max_act))[:n_quantile]
        out[feature] = top + quantile
    return out


def _read_rows(path: Path, wanted: list[int], n_top: int, n_quantile: int) -> list[dict]:
    """Row group by row group: decide from the small columns which rows are needed, and read the list
    columns only for row groups holding some (the file is written in feature order, so most are skipped
    when the wanted features are few); only the chosen rows become Python objects."""
    parquet = pq.ParquetFile(path)
    value_set = pa.array(wanted, pa.int32())
    chosen = []
    for group in range(parquet.num_row_groups):
        stats = parquet.metadata.row_group(group).column(parquet.schema_arrow.get_field_index("feature")).statistics
        if stats is not None and stats.has_min_max and (stats.max < wanted[0] or stats.min > wanted[-1]):
            continue
        keys = parquet.read_row_group(group, columns=["feature", "kind", "rank_or_quantile"])
        top = pc.and_(pc.equal(keys["kind"], "top"), pc.less(keys["rank_or_quantile"], n_top))
        mask = pc.and_(pc.is_in(keys["feature"], value_set=value_set), pc.or_(top, pc.and_(pc.equal(keys["kind"], "quantile"), pa.scalar(n_quantile > 0))))
        if not pc.any(mask).as_py():
            continue
        chosen.append(parquet.read_row_group(group, columns=COLUMNS).filter(mask))
    return pa.concat_tables(chosen).to_pylist() if chosen else []


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
