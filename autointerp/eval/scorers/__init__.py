"""Label scorers: simulation, detection, fuzzing (LLM-based) and embedding (offline). One module each."""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import UserError
from autointerp.explain.prompts import load_template
from autointerp.eval.config import ScoreConfig
from autointerp.eval.scorers.base import LEVELS, ScoreResult, Scorer
from autointerp.eval.scorers.detection import DetectionScorer
from autointerp.eval.scorers.embedding import EmbeddingScorer
from autointerp.eval.scorers.fuzzing import FuzzingScorer
from autointerp.eval.scorers.simulation import SimulationScorer

SCORERS: dict[str, type[Scorer]] = {cls.name: cls for cls in (SimulationScorer, DetectionScorer, FuzzingScorer, EmbeddingScorer)}


def make_scorer(name: str, settings: ScoreConfig, prompts_dir: Path | str | None = None, level: str = "token") -> Scorer:
    """Scorer ``name`` at ``level`` ("token", or "sequence": whole documents), with that level's prompt template."""
    if name not in SCORERS:
        raise UserError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    if level not in LEVELS:
        raise UserError(f"unknown scoring level {level!r}; expected one of {', '.join(LEVELS)}")
    cls = SCORERS[name]
    template_name = cls.template_for(level)
    template = load_template(template_name, prompts_dir) if template_name else None
    return cls(settings, template, level)


__all__ = ["LEVELS", "SCORERS", "ScoreResult", "Scorer", "make_scorer"]
