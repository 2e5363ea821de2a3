"""``OpenAIClient``: the ``LLMClient`` over any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp).

One attempt per call: the openai package's own retries are switched off (``max_retries=0``) because the
reliability wrapper owns retries, back-off and time bounds for every backend alike. Every failure leaves
this module as a ``BackendError`` that says whether retrying can help, so the wrapper never needs to know
the openai package's exception types.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import openai

from autointerp.llm.base import (
    BackendError,
    Completion,
    LLMClient,
    TokenLogprob,
    Usage,
)

log = logging.getLogger("autointerp")

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIClient(LLMClient):
    """Chat and completions endpoints, with logprobs when the server returns them.

    ``api_key`` is held only by the underlying openai client (sent as a header); it is never part of a
    request description, a log line or a cache key.
    """

    supports_logprobs = True

    def __init__(self, model: str, *, base_url: str = DEFAULT_BASE_URL, api_key: str, timeout_s: float = 120.0):
        self.model_name = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.usage = Usage()
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)

    async def list_models(self, timeout_s: float | None = None) -> list[str]:
        """Model ids the server offers (``GET /models``); raises ``BackendError`` like a call would."""
        try:
            page = await self._client.models.list(timeout=timeout_s or self.timeout_s)
        except Exception as exc:  # translated below
            raise translate_error(exc) from exc
        return sorted(m.id for m in page.data)

    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None) -> Completion:
        params: dict[str, Any] = {"model": self.model_name, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if logprobs:
            params |= {"logprobs": True, "top_logprobs": logprobs}
        try:
            response = await self._client.chat.completions.create(**params)
        except Exception as exc:  # translated below
            raise translate_error(exc) from exc
        choice = _first_choice(response)
        text = getattr(choice.message, "content", None) if choice.message is not None else None
        if text is None:
            raise BackendError("empty response (no message content)", retryable=True)
        content = choice.logprobs.content if choice.logprobs is not None else None
        token_logprobs = [_chat_token(t) for t in content] if content else None
        return Completion(text=text, usage=_usage(response), logprobs=token_logprobs, finish_reason=choice.finish_reason)

    async def complete(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None, echo: bool = False, echo_at=None) -> Completion:
        """``echo_at`` is a hint servers have no parameter for: every prompt position comes back."""
        params: dict[str, Any] = {"model": self.model_name, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature}
        if logprobs:
            params["logprobs"] = logprobs
        if echo:
            params["echo"] = True
        try:
            response = await self._client.completions.create(**params)
        except Exception as exc:  # translated below
            raise translate_error(exc) from exc
        choice = _first_choice(response)
        if choice.text is None:
            raise BackendError("empty response (no text)", retryable=True)
        return Completion(text=choice.text, usage=_usage(response), logprobs=_completion_logprobs(choice.logprobs), finish_reason=choice.finish_reason)

    async def aclose(self) -> None:
        await self._client.close()


def translate_error(exc: BaseException) -> BackendError:
    """Map an openai / JSON exception to a short human reason and whether a retry can fix it."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return BackendError("timeout", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        return BackendError(f"connection error{detail}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _server_message(exc)
        retryable = status in (408, 409, 425, 429) or status >= 500
        return BackendError(f"HTTP {status}{': ' + message if message else ''}", retryable=retryable, retry_after_s=_retry_after(exc))
    if isinstance(exc, openai.APIResponseValidationError):
        return BackendError("malformed response", retryable=True)
    if isinstance(exc, json.JSONDecodeError):
        return BackendError("empty response body" if not exc.doc.strip() else "malformed JSON response", retryable=True)
    if isinstance(exc, (ValueError, TypeError, AttributeError, KeyError)):
        # the openai models could not be built from the body (e.g. a JSON object without the expected fields)
        return BackendError(f"malformed response ({type(exc).__name__})", retryable=True)
    return BackendError(f"{type(exc).__name__}: {exc}", retryable=False)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return str(message).splitlines()[0][:200]
    return ""


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: ignore, the back-off schedule applies


def _first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    if not choices:
        raise BackendError("empty response (no choices)", retryable=True)
    return choices[0]


def _usage(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", 0) or 0
    completion = getattr(usage, "completion_tokens", 0) or 0
    return Usage(prompt_tokens=int(prompt), completion_tokens=int(completion), calls=1)


def _chat_token(item: Any) -> TokenLogprob:
    top = {alt.token: float(alt.logprob) for alt in (item.top_logprobs or [])}
    return TokenLogprob(token=item.token, logprob=float(item.logprob) if item.logprob is not None else None, top=top)


def _completion_logprobs(lp: Any) -> list[TokenLogprob] | None:
    """Legacy completions logprobs (parallel lists) -> one ``TokenLogprob`` per token.

    With ``echo=True`` the prompt's tokens come first; servers give the very first prompt token no
    logprob (None) because nothing precedes it.
    """
    if lp is None or not lp.tokens:
        return None
    n = len(lp.tokens)
    logprobs = list(lp.token_logprobs or []) + [None] * n
    tops = list(lp.top_logprobs or []) + [None] * n
    offsets = list(lp.text_offset or []) + [None] * n
    return [
        TokenLogprob(
            token=lp.tokens[i],
            logprob=float(logprobs[i]) if logprobs[i] is not None else None,
            top={str(k): float(v) for k, v in (tops[i] or {}).items()},
            text_offset=int(offsets[i]) if offsets[i] is not None else None,
        )
        for i in range(n)
    ]
