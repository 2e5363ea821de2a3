"""The lexical labeller and the checks that tell a real description from a copied fragment.

Why a lexical baseline: a label from the explainer is only worth reading if it says more than the words the
feature fires on. ``lexical_label`` states those words deterministically from the feature's lexical profile
(``autointerp.exemplars.profile``), and goes through the same scorers as an LLM label, so the report can say
whether the LLM beats it.

Why the copy checks: a small base model often restates an exemplar fragment ("5 years (2024 est") or copies
the prompt's own few-shot example ("the capital is Paris and the largest"). ``restates_window`` and
``copies_template`` detect both (case- and space-insensitive substring tests); template copies are rejected
as candidates, restatements are counted and reported.
"""

from __future__ import annotations

import re

from autointerp.exemplars.profile import INSIDE, MAIN_WORDS, MIN_WORD_SHARE, LexicalProfile

DOMINANT_SHARE = 0.5  # one word carrying at least this share of the activation mass makes a "the word" label
MIN_CONTEXT_SHARE = 0.15  # a context phrase must occur around this share of peaks to be quoted
_MIN_COPY_CHARS = 8  # shorter labels ("per", "the") are words, not copies
_TEMPLATE_RUN_WORDS = 4  # a label sharing this many consecutive words with the prompt template copies it


def _norm(text: str) -> str:
    return " ".join(re.sub(r"<<|>>|\(\d{1,2}\)", " ", text).lower().split())


def _contexts(profile: LexicalProfile, word: str, n: int = 2) -> list[str]:
    """Up to ``n`` frequent phrases around the peak: "per 100" (right context) or "US dollars per" (left)."""
    out = []
    for kind in ("right", "left"):
        for text, share, _ in profile.top(kind, n):
            if share < MIN_CONTEXT_SHARE:
                continue
            phrase = f"{word} {text}" if kind == "right" else f"{text} {word}"
            out.append((share, phrase))
    return [p for _, p in sorted(out, key=lambda sp: -sp[0])[:n]]


def lexical_label(profile: LexicalProfile | None) -> str | None:
    """A deterministic label from the profile; None when the feature has no profile (never fired in training).

    One dominant word: ``the word "per" (in "per 100", "per capita")``; otherwise its main words and the
    most frequent context: ``the words "est", "July", "(" (in "(2023 est")``; a feature whose peaks mostly sit
    at the start of a line or sentence says so (``..., at the start of a line``), and one that mostly fires in
    one document entity too: ``... mostly in Nigeria``.
    """
    if profile is None:
        return None
    words = profile.top("word", 4)
    if not words:
        tokens = profile.top("token", 3)
        if not tokens:
            return None
        words = tokens
    head, share, _ = words[0]
    if share >= DOMINANT_SHARE:
        label = f'the word "{head}"'
        contexts = _contexts(profile, head)
    else:
        named = [w for w, s, _ in words if s >= MIN_WORD_SHARE][:MAIN_WORDS] or [head]
        label = f'the word "{head}"' if len(named) == 1 else "the words " + ", ".join(f'"{w}"' for w in named)
        contexts = _contexts(profile, head, 1)
    if contexts:
        label += " (in " + ", ".join(f'"{c}"' for c in contexts) + ")"
    position = profile.top("position", 1)
    if position and position[0][0] != INSIDE and position[0][1] >= DOMINANT_SHARE:
        label += f", {position[0][0]}"
    entity = profile.top("entity", 1)
    if entity and entity[0][1] >= DOMINANT_SHARE:
        label += f", mostly in {entity[0][0]}"
    return label


def word_label(profile: LexicalProfile | None) -> str | None:
    """The word-only baseline: the feature's main words and nothing about when they fire (``the word "per"``,
    ``the words "est", "July"``). Against hard negatives it should score near chance on a contextual feature: a
    label only beats it by saying *when* the word fires."""
    if profile is None:
        return None
    words = ([w for w, s, _ in profile.top("word", MAIN_WORDS) if s >= MIN_WORD_SHARE] or [w for w, _, _ in profile.top("word", 1)]
             or [t for t, _, _ in profile.top("token", 1)])
    if not words:
        return None
    return f'the word "{words[0]}"' if len(words) == 1 else "the words " + ", ".join(f'"{w}"' for w in words)


def restates_window(label: str, window_texts: list[str]) -> bool:
    """The label is (case- and space-insensitively) a substring of one of the windows shown to the explainer."""
    norm = _norm(label)
    return len(norm) >= _MIN_COPY_CHARS and any(norm in _norm(text) for text in window_texts)


def _word_runs(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[^\W_]+", _norm(text))
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def copies_template(label: str, template_text: str) -> bool:
    """The label is a fragment of the prompt template's own text (its few-shot examples), or shares a run of
    ``_TEMPLATE_RUN_WORDS`` consecutive words with it: a near copy such as "the song was released in 1998"
    (from the example window "the song was released <<in>>(10) March 1998") or an example label's tail
    pasted after another word ('"next" before a date or season')."""
    norm = _norm(label)
    text = template_text.replace("{{examples}}", " ").replace("{{profile}}", " ")
    if len(norm) >= _MIN_COPY_CHARS and norm in _norm(text):
        return True
    return bool(_word_runs(label, _TEMPLATE_RUN_WORDS) & _word_runs(text, _TEMPLATE_RUN_WORDS))
