"""Fuzzing scoring (Paulo et al. 2024): given the label, can an LLM tell correctly marked tokens from wrong ones?

Activating test windows alternate between the truth (the tokens where the feature fires are marked) and
a decoy (the same number of marks on tokens where it does not fire, chosen with a seeded RNG).
Non-activating windows are not used: fuzzing asks about token-level precision, not detection.
"""

from __future__ import annotations

import zlib

import numpy as np

from autointerp.eval.scorers.base import _spread
from autointerp.eval.scorers.classify import YesNoScorer
from autointerp.explain.format import marked, split_windows
from autointerp.rundir.windows import Window


class FuzzingScorer(YesNoScorer):
    name = "fuzzing"
    template_name = "fuzzing"
    definition = "LLM asked per held-out activating window 'are the marked tokens the ones the feature fires on?' given the label; half the windows carry the true marks, half decoy marks on non-firing tokens; AUROC of P(yes) when logprobs exist, else balanced accuracy"

    def items(self, chosen: list[Window]) -> list[tuple[str, bool]]:
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

    def scoring_set(self, windows: list[Window]) -> list[Window]:
        """As many items as detection asks about, all activating windows spread over strengths."""
        s = self.settings
        active = sorted(split_windows(windows, "test", ("quantile", "top")), key=lambda w: -w.max_act)
        return [w.trimmed(s.window_before, s.window_after) for w in _spread(active, s.n_activating + s.n_random)]
