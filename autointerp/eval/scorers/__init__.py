"""Label scorers: simulation, detection, fuzzing (LLM-based) and embedding (offline). One module each."""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import UserError
from autointerp.explain.prompts import load_template
from autointerp.eval.config import ScoreConfig
from autointerp.eval.scorers.base import ScoreResult, Scorer
from autointerp.eval.scorers.detection import DetectionScorer
from autointerp.eval.scorers.embedding import EmbeddingScorer
from autointerp.eval.scorers.fuzzing import FuzzingScorer
from autointerp.eval.scorers.simulation import SimulationScorer

SCORERS: dict[str, type[Scorer]] = {cls.name: cls for cls in (SimulationScorer, DetectionScorer, FuzzingScorer, EmbeddingScorer)}


def make_scorer(name: str, settings: ScoreConfig, prompts_dir: Path | str | None = None) -> Scorer:
    if name not in SCORERS:
        raise UserError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    cls = SCORERS[name]
    template = load_template(cls.template_name, prompts_dir) if cls.template_name else None
    return cls(settings, template)


__all__ = ["SCORERS", "ScoreResult", "Scorer", "make_scorer"]
