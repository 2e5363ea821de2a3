"""Shared machinery of the yes/no scorers (detection, fuzzing; Paulo et al. 2024).

Each scoring item is one window rendered into the scorer's template and asked as a yes/no question, one
request per item (max 1 new token). With logprobs, P(yes) = p(yes) / (p(yes) + p(no)) from the first
answer token's top alternatives gives an AUROC and the prediction P(yes) > 0.5; without, the answer
text is parsed. ``value`` is the AUROC when P(yes) exists for every item, else the balanced accuracy
(both are also reported separately). ``hard`` is the same measure on the hard-negative items: the scoring
set's "yes" items (their answers reused, not asked again) and one "no" item per hard negative drawn.

At sequence level an item is built from whole documents (``document_text``) and asked with the scorer's
sequence template, whose placeholder is ``document_slot``; the prompt ends right after "Answer:", as in
its few-shot examples.
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod

from autointerp.llm.base import LLMClient, LLMError, Usage
from autointerp.eval.scorers.base import ScoreResult, Scorer, answer_probability, balanced_accuracy, parse_yes_no
from autointerp.explain.select import auroc
from autointerp.rundir.windows import Window


class YesNoScorer(Scorer):
    document_slot = "document"  # the sequence template's placeholder for the item

    @abstractmethod
    def items(self, chosen: list[Window]) -> list[tuple[str, bool]]:
        """(text shown in the template's {{example}}, whether the right answer is yes) per scoring item."""

    @abstractmethod
    def hard_items(self, chosen: list[Window], items: list[tuple[str, bool]], hard: list[Window]) -> list[tuple[str, bool]]:
        """The items of the hard-negative comparison: the scoring set's "yes" items with items made from the
        hard negatives ``hard`` as the "no" ones."""

    def n_hard(self, items: list[tuple[str, bool]]) -> int | None:
        """How many hard negatives the comparison draws (None: all): as many as random negatives are drawn."""
        return self.settings.n_random

    async def score(self, client: LLMClient | None, windows: list[Window], label: str) -> ScoreResult:
        chosen = self.scoring_set(windows)
        items = self.items(chosen)
        hard = self.hard_negatives(windows, self.n_hard(items))
        hard_items = self.hard_items(chosen, items, hard) if hard else []
        asked = {text for text, _ in items}
        extra = [text for text in dict.fromkeys(text for text, _ in hard_items) if text not in asked]  # yes items are asked once
        texts = [t for t, _ in items] + extra
        answers = await asyncio.gather(*(self._ask(client, label, text) for text in texts))
        usage = Usage()
        for _, _, u in answers:
            usage.add(u)
        if not items:
            return ScoreResult(math.nan, {"balanced_accuracy": math.nan, "auroc": math.nan, "n_items": 0, "unanswered": 0}, usage)
        unanswered = sum(a is None for _, a, _ in answers[: len(items)])
        if unanswered == len(items):
            raise LLMError("the LLM answered neither yes nor no to any item", usage)
        value, bacc, roc = _metrics([t for _, t in items], answers[: len(items)])
        by_text: dict = {}
        for text, answer in zip(texts, answers):
            by_text.setdefault(text, answer)
        hard_value = _metrics([t for _, t in hard_items], [by_text[text] for text, _ in hard_items])[0] if hard_items else math.nan
        return ScoreResult(value, {"balanced_accuracy": bacc, "auroc": roc, "n_items": len(items), "unanswered": unanswered}, usage,
                           hard_value, len(hard) if hard_items else 0)

    async def _ask(self, client: LLMClient, label: str, text: str) -> tuple[float | None, bool | None, Usage]:
        if self.sequence:
            prompt = self.template.render(label=label, **{self.document_slot: text}).rstrip("\n")
        else:
            prompt = self.template.render(label=label, example=text)
        want = self.settings.top_logprobs if (client.supports_logprobs and self.settings.use_logprobs) else None
        if self.settings.chat:  # the answer token's logprobs come back as the first generated token's
            out = await client.chat([{"role": "user", "content": prompt}], max_tokens=1, logprobs=want)
        else:
            out = await client.complete(prompt, max_tokens=1, logprobs=want)
        prob = answer_probability(out.logprobs[-1].top) if (want and out.logprobs) else None
        answer = parse_yes_no(out.text)
        if prob is not None:
            answer = prob > 0.5
        return prob, answer, out.usage


def _metrics(truth: list[bool], answers: list[tuple[float | None, bool | None, Usage]]) -> tuple[float, float, float]:
    """(value, balanced accuracy, AUROC) of yes/no answers: the AUROC of P(yes) when every item has one, else the
    balanced accuracy (no answer counts as "no")."""
    bacc = balanced_accuracy(truth, [bool(a) for _, a, _ in answers])
    roc = auroc(truth, [p for p, _, _ in answers]) if all(p is not None for p, _, _ in answers) else math.nan
    return (roc if not math.isnan(roc) else bacc), bacc, roc
