"""Fuzzing scoring (Paulo et al. 2024): given the label, can an LLM tell correctly marked tokens from wrong ones?

Activating test windows alternate between the truth (the tokens where the feature fires are marked) and
a decoy (the same number of marks on tokens where it does not fire, chosen with a seeded RNG).
Non-activating windows are not used: fuzzing asks about token-level precision, not detection.

At sequence level there are no tokens to mark (one activation per document), so the mark goes on a whole
document: each item shows two held-out documents, one activating and one random (never fired on), with
<<...>> around one of them — the activating one on even items (true), the other on odd items (decoy) — and
asks whether the marked document is the one the neuron fires on (template ``fuzzing_sequence``). Which
document comes first alternates independently of the truth (true-first, decoy-first, true-second,
decoy-second, ...), so a preference for the first or second document cannot raise the score.

Against hard negatives the decoys are the hard negatives with the feature's own word marked where it does
not fire (as many as the token-level items hold decoys), next to the same truly marked items: a label that
only names the word says yes to both.
"""

from __future__ import annotations

import zlib

import numpy as np

from autointerp.eval.scorers.base import _spread, document_text
from autointerp.eval.scorers.classify import YesNoScorer
from autointerp.explain.format import marked, split_windows
from autointerp.rundir.windows import Window


class FuzzingScorer(YesNoScorer):
    name = "fuzzing"
    template_name = "fuzzing"
    template_placeholders = ("label", "example")
    sequence_template_name = "fuzzing_sequence"
    sequence_template_placeholders = ("label", "documents")
    document_slot = "documents"
    sequence_definition = "sequence level: LLM shown two held-out whole documents, one activating and one random, with one marked (the activating one on half the items, the random one on the other half; order alternating independently) and asked 'is the marked document the one the neuron fires on?' given the label; AUROC of P(yes) when logprobs exist, else balanced accuracy"
    definition = "LLM asked per held-out activating window 'are the marked tokens the ones the feature fires on?' given the label; half the windows carry the true marks, half decoy marks on non-firing tokens; AUROC of P(yes) when logprobs exist, else balanced accuracy"

    def items(self, chosen: list[Window]) -> list[tuple[str, bool]]:
        if self.sequence:
            return self._document_pairs([w for w in chosen if w.activating], [w for w in chosen if not w.activating])
        active = [w for w in chosen if w.activating]
        out = []
        for i, window in enumerate(active):
            truth = window.acts > 0
            if i % 2 == 0 or truth.all():
                out.append((marked(window, truth), True))
                continue
            rng = np.random.default_rng([self.settings.seed, i, zlib.crc32(window.text.encode())])
            candidates = np.flatnonzero(~truth)
            decoy = np.zeros_like(truth)
            decoy[rng.choice(candidates, size=min(len(candidates), max(1, int(truth.sum()))), replace=False)] = True
            out.append((marked(window, decoy), False))
        return out

    def hard_items(self, chosen: list[Window], items: list[tuple[str, bool]], hard: list[Window]) -> list[tuple[str, bool]]:
        """The truly marked items, with decoys from the hard negatives: the feature's own word marked where it
        does not fire (its token is the window's ``max_index``). At sequence level: the document pairs with hard
        negatives in place of the random documents."""
        if self.sequence:
            return self._document_pairs([w for w in chosen if w.activating], hard)
        decoys = []
        for window in hard:
            mark = np.zeros(len(window.acts), dtype=bool)
            mark[window.max_index] = True
            decoys.append((marked(window, mark), False))
        return [item for item in items if item[1]] + decoys

    def n_hard(self, items: list[tuple[str, bool]]) -> int | None:
        """As many hard decoys as the token-level items hold decoys (balanced); every hard negative at sequence level."""
        return None if self.sequence else sum(not truth for _, truth in items)

    def scoring_set(self, windows: list[Window]) -> list[Window]:
        """As many items as detection asks about, all activating windows spread over strengths (at sequence
        level followed by the held-out random documents each item pairs one of them with)."""
        s = self.settings
        active = sorted(split_windows(windows, "test", ("quantile", "top")), key=lambda w: -w.max_act)
        chosen = _spread(active, s.n_activating + s.n_random)
        if self.sequence:
            chosen += split_windows(windows, "test", ("random",))
        return self.shown(chosen)

    def _document_pairs(self, active: list[Window], negative: list[Window]) -> list[tuple[str, bool]]:
        """Item i: activating document i with negative document i (cycled); the mark on the activating one
        when i is even; the marked document first when (i // 2) is even."""
        if not negative:
            return []
        out = []
        for i, window in enumerate(active):
            truth = i % 2 == 0
            marked_doc, other = (window, negative[i % len(negative)]) if truth else (negative[i % len(negative)], window)
            shown = [f"<<{document_text(marked_doc)}>>", document_text(other)]
            if (i // 2) % 2:
                shown.reverse()
            out.append(("\n".join(f"Document {k + 1}: {text}" for k, text in enumerate(shown)), truth))
        return out
