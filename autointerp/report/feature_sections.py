"""Feature-page sections beyond statistics and exemplars: the feature's name, activation histogram, logit
effects, lexical profile and label candidates. Each returns HTML (every untrusted string escaped) or a
one-line note.

The name (``name_html``) is the one rendering of a feature's name on every page: its final label, else its
lexical name with the " (lexical)" marker (``autointerp.explain.names``), so no page shows a feature as
"not labelled" when its profile says what it fires on.

The lexical profile and the label candidates are read by their agreed columns (``lexical_profile.parquet``:
feature, kind, text, share, count; ``label_candidates.parquet``: feature, candidate, source, train_score,
kept) and shown only when the files exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.exemplars.logit_effects import APPROXIMATION
from autointerp.explain.names import UNNAMED
from autointerp.report.artifacts import ModelInputs
from autointerp.report.histogram import histogram_svg
from autointerp.report.html_render import esc, fmt, table
from autointerp.io import read_parquet

PROFILE_KINDS = ("word", "token", "left", "right", "entity")
PROFILE_ROWS = 5


def label_error(labels: pd.DataFrame | None, feature: int) -> str | None:
    """Why the feature's labelling failed (``labels`` indexed by feature); None when it did not fail or
    was not labelled."""
    if labels is None or feature not in labels.index:
        return None
    row = labels.loc[feature]
    if str(row.get("status")) != "ok" or not isinstance(row.get("label"), str):
        return str(row.get("error") or "no label")
    return None


def name_html(m: ModelInputs | None, feature: int, error: str | None = None) -> str:
    """The feature's name as HTML; ``error``: why its labelling failed, noted after the name."""
    text = esc(m.name(feature)) if m is not None else esc(UNNAMED)
    return text + (f" <span class=\"failed\">(label failed: {esc(error)})</span>" if error else "")


def histogram_section(hist: tuple[np.ndarray, float] | None, note: str | None, title: str) -> str:
    out = ["<h2>Activation histogram</h2>"]
    if hist is None:
        out.append(f"<p class=\"meta\">{esc(note or 'not computed')}</p>")
    else:
        out.append(histogram_svg(hist[0], hist[1], title))
    return "\n".join(out)


def logit_section(effects: dict | None, note: str | None) -> str:
    out = ["<h2>Logit effects</h2>"]
    if effects is None:
        out.append(f"<p class=\"meta\">{esc(note or 'not computed')}</p>")
        return "\n".join(out)
    out.append(f"<p class=\"meta\">Tokens whose next-token logit the decoder direction raises and lowers most ({esc(APPROXIMATION)}).</p>")
    up, down = effects.get("up", []), effects.get("down", [])
    rows = []
    for i in range(max(len(up), len(down))):
        u = up[i] if i < len(up) else ("", float("nan"))
        d = down[i] if i < len(down) else ("", float("nan"))
        rows.append([f"<code>{esc(u[0])}</code>", fmt(u[1], 2), f"<code>{esc(d[0])}</code>", fmt(d[1], 2)])
    out.append(f"<div class=\"logits\">{table(['raises', 'effect', 'lowers', 'effect'], rows, [False, True, False, True])}</div>")
    return "\n".join(out)


def read_profile(path: Path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.is_file():
        return None
    frame = read_parquet(path)
    return frame if {"feature", "kind", "text", "share", "count"} <= set(frame.columns) else None


def profile_section(profile: pd.DataFrame | None, feature: int) -> str:
    if profile is None:
        return ""
    rows = profile[profile["feature"] == feature]
    if rows.empty:
        return "<h2>Lexical profile</h2>\n<p class=\"meta\">No lexical profile for this feature.</p>"
    cells = []
    for kind in PROFILE_KINDS:
        part = rows[rows["kind"] == kind].sort_values("share", ascending=False).head(PROFILE_ROWS)
        if not part.empty:
            items = ", ".join(f"<code>{esc(t)}</code> {fmt(s * 100, 0)}% ({int(c):,})" for t, s, c in zip(part["text"], part["share"], part["count"]))
            cells.append([esc(kind), items])
    return ("<h2>Lexical profile</h2>\n<p class=\"meta\">Share of the feature's activation mass (or of its peaks) per word, "
            "token, left / right neighbour and entity; count in brackets.</p>\n" + table(["kind", "top entries"], cells))


def read_candidates(path: Path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.is_file():
        return None
    frame = read_parquet(path)
    return frame if {"feature", "candidate", "source", "train_score", "kept"} <= set(frame.columns) else None


def candidates_section(candidates: pd.DataFrame | None, feature: int) -> str:
    if candidates is None:
        return ""
    rows = candidates[candidates["feature"] == feature].sort_values("train_score", ascending=False)
    if rows.empty:
        return ""
    cells = [[esc(c), esc(s), fmt(t), "kept" if bool(k) else ""] for c, s, t, k in zip(rows["candidate"], rows["source"], rows["train_score"], rows["kept"])]
    return ("<h2>Label candidates</h2>\n<p class=\"meta\">Every candidate label with its score on the training windows; "
            "the kept one is the feature's label.</p>\n" + table(["candidate", "source", "training-window score", ""], cells, [False, False, True, False]))


SCORE_KINDS = (("final", "final label"), ("score", "LLM label"), ("lexical", "lexical label"), ("word", "word-only label"),
               ("baseline", "shuffled label"))


def scores_section(row: pd.Series, scorers: list[str]) -> list[str]:
    """The held-out score of each label kind, against random windows and against hard negatives (windows holding
    the feature's words where it is silent: a word-only label is near chance there unless the word always fires)."""
    out = ["<h2>Label scores</h2>",
           "<p class=\"meta\">Held-out windows; <em>hard</em>: against windows holding the feature's main words where it "
           "does not fire (empty when it has none).</p>"]
    for scorer in scorers:
        rows = [[esc(name), esc(row.get(f"{kind}_label") if kind in ("lexical", "word") else row.get("llm_label") if kind == "score" else ""),
                 fmt(row.get(f"{kind}_{scorer}")), fmt(row.get(f"{kind}_{scorer}_hard"))]
                for kind, name in SCORE_KINDS if f"{kind}_{scorer}" in row.index]
        out.append(table([f"{scorer}: labels", "text", "vs random", "vs hard negatives"], rows, [False, False, True, True]))
    return out
