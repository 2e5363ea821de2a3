"""The one interface every LLM backend implements (the contract between clients and explainer/scorers).

Owned by the LLM client layer. Explainer and scorers only ever see ``LLMClient``; retries, caching,
concurrency limits and usage accounting live behind it, so a scorer never knows which backend it runs on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0  # requests actually sent (cache hits excluded)
    cached_calls: int = 0
    retries: int = 0

    def add(self, other: Usage) -> None:
        for name in ("prompt_tokens", "completion_tokens", "cost_usd", "calls", "cached_calls", "retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class TokenLogprob:
    """One position: the token there, its log-probability, and the top alternatives {token: logprob}."""

    token: str
    logprob: float | None
    top: dict[str, float] = field(default_factory=dict)
    text_offset: int | None = None  # character offset in the (echoed prompt +) completion text, when known


@dataclass
class Completion:
    text: str
    usage: Usage
    logprobs: list[TokenLogprob] | None = None  # per token; with echo=True the prompt's tokens come first
    cached: bool = False
    finish_reason: str | None = None


class LLMError(Exception):
    """A request that finally failed (after retries); ``reason`` is recorded per feature, never scored as 0."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LLMClient(ABC):
    """Async text generation. ``chat`` for instruction-style prompts, ``complete`` for raw prompts.

    ``logprobs=N`` asks for the top-N alternatives per generated token; ``echo=True`` (completions) also
    returns logprobs for the prompt's own tokens, which is how simulation reads a predicted 0-10
    distribution at every position in one request.
    """

    model_name: str
    supports_logprobs: bool
    usage: Usage  # running total for this client

    @abstractmethod
    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None) -> Completion: ...

    @abstractmethod
    async def complete(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None, echo: bool = False) -> Completion: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections / model memory."""
