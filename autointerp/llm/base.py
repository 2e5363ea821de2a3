"""The one interface every LLM backend implements (the contract between clients and explainer/scorers).

Owned by the LLM client layer. Explainer and scorers only ever see ``LLMClient``; retries, caching,
concurrency limits and usage accounting live behind it, so a scorer never knows which backend it runs on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields


@dataclass
class Usage:
    """Tokens, money and requests. Requests sent to a backend = ``calls + retries``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0  # logical calls that reached the backend (cache hits excluded), failed ones included
    cached_calls: int = 0  # answered from the response cache: no tokens, no cost
    retries: int = 0  # extra attempts after a transient failure (429, 5xx, timeout, bad body, ...)
    failed_calls: int = 0  # calls that finally raised LLMError

    def add(self, other: Usage) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def copy(self) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) for f in fields(self)})


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
    paid_usage: Usage | None = None  # a cached answer: the tokens (and cost) its original, paid call consumed


class LLMError(Exception):
    """A request that finally failed (after retries); ``reason`` is recorded per feature, never scored as 0.

    ``usage`` holds what the failed call still consumed (its retries), so run totals stay honest.
    """

    def __init__(self, reason: str, usage: Usage | None = None):
        super().__init__(reason)
        self.reason = reason
        self.usage = usage if usage is not None else Usage()


class BackendError(Exception):
    """One attempt failed inside a backend. Backends raise this (never their library's own exceptions) so the
    reliability wrapper can decide: ``retryable`` (429, 5xx, timeout, connection, empty/malformed body) or
    not (401, 404, 400: retrying cannot fix them). ``retry_after_s`` carries a server's Retry-After hint.
    """

    def __init__(self, reason: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class LLMClient(ABC):
    """Async text generation. ``chat`` for instruction-style prompts, ``complete`` for raw prompts.

    ``logprobs=N`` asks for the top-N alternatives per generated token; ``echo=True`` (completions) also
    returns logprobs for the prompt's own tokens, which is how simulation reads a predicted 0-10
    distribution at every position in one request. ``echo_at`` (with echo) names the prompt character
    offsets whose tokens the caller will read: a backend may then return records only for tokens starting
    there (the local one computes its 262k-way output head only at those positions, most of an echo
    request's cost); servers return every position and the caller looks its offsets up either way.
    """

    model_name: str
    supports_logprobs: bool
    usage: Usage  # running total for this client

    @abstractmethod
    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None) -> Completion: ...

    @abstractmethod
    async def complete(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None, echo: bool = False, echo_at: Sequence[int] | None = None) -> Completion: ...

    async def aclose(self) -> None:  # an optional hook, deliberately not abstract
        """Release connections / model memory."""
