"""``[explain]`` and ``[score]``: which features get labels, how prompts are built, which scorers run.

Owned by the explainer/scorer layer; fields may grow (every field needs a default). Defaults are sized
for the default run on a 2-core CPU with the in-process Gemma 3 270M (see README: explain + score for
2 models x n_features must stay within a few minutes); raise them with a real LLM server.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExplainConfig:
    n_features: int = 12  # features labelled per model (live features, chosen by `select`)
    select: str = "matched"  # matched (both sides of the best activation-matched pairs; needs compare) | random | top_density | all
    seed: int = 0
    prompts_dir: str | None = None  # a directory of the user's own templates overriding the packaged ones
    max_label_chars: int = 200
    n_top: int = 5  # highest-activating train windows shown to the explainer
    n_quantile: int = 3  # lower-strength train windows shown (labels should cover more than the peak)
    window_before: int = 8  # tokens shown before / after each window's max token
    window_after: int = 2
    max_tokens: int = 12  # the label's length budget in generated tokens
    chat: bool = False  # send the explainer prompt as a chat message (instruction models) instead of a completion


@dataclass
class ScoreConfig:
    scorers: list[str] = field(default_factory=lambda: ["embedding", "simulation"])  # also: detection, fuzzing
    shuffled_baseline: bool = True
    seed: int = 0
    n_activating: int = 4  # activating held-out windows per feature and scorer
    n_random: int = 2  # non-activating held-out windows per feature and scorer
    window_before: int = 6
    window_after: int = 1
    top_logprobs: int = 20
    use_logprobs: bool = True  # read predictions from logprobs when the backend has them
    chat: bool = False  # chat endpoint instead of completions (needed for chat-only APIs such as OpenAI's chat models)
    embedder: str = "minilm-l6"  # sentence embedder of the embedding scorer
