"""Best-of-n labels: several candidate labels per feature, one kept by its score on TRAINING windows.

Why: a small explainer's first answer is often a copied fragment; asking a few ways and keeping the label
that best separates the feature's training windows from random ones costs a few calls and needs no better
model. Candidates, in order (``[explain] n_candidates`` of them): the plain prompt (``explainer``
template) greedily; the prompt with the lexical profile (``explainer_profile``) greedily; then the two
alternately sampled at ``[explain] temperature``. A candidate that copies the prompt template's own text is
rejected; one that restates a shown window is flagged (the rate is reported) and kept only when every usable
LLM candidate of the feature restates one: its training score is inflated (it is scored against the very
training windows it was copied from), so a non-restating candidate wins over it whatever the scores.

The lexical label (``autointerp.explain.lexical``) competes too: the final label is whichever of the best
LLM candidate and the lexical label scores higher on the training windows (ties go to the LLM label). The
word-only label (``word_label``) replaces that choice only when it leads it by more than ``WORD_LEAD``: it
says nothing about when its words fire, so it must be clearly better, not better within the noise of
training windows. A lexical label whose context phrases came from a few top windows can score below the bare
words on windows across the feature's range (measured on the prose benchmark: docs/labels.md).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from autointerp.exemplars.profile import LexicalProfile
from autointerp.explain.config import ExplainConfig
from autointerp.explain.explainer import choose_examples, format_example, parse_label
from autointerp.explain.format import split_windows
from autointerp.explain.lexical import copies_template, lexical_label, restates_window, word_label
from autointerp.llm.base import LLMClient, LLMError, Usage
from autointerp.explain.prompts import Template
from autointerp.explain.select import best_index, train_scores
from autointerp.rundir.windows import Window

# The word-only label's required lead in training AUROC over the label otherwise chosen: the paired
# difference of two labels' training AUROCs on one feature's windows varies by about this much when the
# windows are resampled (bootstrap over the training windows of the benchmark features, docs/labels.md).
WORD_LEAD = 0.05


@dataclass
class Candidate:
    text: str | None
    source: str  # llm | lexical | word
    raw: str = ""
    error: str | None = None
    restates: bool = False
    template_copy: bool = False
    train_score: float = math.nan
    kept: bool = False


@dataclass
class FeatureLabels:
    feature: int
    candidates: list[Candidate] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def best(self, source: str) -> Candidate | None:
        """The highest training score among the usable candidates of ``source``; a candidate restating a
        shown window only when all of them do."""
        pool = [c for c in self.candidates if c.source == source and c.text and not c.template_copy]
        pool = [c for c in pool if not c.restates] or pool
        i = best_index([c.train_score for c in pool])
        return pool[i] if i is not None else None


def render(template: Template, windows: list[Window], settings: ExplainConfig, profile: LexicalProfile | None) -> tuple[str, list[str]]:
    """The prompt and the shown window lines (for the restating check).

    The prompt ends where the label goes (trailing whitespace cut): a template ending "Label:" plus the
    file's final newline would put a completion model at the start of a new line, where the likeliest
    continuation is one more window, not a label."""
    chosen = [w.trimmed(settings.window_before, settings.window_after) for w in choose_examples(windows, settings)]
    feature_max = max((w.max_act for w in chosen), default=0.0)
    lines = [format_example(w, feature_max) for w in chosen]
    values = {"examples": "\n".join(lines)}
    if "profile" in template.placeholders:
        values["profile"] = profile.summary() if profile is not None else "(none)"
    return template.render(**values).rstrip(), lines


async def llm_candidates(client: LLMClient, templates: list[Template], windows: list[Window], settings: ExplainConfig, profile: LexicalProfile | None, usage: Usage) -> list[Candidate]:
    out: list[Candidate] = []
    for i in range(settings.n_candidates):
        template = templates[i % len(templates)]
        temperature = 0.0 if i < len(templates) else settings.temperature
        prompt, lines = render(template, windows, settings, profile)
        try:
            if settings.chat:
                answer = await client.chat([{"role": "user", "content": prompt}], max_tokens=settings.max_tokens, temperature=temperature)
            else:
                answer = await client.complete(prompt, max_tokens=settings.max_tokens, temperature=temperature)
        except LLMError as exc:
            usage.add(exc.usage)
            out.append(Candidate(None, "llm", error=f"LLM request failed: {exc.reason}"))
            continue
        usage.add(answer.usage)
        if answer.cached and answer.paid_usage is not None:  # keep what the label originally cost (not counted again in run totals)
            usage.prompt_tokens += answer.paid_usage.prompt_tokens
            usage.completion_tokens += answer.paid_usage.completion_tokens
            usage.cost_usd += answer.paid_usage.cost_usd
        label = parse_label(answer.text, settings.max_label_chars)
        cand = Candidate(label, "llm", raw=answer.text, error=None if label else f"no usable label in the answer {answer.text.strip()[:80]!r}")
        if label:
            cand.template_copy = copies_template(label, template.text)
            cand.restates = restates_window(label, [w.text or "" for w in windows if w.split == "train"] + lines)
            if cand.template_copy:
                cand.error = "copies the prompt template's own example; rejected"
        if any(c.text == cand.text and c.text for c in out):
            continue  # a repeat adds nothing to choose from
        out.append(cand)
    return out


async def label_feature(client: LLMClient | None, templates: list[Template], feature: int, windows: list[Window], settings: ExplainConfig, profile: LexicalProfile | None, *, score_before: int, score_after: int, embedder: str) -> FeatureLabels:
    """Every candidate of one feature with its training-window score, the kept ones marked.

    ``windows`` must be the feature's training windows: the stage loads no others.
    """
    result = FeatureLabels(feature)
    if not split_windows(windows, "train", ("top", "quantile")):
        result.candidates.append(Candidate(None, "llm", error="no training exemplars (feature never fired in the harvest)"))
        return result
    if client is not None and settings.labeller == "llm":
        result.candidates = await llm_candidates(client, templates, windows, settings, profile, result.usage)
    if settings.lexical:
        lexical = lexical_label(profile)
        result.candidates.append(Candidate(lexical, "lexical"))
        words = word_label(profile)
        if words and words != lexical:  # the same text could never lead itself
            result.candidates.append(Candidate(words, "word"))
    usable = [c for c in result.candidates if c.text and not c.template_copy]
    if settings.choose_by == "embedding" and usable:
        scores = await asyncio.to_thread(train_scores, [c.text for c in usable], windows, before=score_before, after=score_after, embedder=embedder)
        for c, s in zip(usable, scores):
            c.train_score = s
    for c in (result.best("llm"), result.best("lexical"), result.best("word")):
        if c is not None:
            c.kept = True
    return result


def _score(c: Candidate) -> float:
    return c.train_score if not math.isnan(c.train_score) else -math.inf


def final_choice(result: FeatureLabels) -> Candidate | None:
    """The final label: the best LLM candidate unless the lexical label scores strictly higher on training
    windows; the word-only label instead only when it leads that choice by more than ``WORD_LEAD``."""
    llm, lexical, words = result.best("llm"), result.best("lexical"), result.best("word")
    chosen = llm or lexical if llm is None or lexical is None else lexical if _score(lexical) > _score(llm) else llm
    if words is not None and (chosen is None or _score(words) > _score(chosen) + WORD_LEAD):
        return words
    return chosen
