"""Exemplar windows as the explainer and scorers see them: text pieces per token plus activations.

Read from ``exemplars.parquet`` (see ``autointerp.exemplars.mine``). Token text is cut from the
window's own ``text`` by character offsets rather than taken from the tokenizer's token strings, so
WordPiece ("##ity") and SentencePiece ("▁the") models both render as the original text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from autointerp.errors import UserError

MARK_OPEN, MARK_CLOSE = "<<", ">>"


@dataclass(frozen=True)
class Window:
    feature: int
    split: str  # train | test
    kind: str  # top | quantile | random
    pieces: tuple[str, ...]  # token texts (leading whitespace included), cut from the source text
    gaps: tuple[str, ...]  # text between the previous token and this one (usually "")
    acts: np.ndarray  # float32 per token
    max_act: float
    max_index: int

    @property
    def activating(self) -> bool:
        return self.kind != "random"

    @property
    def text(self) -> str:
        return "".join(g + p for g, p in zip(self.gaps, self.pieces))

    def trimmed(self, before: int, after: int) -> Window:
        """At most ``before`` tokens before and ``after`` after the max token (keeps prompts short)."""
        lo, hi = max(0, self.max_index - before), min(len(self.pieces), self.max_index + after + 1)
        gaps = ("",) + self.gaps[lo + 1:hi]
        return Window(self.feature, self.split, self.kind, self.pieces[lo:hi], gaps, self.acts[lo:hi], self.max_act, self.max_index - lo)

    def marked(self, mask: np.ndarray, values: np.ndarray | None = None) -> str:
        """The text with the tokens where ``mask`` is true wrapped in <<...>> (runs of tokens share one mark);
        with ``values``, each mark is followed by the run's largest value, e.g. <<Paris>>(10)."""
        out: list[str] = []
        run_max: int | None = None

        def close() -> None:
            out.append(MARK_CLOSE + (f"({run_max})" if values is not None else ""))

        for i, (gap, piece) in enumerate(zip(self.gaps, self.pieces)):
            lead = piece[: len(piece) - len(piece.lstrip())]
            if mask[i]:
                value = int(values[i]) if values is not None else 0
                if run_max is None:
                    out.append(gap + lead + MARK_OPEN + piece[len(lead):])
                    run_max = value
                else:
                    out.append(gap + piece)
                    run_max = max(run_max, value)
            else:
                if run_max is not None:
                    close()
                    run_max = None
                out.append(gap + piece)
        if run_max is not None:
            close()
        return _one_line("".join(out))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _row_window(row: dict) -> Window:
    text, starts, ends = row["text"], row["char_start"], row["char_end"]
    base = int(starts[0]) if len(starts) else 0
    pieces, gaps, prev_end = [], [], base
    for s, e, token in zip(starts, ends, row["tokens"]):
        s, e = int(s), int(e)
        piece = text[s - base:e - base] if e > s else token
        gaps.append(text[prev_end - base:s - base] if s > prev_end else "")
        pieces.append(piece)
        prev_end = max(prev_end, e)
    return Window(int(row["feature"]), row["split"], row["kind"], tuple(pieces), tuple(gaps), np.asarray(row["acts"], dtype=np.float32), float(row["max_act"]), int(row["max_index"]))


def load_windows(exemplars_path: Path, features: list[int]) -> dict[int, list[Window]]:
    """Every window of the given features, grouped by feature, in file order (top windows by rank first)."""
    if not Path(exemplars_path).is_file():
        raise UserError(f"no exemplars at {exemplars_path}; run `autointerp exemplars` first")
    columns = ["feature", "split", "kind", "rank_or_quantile", "max_act", "max_index", "tokens", "acts", "char_start", "char_end", "text"]
    table = pq.read_table(exemplars_path, columns=columns, filters=[("feature", "in", [int(f) for f in features])]) if features else None
    grouped: dict[int, list[Window]] = {int(f): [] for f in features}
    if table is None:
        return grouped
    for row in table.to_pylist():
        grouped[int(row["feature"])].append(_row_window(row))
    return grouped


def split_windows(windows: list[Window], split: str, kinds: tuple[str, ...]) -> list[Window]:
    return [w for w in windows if w.split == split and w.kind in kinds]


def scale_0_10(acts: np.ndarray, feature_max: float) -> np.ndarray:
    """Activations as integers 0..10 relative to the feature's max (0 when the feature never fired)."""
    if feature_max <= 0:
        return np.zeros_like(acts, dtype=np.int64)
    return np.clip(np.rint(10 * np.asarray(acts) / feature_max), 0, 10).astype(np.int64)
