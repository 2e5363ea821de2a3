"""Detection scoring (Paulo et al. 2024): given the label, can an LLM tell activating windows from others?"""

from __future__ import annotations

from autointerp.eval.scorers.classify import YesNoScorer
from autointerp.rundir.windows import Window


class DetectionScorer(YesNoScorer):
    name = "detection"
    template_name = "detection"
    definition = "LLM asked per held-out window 'does the feature fire here?' given the label; AUROC of P(yes) (activating vs random windows) when logprobs exist, else balanced accuracy"

    def items(self, chosen: list[Window]) -> list[tuple[str, bool]]:
        return [(" ".join(w.text.split()), w.activating) for w in chosen]
