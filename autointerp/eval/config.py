"""``[score]``: which scorers run on the labels and what each one sees. Free of heavy imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from autointerp.errors import UserError

# The scorer registry, the one list of scorers: name -> the Scorer class implementing it, as "module:Class" so that
# reading a config imports no scorer (``autointerp.eval.scorers.SCORERS`` resolves an entry when a scorer runs).
# [score] validation, the score stage and the report all read it; its order is the report's column order. Adding a
# scorer is one line here and its module (CONTRIBUTING.md); ``autointerp.eval.scorers.register_scorer`` adds one at run time.
SCORER_REGISTRY: dict[str, str | type] = {
    "simulation": "autointerp.eval.scorers.simulation:SimulationScorer",
    "detection": "autointerp.eval.scorers.detection:DetectionScorer",
    "fuzzing": "autointerp.eval.scorers.fuzzing:FuzzingScorer",
    "embedding": "autointerp.eval.scorers.embedding:EmbeddingScorer",
}


@dataclass
class ScoreConfig:
    scorers: list[str] = field(default_factory=lambda: ["embedding"])  # also: simulation, detection, fuzzing (simulation with the embedded 270M simulator measured at chance: LLM minus shuffled labels -0.005 / +0.007 on the factbook, +0.011 / -0.002 on prose; see docs/labels.md)
    shuffled_baseline: bool = True  # also score each feature with another feature's label (the baseline every score is read against)
    seed: int = 0  # seed of window sampling and label shuffling
    n_activating: int = 4  # activating held-out windows per feature and scorer
    n_random: int = 2  # non-activating held-out windows per feature and scorer
    window_before: int = 6  # tokens shown before each held-out window's max token
    window_after: int = 1  # tokens shown after it
    top_logprobs: int = 20  # logprobs asked for per prediction
    use_logprobs: bool = True  # read predictions from logprobs when the backend has them
    chat: bool = False  # chat endpoint instead of completions (needed for chat-only APIs such as OpenAI's chat models)
    embedder: str = "minilm-l6"  # sentence embedder of the embedding scorer

    def validate(self) -> None:
        unknown = [name for name in self.scorers if name not in SCORER_REGISTRY]
        if unknown:
            raise UserError(f"[score] scorers = {self.scorers}: unknown scorer(s) {', '.join(map(repr, unknown))}; "
                            f"choose from {', '.join(SCORER_REGISTRY)}")
        for name in ("n_activating", "n_random", "window_before", "window_after", "top_logprobs"):
            if getattr(self, name) < 0:
                raise UserError(f"[score] {name} = {getattr(self, name)} must be >= 0")
