"""``ReliableClient``: bounded concurrency, retries with back-off, and time bounds around any backend.

Why a wrapper and not the openai package's retries: the same policy must cover every backend (remote
servers and the in-process model), retries must be counted in ``Usage``, and a call must finish within
``total_timeout_s`` however many retries it takes, so one stuck feature cannot hold up a run.

Policy: at most ``concurrency`` requests in flight (the slot is released while backing off). A
``BackendError`` marked retryable (429, 5xx, timeout, connection error, empty or malformed body) or a
per-attempt timeout is retried up to ``max_retries`` times, sleeping ``uniform(0, cap)`` with
``cap = min(backoff_max_s, backoff_s * 2**retry)`` ("full jitter", so many clients hitting a rate limit
spread out), or the server's Retry-After if longer. Errors retrying cannot fix (401, 404, 400, ...)
fail at once. A final failure raises ``LLMError`` with a short reason such as "HTTP 500 after 6 retries".
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from autointerp.llm.base import (
    BackendError,
    Completion,
    LLMClient,
    LLMError,
    Usage,
)
from autointerp.llm.wrapper import ClientWrapper

log = logging.getLogger("autointerp")


class ReliableClient(ClientWrapper):
    def __init__(
        self,
        inner: LLMClient,
        *,
        concurrency: int = 4,
        max_retries: int = 6,
        timeout_s: float = 120.0,
        total_timeout_s: float = 1800.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        seed: int | None = None,
    ):
        super().__init__(inner)
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.total_timeout_s = total_timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._semaphore = asyncio.Semaphore(concurrency)
        self._random = random.Random(seed)

    async def chat(self, messages, *, max_tokens=256, temperature=0.0, logprobs=None) -> Completion:
        return await self._call(lambda: self.inner.chat(messages, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs))

    async def complete(self, prompt, *, max_tokens=256, temperature=0.0, logprobs=None, echo=False, echo_at=None) -> Completion:
        return await self._call(lambda: self.inner.complete(prompt, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs, echo=echo, echo_at=echo_at))

    def backoff_delay(self, retry: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based): full jitter, at least Retry-After."""
        cap = min(self.backoff_max_s, self.backoff_s * (2**retry))
        delay = self._random.uniform(0.0, cap)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.backoff_max_s))
        return delay

    async def _call(self, attempt: Callable[[], Awaitable[Completion]]) -> Completion:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout_s
        retries = 0
        while True:
            outcome = await self._attempt(attempt, deadline)
            if isinstance(outcome, Completion):
                outcome.usage.retries += retries
                self.usage.add(outcome.usage)
                return outcome
            error = outcome
            if not error.retryable:
                self._fail(error.reason, retries)
            if retries >= self.max_retries:
                self._fail(f"{error.reason} after {retries} retries", retries)
            delay = self.backoff_delay(retries, error.retry_after_s)
            if loop.time() + delay >= deadline:
                self._fail(f"{error.reason}; gave up after {self.total_timeout_s:g} s ({retries} retries)", retries)
            retries += 1
            log.debug("LLM request failed (%s); retry %d in %.2f s", error.reason, retries, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, attempt: Callable[[], Awaitable[Completion]], deadline: float) -> Completion | BackendError:
        """One request inside a concurrency slot: the completion, or the error that ended it."""
        loop = asyncio.get_running_loop()
        async with self._semaphore:
            remaining = deadline - loop.time()  # waiting for a slot counts against the total bound
            if remaining <= 0:
                return BackendError(f"no free request slot within {self.total_timeout_s:g} s", retryable=False)
            try:
                return await asyncio.wait_for(attempt(), timeout=min(self.timeout_s, remaining))
            except TimeoutError:
                return BackendError("timeout", retryable=True)
            except BackendError as exc:
                return exc
            except LLMError as exc:  # an inner wrapper already gave a final answer
                return BackendError(exc.reason, retryable=False)
            except Exception as exc:  # a backend bug or unknown failure: do not hammer, report it
                log.debug("LLM backend raised", exc_info=True)
                return BackendError(f"{type(exc).__name__}: {exc}", retryable=False)

    def _fail(self, reason: str, retries: int) -> None:
        usage = Usage(calls=1, retries=retries, failed_calls=1)
        self.usage.add(usage)
        raise LLMError(reason, usage=usage)
