"""A deterministic LLM stand-in for the scorer tests (tests/eval/test_scorers.py, tests/exemplars/test_hard_negatives.py)."""

from __future__ import annotations

import math
import re

from autointerp.llm.base import Completion, LLMClient, TokenLogprob, Usage


class KeywordOracle(LLMClient):
    """A deterministic LLM stand-in that 'understands' a label exactly: a word fires iff it occurs in the label.

    It is not the component under test (the scorers are): it gives each scorer a reader whose answers are
    known, so a perfect label must score ~1 and a shuffled one ~chance. Logprobs are real log(probabilities).
    """

    model_name = "keyword-oracle"
    supports_logprobs = True

    def __init__(self):
        self.usage = Usage()

    async def chat(self, messages, *, max_tokens=256, temperature=0.0, logprobs=None):
        prompt = messages[-1]["content"]
        if "Repeat every line" in prompt:  # chat-mode simulation: fill in a number per listed word
            label_words = set(re.search(r"detects: (.*)", prompt).group(1).lower().split())
            listed = prompt.split("Paris\t10\n", 1)[1]  # the words after the template's worked example
            words = [line[:-1] for line in listed.splitlines() if line.endswith("\t")]
            reply = "\n".join(f"{w}\t{10 if w.strip().lower() in label_words else 0}" for w in words)
            return Completion(reply, Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(words), calls=1))
        return await self.complete(prompt, max_tokens=max_tokens, logprobs=logprobs)

    async def complete(self, prompt, *, max_tokens=256, temperature=0.0, logprobs=None, echo=False, echo_at=None):
        label_words = set(re.search(r"detects: (.*)", prompt).group(1).lower().split())
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=1, calls=1)
        if echo:  # simulation: one record per character run; slots are the characters after a tab
            records, pos = [], 0
            for line in prompt.splitlines(keepends=True):
                if "\t" in line and not line.startswith(("the\t", "capital\t", "Paris\t")):
                    word, rest = line.split("\t", 1)
                    fires = word.strip().lower() in label_words
                    top = {"10": math.log(0.9), "0": math.log(0.1)} if fires else {"0": math.log(0.95), "1": math.log(0.05)}
                    records.append(TokenLogprob(word + "\t", -1.0, {}, pos))
                    records.append(TokenLogprob(rest, -1.0, top, pos + len(word) + 1))
                else:
                    records.append(TokenLogprob(line, -1.0, {}, pos))
                pos += len(line)
            return Completion(prompt, usage, records)
        text = prompt.rsplit("Text:", 1)[1].lower()
        marked = re.findall(r"<<(.*?)>>", text)
        hits = [w for w in (marked or re.findall(r"[a-z]+", text)) if set(w.split()) & label_words]
        fires = bool(hits) and (not marked or len(hits) == len(marked))
        p_yes = 0.9 if fires else 0.1
        return Completion(" yes" if fires else " no", usage, [TokenLogprob(" yes" if fires else " no", 0.0, {" yes": math.log(p_yes), " no": math.log(1 - p_yes)})])
