"""What a control is: one kind of comparison that a cross-model sharing fraction is read against.

A control fills one ``role`` of the verdict (``compare.verdict``): a *ceiling* is the sharing a model reaches
with itself (read as the top of the scale), a *floor* the sharing that needs no learned weights (a pair must
clear it to be called shared). Subclasses say which comparisons they make (``jobs``) and make one
(``make``) with the real machinery; the controls stage runs every registered control
(``controls.registry``), writes their summaries to controls.json, and ``controls.calibration`` hands each
pair the controls whose models are the pair's. CONTRIBUTING.md says how to add one.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from autointerp.config import ModelEntry, RunConfig

ROLES = ("ceiling", "floor")
# the built-in controls' titles (their classes' ``title``; also what an old-layout controls.json is read as)
SEED_CEILING_TITLE = "other SAE seed"
RANDOM_FLOOR_TITLE = "random-weights control"


class Job(NamedTuple):
    """One comparison a control makes."""

    entry: ModelEntry  # the model the control is made for (its second SAE, its random-weights copy, ...)
    other: ModelEntry | None = None  # the real model it is matched against, when not ``entry`` itself


class Control:
    """A control. ``make`` returns ``controls.calibration.control_summary(...)`` plus two identity keys:

    * ``label``: the comparison in words, e.g. ``"gemma vs gemma@seed1"`` (unique within the control);
    * ``stands_for``: {name of a side in the comparison's stats: the real model whose column it calibrates},
      e.g. ``{"gemma": "gemma"}`` for a ceiling, ``{"minilm": "minilm", "gemma@random": "gemma"}`` for a floor
      that measures both real models' columns. A pair (A, B) reads the control when every real model it
      stands for is A or B.

    The stage adds ``control``, ``role`` and ``title``; a summary may carry more keys (a seed) for its readers.
    """

    name: ClassVar[str]  # the registry key and the control's entry in controls.json
    role: ClassVar[str]  # "ceiling" or "floor": the verdict cell it fills
    title: ClassVar[str]  # how tables name it, e.g. "random-weights control"

    def jobs(self, cfg: RunConfig) -> tuple[list[Job], str | None]:
        """The comparisons this config asks for, and why any is not measured (None: nothing left out)."""
        raise NotImplementedError

    def make(self, cfg: RunConfig, job: Job, *, overwrite: bool = False) -> dict:
        """Make one comparison (reused from disk when its records match) and return its summary. Its
        ``seconds`` and ``cost`` are None when nothing ran (the stage keeps the cost recorded when it did)."""
        raise NotImplementedError
