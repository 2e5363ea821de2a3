"""``autointerp score``: the score stage as its command and ``autointerp run`` see it (the work is in ``stage``)."""

from autointerp.explain.commands import LLM_FLAGS
from autointerp.stages import Stage

STAGE = Stage(
    name="score",
    module="autointerp.eval.stage",
    help="Score existing labels (no re-explaining), each next to a shuffled-label baseline; `--scorer embedding` needs no LLM.",
    sections=("llm", "score"),
    reads=("exemplars", "explain"),
    prefixes=LLM_FLAGS["prefixes"],
    names=LLM_FLAGS["names"] | {"score.scorers": ("--scorer", "-s", "--scorers")},
)
