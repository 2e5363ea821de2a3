"""Simulation scoring (Bills et al. 2023): can an LLM, given only the label, predict activations per token?

Every scoring window is written one token per line as ``token<TAB>slot``. With logprobs (the default
when the backend has them) the prompt is sent once with ``echo=True``: at each slot the LLM's top
alternatives give a distribution over "0".."10" and the prediction is its expected value ("all at
once" in Bills et al.; one request per feature and label). Tokenizers that split "10" into "1","0"
only ever show 0-9 at the slot; the scale is relative, so the correlation is unaffected.
Without logprobs the LLM writes the numbers and they are parsed. Score: Pearson r between predicted and
true activations pooled over all tokens of the scoring set. The feature's hard negatives are appended to the
same prompt, after the scoring set: a causal LLM reads them after everything else, so the predictions on the
scoring set are those made without them (the same request costs only their tokens), and ``hard`` is Pearson r
over the activating windows' tokens and theirs.

At sequence level (one activation per document) the LLM rates each WHOLE document instead: one prompt per
document (template ``simulator_sequence``: the label and the document, ending where the 0-10 rating goes),
the prediction is the expected rating over the digits among the first answer token's top alternatives
(parsed from the text without logprobs), and the score is Pearson r over the scoring set's documents
between that prediction and the document's activation. A document's prompt holds nothing but the label and
its text, so where the activation sits in the window, or where the document comes in the scoring set,
cannot change its prediction.
"""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np

from autointerp.llm.base import LLMClient, LLMError, Usage
from autointerp.eval.scorers.base import ScoreResult, Scorer, against_hard, document_activation, document_text, pearson, with_offsets
from autointerp.rundir.windows import Window

SLOT = "0"  # placeholder the prompt carries at each slot; only the distribution predicted there is read
DIGITS = {str(d): d for d in range(11)}


def token_text(piece: str) -> str:
    text = " ".join(piece.split())
    return text or "_"


def build_block(windows: list[Window]) -> tuple[str, list[int]]:
    """The examples block and the character offset of every slot in it (windows separated by a blank line)."""
    parts: list[str] = []
    slots: list[int] = []
    pos = 0
    for wi, window in enumerate(windows):
        if wi:
            parts.append("\n")
            pos += 1
        for piece in window.pieces:
            line = f"{token_text(piece)}\t"
            slots.append(pos + len(line))
            line += SLOT + "\n"
            parts.append(line)
            pos += len(line)
    return "".join(parts), slots


def expected_digit(top: dict[str, float]) -> float | None:
    """E[value] over the digits among a position's top alternatives; None when no digit is among them."""
    weights = {DIGITS[k.strip()]: math.exp(v) for k, v in top.items() if k.strip() in DIGITS}
    total = sum(weights.values())
    if total == 0:
        return None
    return sum(d * w for d, w in weights.items()) / total


class SimulationScorer(Scorer):
    name = "simulation"
    template_name = "simulator"
    template_placeholders = ("label", "examples")
    sequence_template_name = "simulator_sequence"
    sequence_template_placeholders = ("label", "document")
    definition = "Pearson r between the LLM's predicted per-token activation (0-10; expected value over digit logprobs at each token's slot when available, else parsed numbers) and the true activations, pooled over the held-out scoring windows"
    sequence_definition = "sequence level: Pearson r over the held-out documents (activating + random) between the LLM's one rating per whole document given the label (0-10; expected value over the digits among the answer token's top logprobs when available, else the parsed number; one prompt per document) and the document's activation"

    async def score(self, client: LLMClient | None, windows: list[Window], label: str) -> ScoreResult:
        if self.sequence:
            return await self._score_documents(client, windows, label)
        chosen, hard = self.scoring_set(windows), self.hard_negatives(windows, self.settings.n_random)
        shown = chosen + hard  # hard negatives last: the LLM reads them after the rest, whose predictions stay as without them
        if self.settings.chat:
            predicted, usage, missing = await self._by_chat(client, shown, label)
        elif client.supports_logprobs and self.settings.use_logprobs:
            predicted, usage, missing = await self._by_logprobs(client, shown, label)
        else:
            predicted, usage, missing = await self._by_generation(client, shown, label)
        truth = np.concatenate([w.acts for w in shown]) if shown else np.zeros(0)
        owner = np.repeat(np.arange(len(shown)), [len(w.acts) for w in shown])  # the window of each token
        base = owner < len(chosen)
        value, hard_value = self._both(predicted, truth, owner, chosen, len(hard))
        return ScoreResult(value, {"n_tokens": int(base.sum()), "n_windows": len(chosen), "slots_without_digits": missing}, usage,
                           hard_value, len(hard))

    @staticmethod
    def _both(predicted: np.ndarray, truth: np.ndarray, owner: np.ndarray, chosen: list[Window], n_hard: int) -> tuple[float, float]:
        """Pearson r over the scoring set's items, and over its activating windows' items plus the hard negatives'."""
        base = owner < len(chosen)
        against, _ = against_hard(chosen, n_hard)
        hard = np.isin(owner, against)
        return pearson(predicted[base], truth[base]), (pearson(predicted[hard], truth[hard]) if n_hard else math.nan)

    # ------------------------------------------------------------------ sequence level: whole documents
    async def _score_documents(self, client: LLMClient, windows: list[Window], label: str) -> ScoreResult:
        chosen, hard = self.scoring_set(windows), self.hard_negatives(windows, self.settings.n_random)
        truth = np.asarray([document_activation(w) for w in chosen + hard], dtype=np.float64)
        predicted, usage, missing = await self.predict_documents(client, chosen + hard, label)
        value, hard_value = self._both(predicted, truth, np.arange(len(truth)), chosen, len(hard))
        return ScoreResult(value, {"n_documents": len(chosen), "documents_without_rating": missing}, usage, hard_value, len(hard))

    async def predict_documents(self, client: LLMClient, documents: list[Window], label: str) -> tuple[np.ndarray, Usage, int]:
        """One rating per document (0-10, a float), the usage, and how many documents got no rating (predicted 0)."""
        answers = await asyncio.gather(*(self.rate_document(client, label, document_text(w)) for w in documents))
        usage = Usage()
        for _, u in answers:
            usage.add(u)
        missing = sum(value is None for value, _ in answers)
        if documents and missing == len(documents):
            raise LLMError("no document got a 0-10 rating (no digit among the answer's top logprobs or in its text)", usage)
        return np.asarray([0.0 if value is None else value for value, _ in answers], dtype=np.float64), usage, missing

    async def rate_document(self, client: LLMClient, label: str, document: str) -> tuple[float | None, Usage]:
        """The LLM's expected 0-10 rating of one whole document given the label (None when it gave none)."""
        prompt = self.template.render(label=label, document=document).rstrip("\n")  # ends where the rating goes
        want = self.settings.top_logprobs if (client.supports_logprobs and self.settings.use_logprobs) else None
        if self.settings.chat:
            out = await client.chat([{"role": "user", "content": prompt + "\n\nReply with the activation only: one whole number from 0 to 10."}],
                                    max_tokens=3, logprobs=want)
        else:
            out = await client.complete(prompt, max_tokens=1 if want else 3, logprobs=want)
        value = expected_digit(out.logprobs[0].top) if (want and out.logprobs) else None
        if value is None:
            match = re.match(r"\s*(\d+)", out.text or "")
            value = min(10.0, float(match.group(1))) if match else None
        return value, out.usage

    # ------------------------------------------------------------------ token level
    async def _by_logprobs(self, client: LLMClient, chosen: list[Window], label: str):
        block, slots = build_block(chosen)
        anchor = self.template.render(label=label, examples="\x00").index("\x00")
        prompt = self.template.render(label=label, examples=block)
        out = await client.complete(prompt, max_tokens=1, logprobs=self.settings.top_logprobs, echo=True,
                                    echo_at=[anchor + slot for slot in slots])  # only the slots are read
        if not out.logprobs:
            raise LLMError("the backend returned no prompt logprobs for an echo request")
        by_offset = {r.text_offset: r for r in with_offsets(out.logprobs)}
        predicted, missing = [], 0
        for slot in slots:
            record = by_offset.get(anchor + slot)
            value = expected_digit(record.top) if record is not None else None
            missing += value is None
            predicted.append(0.0 if value is None else value)
        if missing == len(slots):
            raise LLMError("no slot's top logprobs contained a digit (tokenizer merges the slot, or the server ignores echo)")
        return np.asarray(predicted), out.usage, missing

    async def _by_chat(self, client: LLMClient, chosen: list[Window], label: str):
        """Chat-only APIs (no echo): one message per window listing its tokens; the reply's lines are read in
        order, the number after each token's tab (a line without one counts as missing, predicted 0)."""
        usage, predicted, missing = Usage(), [], 0
        for window in chosen:
            lines = "".join(f"{token_text(piece)}\t\n" for piece in window.pieces)
            prompt = self.template.render(label=label, examples=lines) + "\nRepeat every line above with its number filled in, one line per word, nothing else."
            out = await client.chat([{"role": "user", "content": prompt}], max_tokens=6 * len(window.pieces) + 8)
            usage.add(out.usage)
            numbers = [re.search(r"\t\s*(\d+)\s*$", line) for line in out.text.strip().split("\n")]
            for i in range(len(window.pieces)):
                match = numbers[i] if i < len(numbers) else None
                missing += match is None
                predicted.append(min(10.0, float(match.group(1))) if match else 0.0)
        return np.asarray(predicted), usage, missing

    async def _by_generation(self, client: LLMClient, chosen: list[Window], label: str):
        """No logprobs: one request per window; the LLM continues the token<TAB>number lines itself."""
        usage, predicted, missing = Usage(), [], 0
        for window in chosen:
            first = f"{token_text(window.pieces[0])}\t"
            prompt = self.template.render(label=label, examples=first)
            out = await client.complete(prompt, max_tokens=4 * len(window.pieces) + 4)
            usage.add(out.usage)
            lines = (first + out.text).split("\n")
            values = []
            for i in range(len(window.pieces)):
                match = re.search(r"\t\s*(\d+)", lines[i]) if i < len(lines) else None
                missing += match is None
                values.append(min(10.0, float(match.group(1))) if match else 0.0)
            predicted.extend(values)
        return np.asarray(predicted), usage, missing
