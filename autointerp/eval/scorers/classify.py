"""Shared machinery of the yes/no scorers (detection, fuzzing; Paulo et al. 2024).

Each scoring item is one window rendered into the scorer's template and asked as a yes/no question, one
request per item (max 1 new token). With logprobs, P(yes) = p(yes) / (p(yes) + p(no)) from the first
answer token's top alternatives gives an AUROC and the prediction P(yes) > 0.5; without, the answer
text is parsed. ``value`` is the AUROC when P(yes) exists for every item, else the balanced accuracy
(both are also reported separately).

At sequence level an item is built from whole documents (``document_text``) and asked with the scorer's
sequence template, whose placeholder is ``document_slot``; the prompt ends right after "Answer:", as in
its few-shot examples.
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod

from autointerp.explain.llm.base import LLMClient, LLMError, Usage
from autointerp.eval.scorers.base import ScoreResult, Scorer, answer_probability, auroc, balanced_accuracy, parse_yes_no
from autointerp.rundir.windows import Window


class YesNoScorer(Scorer):
    document_slot = "document"  # the sequence template's placeholder for the item

    @abstractmethod
    def items(self, chosen: list[Window]) -> list[tuple[str, bool]]:
        """(text shown in the template's {{example}}, whether the right answer is yes) per scoring item."""

    async def score(self, client: LLMClient | None, windows: list[Window], label: str) -> ScoreResult:
        items = self.items(self.scoring_set(windows))
        answers = await asyncio.gather(*(self._ask(client, label, text) for text, _ in items))
        usage = Usage()
        for _, _, u in answers:
            usage.add(u)
        truth = [positive for _, positive in items]
        probs = [p for p, _, _ in answers]
        said = [a for _, a, _ in answers]
        unanswered = sum(a is None for a in said)
        if not items:
            return ScoreResult(math.nan, {"balanced_accuracy": math.nan, "auroc": math.nan, "n_items": 0, "unanswered": 0}, usage)
        if unanswered == len(items):
            raise LLMError("the LLM answered neither yes nor no to any item", usage)
        predicted = [bool(a) for a in said]  # no answer counts as "no"
        bacc = balanced_accuracy(truth, predicted)
        roc = auroc(truth, probs) if all(p is not None for p in probs) else math.nan
        value = roc if not math.isnan(roc) else bacc
        return ScoreResult(value, {"balanced_accuracy": bacc, "auroc": roc, "n_items": len(items), "unanswered": unanswered}, usage)

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
