"""Detection scoring (Paulo et al. 2024): given the label, can an LLM tell activating windows from others?

At sequence level each item is a whole held-out document (activating or a random one the feature never
fired on), asked with ``detection_sequence``: does the neuron fire on this document? Against hard negatives
the random windows are replaced by windows holding the feature's words where it does not fire.
"""

from __future__ import annotations

from autointerp.eval.scorers.base import document_text
from autointerp.eval.scorers.classify import YesNoScorer
from autointerp.rundir.windows import Window


class DetectionScorer(YesNoScorer):
    name = "detection"
    template_name = "detection"
    template_placeholders = ("label", "example")
    sequence_template_name = "detection_sequence"
    sequence_template_placeholders = ("label", "document")
    definition = "LLM asked per held-out window 'does the feature fire here?' given the label; AUROC of P(yes) (activating vs random windows) when logprobs exist, else balanced accuracy"
    sequence_definition = "sequence level: LLM asked per held-out whole document 'does the neuron fire on this document?' given the label; AUROC of P(yes) (activating vs random documents) when logprobs exist, else balanced accuracy"

    def items(self, chosen: list[Window]) -> list[tuple[str, bool]]:
        return [(self._text(w), w.activating) for w in chosen]

    def hard_items(self, chosen: list[Window], items: list[tuple[str, bool]], hard: list[Window]) -> list[tuple[str, bool]]:
        """The activating windows' items, and each hard negative asked the same question (the right answer: no)."""
        return [item for item in items if item[1]] + [(self._text(w), False) for w in hard]

    def _text(self, window: Window) -> str:
        return document_text(window) if self.sequence else " ".join(window.text.split())
