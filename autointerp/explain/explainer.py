"""The explainer: show a feature's training exemplars to an LLM and parse a short label from its answer.

Prompt: the ``explainer`` template filled with numbered examples, each the window text with the tokens the
feature fires on marked <<like this>> and their strengths normalised to 0-10 against the feature's max.
Parsing is defensive because small models ramble: first non-empty line, boilerplate ("Explanation:",
"This neuron detects ...") stripped, quotes removed, length capped; an empty or garbage answer becomes
a failed label (recorded with its reason and retried next run), never an empty string that gets scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from autointerp.explain.config import ExplainConfig
from autointerp.explain.llm.base import LLMClient, Usage
from autointerp.explain.prompts import Template
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


@dataclass
class Explanation:
    feature: int
    label: str | None  # None when the answer held no usable label
    raw: str
    error: str | None
    usage: Usage


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


def build_prompt(template: Template, windows: list[Window], settings: ExplainConfig) -> str:
    chosen = [w.trimmed(settings.window_before, settings.window_after) for w in choose_examples(windows, settings)]
    feature_max = max((w.max_act for w in chosen), default=0.0)
    lines = [format_example(w, feature_max) for w in chosen]
    return template.render(examples="\n".join(lines))


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


async def explain_feature(client: LLMClient, template: Template, feature: int, windows: list[Window], settings: ExplainConfig) -> Explanation:
    """Ask the LLM for one feature's label; failures are returned (with reason), not raised."""
    from autointerp.explain.llm.base import LLMError

    if not split_windows(windows, "train", ("top", "quantile")):
        return Explanation(feature, None, "", "no training exemplars (feature never fired in the harvest)", Usage())
    prompt = build_prompt(template, windows, settings)
    try:
        if settings.chat:
            out = await client.chat([{"role": "user", "content": prompt}], max_tokens=settings.max_tokens)
        else:
            out = await client.complete(prompt, max_tokens=settings.max_tokens)
    except LLMError as exc:
        return Explanation(feature, None, "", f"LLM request failed: {exc.reason}", Usage())
    label = parse_label(out.text, settings.max_label_chars)
    error = None if label else f"no usable label in the answer {out.text.strip()[:80]!r}"
    return Explanation(feature, label, out.text, error, out.usage)
