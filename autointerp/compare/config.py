"""``[compare]``: how features of two models are matched. Owned by the comparison module; fields may grow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CompareConfig:
    embedder: str = "minilm-l6"  # label embedder: the embedded MiniLM or any sentence-transformers model
    unit: str = "word"  # word | char | document: shared units the two tokenizations are pooled onto
    null_alpha: float = 0.05  # significance level for "shared" pairs
    seed: int = 0
