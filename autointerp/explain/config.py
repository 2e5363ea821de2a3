"""``[explain]``: which features get labels and how the explainer's prompts are built.

Owned by the explainer/scorer layer; fields may grow (every field needs a default). Defaults are sized
for the default run on a 2-core CPU with the in-process Gemma 3 270M (see docs/performance.md: explain + score for
2 models x n_features must stay within a few minutes); raise them with a real LLM server.
"""

from __future__ import annotations

from dataclasses import dataclass

from autointerp.errors import UserError

SELECTS = ("contextual", "matched", "random", "top_density", "all")
# [explain] fields that shape a label (n_features, select and seed only choose which features get one): they
# are part of the labels' identity (explain and the crosscoder's latent labels)
LABEL_FIELDS = ("n_top", "n_quantile", "window_before", "window_after", "max_tokens", "max_label_chars", "chat",
                "labeller", "n_candidates", "temperature", "lexical", "choose_by", "llm_for_tokens")


@dataclass
class ExplainConfig:
    n_features: int = 12  # features labelled per model (live features, chosen by `select`)
    select: str = "contextual"  # contextual (both sides of the best pairs shared beyond word identity, then the most active topical features, then unshared ones; needs compare) | matched (the best activation-matched pairs) | random | top_density | all
    llm_for_tokens: bool = False  # token-class features (word identity explains their activation: exemplars' feature_class) get the lexical label without an LLM call; true sends them to the LLM too
    seed: int = 0  # seed of select = "random" and of sampled candidates
    prompts_dir: str | None = None  # a directory of the user's own templates overriding the packaged ones
    max_label_chars: int = 200  # longer labels are cut here
    n_top: int = 5  # highest-activating train windows shown to the explainer
    n_quantile: int = 3  # lower-strength train windows shown (labels should cover more than the peak)
    window_before: int = 8  # tokens shown before / after each window's max token
    window_after: int = 2  # (see window_before)
    max_tokens: int = 12  # the label's length budget in generated tokens
    chat: bool = False  # send the explainer prompt as a chat message (instruction models) instead of a completion
    labeller: str = "llm"  # llm (candidates from the explainer LLM, competing with the lexical label) | lexical (no LLM: the lexical label only)
    n_candidates: int = 2  # LLM candidate labels per feature: plain prompt, prompt with the lexical profile, then sampled; each costs one explainer call
    temperature: float = 0.7  # sampling temperature of candidates beyond the first two (the first two are greedy)
    lexical: bool = True  # also make the deterministic lexical label from the feature's profile (a baseline, and a candidate for the final label)
    choose_by: str = "embedding"  # how the kept candidate and the final label are chosen, on TRAINING windows only: embedding (AUROC) | first (no scoring)

    def validate(self) -> None:
        if self.select not in SELECTS:
            raise UserError(f"[explain] select = {self.select!r} is unknown; use {', '.join(SELECTS)}")
        for name in ("n_features", "n_top", "n_quantile", "window_before", "window_after"):
            if getattr(self, name) < 0:
                raise UserError(f"[explain] {name} = {getattr(self, name)} must be >= 0")
        if self.labeller not in ("llm", "lexical"):
            raise UserError(f"[explain] labeller = {self.labeller!r} is unknown; use llm or lexical")
        if self.choose_by not in ("embedding", "first"):
            raise UserError(f"[explain] choose_by = {self.choose_by!r} is unknown; use embedding or first")
        if self.n_candidates < 1 or self.temperature < 0:
            raise UserError(f"[explain] n_candidates = {self.n_candidates} must be >= 1 and temperature = {self.temperature} >= 0")
        if self.labeller == "lexical" and not self.lexical:
            raise UserError("[explain] labeller = \"lexical\" needs lexical = true; set one of them differently")
        if self.max_label_chars < 1 or self.max_tokens < 1:
            raise UserError(f"[explain] max_label_chars = {self.max_label_chars} and max_tokens = {self.max_tokens} must be >= 1")
