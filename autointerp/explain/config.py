"""``[explain]`` and ``[score]``: which features get labels, how prompts are built, which scorers run.

Owned by the explainer/scorer layer; fields may grow (every field needs a default).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExplainConfig:
    n_features: int = 50  # features labelled per model (live features, chosen by `select`)
    select: str = "random"  # random | top_density | all
    seed: int = 0
    prompts_dir: str | None = None  # a directory of the user's own templates overriding the packaged ones
    max_label_chars: int = 200


@dataclass
class ScoreConfig:
    scorers: list[str] = field(default_factory=lambda: ["embedding", "simulation", "detection"])
    shuffled_baseline: bool = True
    seed: int = 0
