"""How windows are shown to an LLM: tokens marked <<like this>>, activations on a 0-10 scale, and the
train / test selection the explainer and the scorers draw from (windows: ``autointerp.rundir.windows``)."""

from __future__ import annotations

import numpy as np

from autointerp.rundir.windows import Window

MARK_OPEN, MARK_CLOSE = "<<", ">>"


def marked(window: Window, mask: np.ndarray, values: np.ndarray | None = None) -> str:
    """The window's text on one line with the tokens where ``mask`` is true wrapped in <<...>> (runs of
    tokens share one mark); with ``values``, each mark is followed by the run's largest value, e.g. <<Paris>>(10)."""
    out: list[str] = []
    run_max: int | None = None

    def close() -> None:
        out.append(MARK_CLOSE + (f"({run_max})" if values is not None else ""))

    for i, (gap, piece) in enumerate(zip(window.gaps, window.pieces)):
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
    return " ".join("".join(out).split())


def split_windows(windows: list[Window], split: str, kinds: tuple[str, ...]) -> list[Window]:
    return [w for w in windows if w.split == split and w.kind in kinds]


def scale_0_10(acts: np.ndarray, feature_max: float) -> np.ndarray:
    """Activations as integers 0..10 relative to the feature's max (0 when the feature never fired)."""
    if feature_max <= 0:
        return np.zeros_like(acts, dtype=np.int64)
    return np.clip(np.rint(10 * np.asarray(acts) / feature_max), 0, 10).astype(np.int64)
