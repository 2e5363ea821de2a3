"""Exemplar windows: the one window type and the one reader of ``exemplars.parquet``.

A row of the file (written by ``autointerp.exemplars.mine``, schema ``EXEMPLAR_SCHEMA``) is one window: the
tokens ``window_before`` before to ``window_after`` after a feature's max token in one context, each token's
activation, and character provenance. ``text`` is the document slice ``[char_start[0], char_end[-1])`` (null
when mining had no documents), so token spans relative to ``char_start[0]`` locate every token and the gaps
between tokens in the original text: no re-tokenization, and WordPiece ``##ity`` or SentencePiece ``▁the``
tokens show as the document's own characters.

Two views of that text, because prompts and pages need different things:

- ``pieces`` / ``gaps`` (prompts: explainer and scorers): one piece per token (its token string when its span
  is empty or there is no text) and the text between it and the previous token (usually "").
- ``segments()`` / ``snippet()`` (report pages): alternating gap / token ``Piece``s that concatenate back to
  ``text`` exactly, or the token strings alone when the spans do not fit the text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autointerp.errors import UserError
from autointerp.io import parquet_errors

_KEYS = ["feature", "split", "kind", "rank_or_quantile"]  # small columns that decide which rows are read
COLUMNS = _KEYS + ["doc_id", "max_act", "max_index", "tokens", "acts", "char_start", "char_end", "text"]


class Piece(NamedTuple):
    """A run of window text: a token (``act`` is its activation, ``index`` its position) or a gap (act None)."""

    text: str
    act: float | None
    index: int | None


@dataclass(frozen=True, eq=False)
class Window:
    feature: int
    split: str  # train | test
    kind: str  # top | quantile | random | hard_negative
    rank_or_quantile: int  # top: rank (0 = highest); quantile: bin (0 = lowest); random: ordinal
    doc_id: str
    max_act: float
    max_index: int  # position of the max token in the window
    tokens: tuple[str, ...]  # the tokenizer's token strings
    acts: np.ndarray  # float32, one per token
    char_start: tuple[int, ...]  # document character span of each token
    char_end: tuple[int, ...]
    text: str | None  # the document slice [char_start[0], char_end[-1]); None when mined without documents

    @property
    def activating(self) -> bool:
        return self.kind in ("top", "quantile")

    # ---------------------------------------------------------------------- prompt view: pieces and gaps
    @cached_property
    def _cut(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        text, starts = self.text, self.char_start
        base = int(starts[0]) if len(starts) else 0
        pieces, gaps, prev_end = [], [], base
        for s, e, token in zip(starts, self.char_end, self.tokens):
            s, e = int(s), int(e)
            has_text = text is not None and e > s
            pieces.append(text[s - base:e - base] if has_text else token)
            gaps.append(text[prev_end - base:s - base] if text is not None and s > prev_end else "")
            prev_end = max(prev_end, e)
        return tuple(pieces), tuple(gaps)

    @property
    def pieces(self) -> tuple[str, ...]:
        """Token texts (leading whitespace included), cut from the window's text."""
        return self._cut[0]

    @property
    def gaps(self) -> tuple[str, ...]:
        """Text between the previous token and each token (usually "")."""
        return self._cut[1]

    def trimmed(self, before: int, after: int) -> Window:
        """At most ``before`` tokens before and ``after`` after the max token (keeps prompts short). The
        trimmed window keeps its parent's pieces, and its ``text`` is those pieces joined (no leading gap)."""
        lo, hi = max(0, self.max_index - before), min(len(self.tokens), self.max_index + after + 1)
        pieces, gaps = self.pieces[lo:hi], ("",) + self.gaps[lo + 1:hi]
        out = replace(self, tokens=self.tokens[lo:hi], acts=self.acts[lo:hi], char_start=self.char_start[lo:hi],
                      char_end=self.char_end[lo:hi], max_index=self.max_index - lo,
                      text="".join(g + p for g, p in zip(gaps, pieces)))
        out.__dict__["_cut"] = (pieces, gaps)
        return out

    # --------------------------------------------------------------------- page view: segments, snippet
    def segments(self) -> list[Piece]:
        """The window as alternating gap / token pieces that concatenate back to its text.

        Falls back to the token strings themselves when the text is absent or the spans do not fit it
        (overlapping or out-of-range offsets), so a page always shows something faithful to the tokens.
        """
        text = self.text
        spans = list(zip(self.char_start, self.char_end))
        if text is None or not spans or not _spans_fit(spans, len(text)):
            return [Piece(tok, float(act), i) for i, (tok, act) in enumerate(zip(self.tokens, self.acts))]
        base = spans[0][0]
        out: list[Piece] = []
        cursor = 0
        for i, ((start, end), act) in enumerate(zip(spans, self.acts)):
            start, end = start - base, end - base
            if start > cursor:
                out.append(Piece(text[cursor:start], None, None))
            out.append(Piece(text[start:end], float(act), i))
            cursor = max(cursor, end)
        if cursor < len(text):
            out.append(Piece(text[cursor:], None, None))
        return out

    def snippet(self, chars: int) -> tuple[str, str, str]:
        """(before, max token, after): about ``chars`` characters of context around the max token."""
        parts = self.segments()
        at = next((k for k, p in enumerate(parts) if p.index == self.max_index), None)
        if at is None:
            return "", " ".join(self.tokens)[:chars], ""
        before = "".join(p.text for p in parts[:at])
        after = "".join(p.text for p in parts[at + 1:])
        keep_after = min(len(after), max(chars // 4, chars - len(before)))
        keep_before = max(0, chars - keep_after)
        before = ("…" + before[len(before) - keep_before:]) if len(before) > keep_before else before
        after = (after[:keep_after] + "…") if len(after) > keep_after else after
        return before, parts[at].text, after


def _spans_fit(spans: list[tuple[int, int]], length: int) -> bool:
    base = spans[0][0]
    previous_end = base
    for start, end in spans:
        if start < previous_end or end < start or end - base > length:
            return False
        previous_end = end
    return True


# ------------------------------------------------------------------------------------------ reader
def load_windows(path: Path, features: Iterable[int], *, kinds: Iterable[str] | None = None, splits: Iterable[str] | None = None,
                 n_top: int | None = None, n_quantile: int | None = None) -> dict[int, list[Window]]:
    """Windows of the given features, grouped by feature (every requested feature has a list, maybe empty).

    ``kinds`` / ``splits`` keep only those (None: all). Without limits a feature's windows come in file order
    (top windows by rank first). With ``n_top`` / ``n_quantile`` only that many top windows (best rank first)
    and quantile windows (highest bins first, higher max first within a bin) are kept, in that order, followed
    by any windows of other kinds in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no exemplars at {path}; run `autointerp exemplars` first")
    grouped: dict[int, list[Window]] = {int(f): [] for f in features}
    if not grouped:
        return grouped
    table = _read_rows(path, sorted(grouped), kinds, splits, n_top, n_quantile)
    for window in _windows(table):
        grouped[window.feature].append(window)
    if n_top is not None or n_quantile is not None:
        for feature, windows in grouped.items():
            top = sorted((w for w in windows if w.kind == "top"), key=lambda w: w.rank_or_quantile)
            quantile = sorted((w for w in windows if w.kind == "quantile"), key=lambda w: (-w.rank_or_quantile, -w.max_act))
            rest = [w for w in windows if w.kind not in ("top", "quantile")]
            grouped[feature] = top[:n_top] + quantile[:n_quantile] + rest
    return grouped


def _read_rows(path: Path, wanted: list[int], kinds, splits, n_top: int | None, n_quantile: int | None) -> pa.Table | None:
    """Row group by row group: decide from the small columns which rows are needed, and read the list
    columns only for row groups holding some (the file is written in feature order, so most are skipped
    when the wanted features are few)."""
    with parquet_errors(path):
        parquet = pq.ParquetFile(path)
    at = parquet.schema_arrow.get_field_index("feature")
    chosen = []
    for group in range(parquet.num_row_groups):
        stats = parquet.metadata.row_group(group).column(at).statistics
        if stats is not None and stats.has_min_max and (stats.max < wanted[0] or stats.min > wanted[-1]):
            continue
        keys = parquet.read_row_group(group, columns=_KEYS)
        mask = pc.is_in(keys["feature"], value_set=pa.array(wanted, keys["feature"].type))
        if kinds is not None:
            mask = pc.and_(mask, pc.is_in(keys["kind"], value_set=pa.array(list(kinds), pa.string())))
        if splits is not None:
            mask = pc.and_(mask, pc.is_in(keys["split"], value_set=pa.array(list(splits), pa.string())))
        if n_top is not None:
            mask = pc.and_(mask, pc.or_(pc.not_equal(keys["kind"], "top"), pc.less(keys["rank_or_quantile"], n_top)))
        if n_quantile is not None and n_quantile <= 0:
            mask = pc.and_(mask, pc.not_equal(keys["kind"], "quantile"))
        if pc.any(mask).as_py():
            chosen.append(parquet.read_row_group(group, columns=COLUMNS).filter(mask))
    return pa.concat_tables(chosen) if chosen else None


def _windows(table: pa.Table | None) -> list[Window]:
    """The rows as windows, column by column (one float32 buffer for all activations)."""
    if table is None or table.num_rows == 0:
        return []
    acts = table["acts"].combine_chunks()
    flat = np.asarray(acts.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    lengths = pc.fill_null(pc.list_value_length(acts), 0).to_numpy()
    ends = np.cumsum(lengths)
    starts = ends - lengths
    col = {name: table[name].to_pylist() for name in COLUMNS if name != "acts"}
    return [
        Window(int(col["feature"][i]), col["split"][i], col["kind"][i], int(col["rank_or_quantile"][i]), str(col["doc_id"][i]),
               float(col["max_act"][i]), int(col["max_index"][i]), tuple(col["tokens"][i]), flat[starts[i]:ends[i]],
               tuple(col["char_start"][i]), tuple(col["char_end"][i]), col["text"][i])
        for i in range(table.num_rows)
    ]
