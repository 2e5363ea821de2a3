"""Every feature's display name: its final label when it has one, else a name made from its lexical profile.

Why: only a few features per model are sent to the explainer, but the report's tables, pages and console
summary list many more (matched pairs, domains, sorted views). A row reading "—" or "not labelled" says
nothing, while the feature's lexical profile (``autointerp.exemplars.profile``) always states the words it
fires on. So every feature with a profile gets a name, deterministic and without an LLM.

Convention (one, everywhere): a name from the labels table is shown as is; a name made from the profile is
shown with the trailing marker ``" (lexical)"`` (``LEXICAL_MARKER``), e.g. ``the word "(" (in "( 2023"),
before a number (lexical)``. Only a feature with neither a label nor a profile (it never fired on the
training windows) reads ``"unnamed (no profile)"``.

The lexical name is ``lexical_label`` (the same deterministic labeller the explain stage scores) plus the
neighbouring context when the profile shows it concentrated: when most peaks are followed (preceded) by a
number, ``before a number`` (``after a number``); else when one phrase follows (precedes) most peaks and the
label does not quote it already, ``before "US dollars"``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from autointerp.exemplars.profile import TOP_PER_KIND, LexicalProfile, profiles_from_frame, read_profiles
from autointerp.explain.lexical import lexical_label

LEXICAL_MARKER = " (lexical)"
UNNAMED = "unnamed (no profile)"
LEGEND = (f"Names: the feature's final label; a name ending in \"{LEXICAL_MARKER.strip()}\" is made from its lexical profile "
          "(the words it fires on and their neighbours) for a feature without a label.")
CONCENTRATED_SHARE = 0.5  # a context carrying at least this share of the peaks is named
_NUMBER = re.compile(r"^[+\-−]?\d[\d,.]*%?$")

Profiles = dict[int, LexicalProfile] | pd.DataFrame | Path | str | None


class FeatureName(NamedTuple):
    """A feature's name and where it came from: ``"label"`` (labels.parquet) or ``"lexical"`` (its profile)."""

    text: str
    source: str


def _is_number(word: str) -> bool:
    return bool(_NUMBER.match(word))


def _context(profile: LexicalProfile, label: str) -> str | None:
    """``before a number`` / ``after "US dollars"`` when the peaks' neighbours are concentrated, else None."""
    parts = []
    for kind, where in (("right", "before"), ("left", "after")):
        rows = profile.top(kind, TOP_PER_KIND)
        if not rows:
            continue
        edge = (lambda text: text.split()[0]) if kind == "right" else (lambda text: text.split()[-1])
        numeric = sum(share for text, share, _ in rows if text.split() and _is_number(edge(text)))
        if numeric >= CONCENTRATED_SHARE:
            parts.append(f"{where} a number")
        elif rows[0][1] >= CONCENTRATED_SHARE and f"{rows[0][0]}" not in label:
            parts.append(f'{where} "{rows[0][0]}"')
    return ", ".join(parts) or None


def lexical_name(profile: LexicalProfile | None) -> str | None:
    """The profile's deterministic name (without the marker); None when there is no profile or it is empty."""
    label = lexical_label(profile)
    if label is None:
        return None
    context = _context(profile, label)
    return f"{label}, {context}" if context else label


def final_labels(labels: pd.DataFrame | None) -> dict[int, str]:
    """{feature: final label} of the labels table's rows with a usable label (status ok, label not empty)."""
    if labels is None or labels.empty or "label" not in labels.columns:
        return {}
    ok = labels[labels["status"] == "ok"] if "status" in labels.columns else labels
    return {int(f): str(v) for f, v in zip(ok["feature"], ok["label"]) if isinstance(v, str) and v.strip()}


def _profiles(profiles: Profiles) -> dict[int, LexicalProfile]:
    if profiles is None:
        return {}
    if isinstance(profiles, dict):
        return profiles
    if isinstance(profiles, pd.DataFrame):
        return profiles_from_frame(profiles) if not profiles.empty else {}
    path = Path(profiles)
    return read_profiles(path) if path.is_file() else {}


def feature_names(labels: pd.DataFrame | None, profiles: Profiles) -> dict[int, FeatureName]:
    """{feature: FeatureName} of every feature with a final label or a lexical profile; the label wins.

    ``profiles``: ``{feature: LexicalProfile}``, the long profile table, or the path of
    ``lexical_profile.parquet`` (a missing file means no profiles).
    """
    out: dict[int, FeatureName] = {}
    for feature, profile in _profiles(profiles).items():
        name = lexical_name(profile)
        if name:
            out[int(feature)] = FeatureName(name, "lexical")
    out.update({f: FeatureName(text, "label") for f, text in final_labels(labels).items()})
    return out


def display_name(name: FeatureName | None, limit: int | None = None) -> str:
    """The text shown for a feature: the label, the lexical name with ``LEXICAL_MARKER``, or ``UNNAMED``.

    ``limit``: at most that many characters, the text cut with "…" so the marker always survives.
    """
    if name is None:
        return UNNAMED
    body, marker = " ".join(name.text.split()), LEXICAL_MARKER if name.source == "lexical" else ""
    if limit is not None and len(body) + len(marker) > limit:
        body = body[: max(1, limit - len(marker) - 1)] + "…"
    return body + marker


def name_of(names: dict[int, FeatureName] | None, feature, limit: int | None = None) -> str:
    """``display_name`` of ``feature`` in ``names`` (the report's one-call form)."""
    return display_name((names or {}).get(int(feature)), limit)
