"""``ClientWrapper``: the shared plumbing of layers stacked around a backend (cache, retries, accounting)."""

from __future__ import annotations

from autointerp.llm.base import LLMClient, Usage


class ClientWrapper(LLMClient):
    """An ``LLMClient`` that adds one concern around ``inner``; name, logprob support and closing pass through.

    ``usage`` is this layer's own running total (what it saw pass through it).
    """

    def __init__(self, inner: LLMClient):
        self.inner = inner
        self.usage = Usage()

    @property
    def model_name(self) -> str:  # type: ignore[override]
        return self.inner.model_name

    @property
    def supports_logprobs(self) -> bool:  # type: ignore[override]
        return self.inner.supports_logprobs

    async def aclose(self) -> None:
        await self.inner.aclose()
