"""The explainer's pieces: which training exemplars a prompt shows, how a window is marked, and how a short label
is parsed from the LLM's answer (``explain.candidates`` asks the LLM).

Prompt: the ``explainer`` template filled with numbered examples, each the window text with the tokens the
feature fires on marked <<like this>> and their strengths normalised to 0-10 against the feature's max.
Parsing is defensive because small models ramble: first non-empty line, boilerplate ("Explanation:",
"This neuron detects ...") stripped, quotes removed, length capped; an empty or garbage answer becomes
a failed label (recorded with its reason and retried next run), never an empty string that gets scored.
"""

from __future__ import annotations

import re

import numpy as np

from autointerp.explain.config import ExplainConfig
from autointerp.explain.format import MARK_CLOSE, MARK_OPEN, marked, scale_0_10, split_windows
from autointerp.rundir.windows import Window

_BOILERPLATE = re.compile(
    r"^\s*(?:\d+[.)]\s*)?(?:explanation|label|answer|description|(?:the |this )?neuron(?: [a-z])?|it)\b"
    r"(?:\s*(?:detects|fires on|responds to|is|activates on|looks for)\b)?\s*[:\-–]?\s*",
    re.IGNORECASE,
)


_ANNOTATION = re.compile(r"\(\s*\d{1,2}\s*(?:\)|$)")  # "(10)" strength notes, also cut off ones like "(1"
_EDGE_PUNCTUATION = " \"'`*.,;:-–()[]/|>"
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def choose_examples(windows: list[Window], settings: ExplainConfig) -> list[Window]:
    top = split_windows(windows, "train", ("top",))[: settings.n_top]
    quantile = sorted(split_windows(windows, "train", ("quantile",)), key=lambda w: -w.max_act)
    step = max(1, len(quantile) // max(1, settings.n_quantile))
    return top + quantile[::step][: settings.n_quantile]


def format_example(window: Window, feature_max: float) -> str:
    """One line: the window's text with firing tokens marked and their 0-10 strength, e.g. <<Paris>>(10)."""
    values = scale_0_10(window.acts, feature_max)
    mask = values >= 1
    if not mask.any():  # a weak window still shows its strongest token
        mask = np.zeros_like(mask)
        mask[int(np.argmax(window.acts))] = True
        values = np.maximum(values, 1)
    return marked(window, mask, values)


def parse_label(raw: str, max_chars: int) -> str | None:
    """The label in an explainer answer, or None when there is nothing usable.

    Lenient on purpose: a small model often copies the example format into its answer, so marks and
    strength annotations are removed rather than the answer thrown away; the scorers judge the result.
    """
    for line in raw.replace("\r", "\n").split("\n"):
        text = _BOILERPLATE.sub("", _LIST_MARKER.sub("", line), count=1)
        text = _ANNOTATION.sub("", text.replace(MARK_OPEN, "").replace(MARK_CLOSE, ""))
        text = " ".join(text.split()).strip(_EDGE_PUNCTUATION)
        if not text:
            continue
        if not re.search(r"[A-Za-z]{2}", text) or text.lower().startswith(("examples", "neuron ")):
            return None  # digits/punctuation only, or the model started another example block
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0].rstrip(_EDGE_PUNCTUATION) or text[:max_chars]
        return text
    return None
