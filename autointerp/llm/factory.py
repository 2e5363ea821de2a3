"""``open_client``: the one way stages get an LLM — backend + cache + retries + accounting, checked up front.

Layers, outermost first: ``AccountingClient`` (prices and totals) -> ``CachedClient`` (sqlite; hits never
take a request slot) -> ``ReliableClient`` (concurrency, retries, time bounds) -> backend. Before any
work starts, the openai backend is checked so a wrong set-up fails in seconds with one line that says what
to fix: a missing API key for a remote server, a base URL nobody answers at, a model the server lacks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

from autointerp.errors import UserError
from autointerp.llm.accounting import AccountingClient
from autointerp.llm.base import BackendError, LLMClient
from autointerp.llm.cache import CachedClient, ResponseCache
from autointerp.rundir.layout import RunDir
from autointerp.llm.config import LLMConfig
from autointerp.llm.reliable import ReliableClient

BACKENDS = ("local", "openai")
LOOPBACK_PLACEHOLDER_KEY = "no-key-needed"  # local servers (llama.cpp, vLLM, Ollama) ignore the key


@contextlib.asynccontextmanager
async def open_client(cfg: LLMConfig, run_dir: Path) -> AsyncIterator[AccountingClient]:
    """Yield a ready ``LLMClient`` (an ``AccountingClient``: ``.usage``, ``.summary()``); closes everything after."""
    backend = await build_backend(cfg)
    cache = ResponseCache(RunDir(Path(run_dir)).llm_cache) if cfg.cache else None
    try:
        # The in-process model computes one request at a time in its own worker thread: more slots would
        # only queue inside it and count queueing against the per-request timeout, and a timed-out
        # generation cannot be stopped mid-thread, so only the total bound applies there.
        local = cfg.backend == "local"
        client: LLMClient = ReliableClient(
            backend,
            concurrency=1 if local else cfg.concurrency,
            max_retries=cfg.max_retries,
            timeout_s=cfg.total_timeout_s if local else cfg.timeout_s,
            total_timeout_s=cfg.total_timeout_s,
            backoff_s=cfg.backoff_s,
            backoff_max_s=cfg.backoff_max_s,
        )
        if cache is not None:
            client = CachedClient(client, cache, backend_kind=cfg.backend)
        yield AccountingClient(client, backend=cfg.backend, prices=cfg.prices)
    finally:
        await backend.aclose()
        if cache is not None:
            cache.close()


async def build_backend(cfg: LLMConfig) -> LLMClient:
    if cfg.backend == "local":
        return _local_backend(cfg)
    if cfg.backend == "openai":
        return await _openai_backend(cfg)
    raise UserError(f"[llm] backend = '{cfg.backend}' is unknown; use one of: {', '.join(BACKENDS)}")


def _local_backend(cfg: LLMConfig) -> LLMClient:
    # imported lazily: the local backend loads torch/transformers
    from autointerp.llm.local import LocalClient

    return LocalClient(cfg.model, device=cfg.device)


def resolve_base_url(cfg: LLMConfig) -> str:
    from autointerp.llm.openai_backend import DEFAULT_BASE_URL

    return (cfg.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _openai_backend(cfg: LLMConfig) -> LLMClient:
    from autointerp.llm.openai_backend import OpenAIClient

    base_url = resolve_base_url(cfg)
    if urlparse(base_url).scheme not in ("http", "https"):
        raise UserError(f"[llm] base_url '{base_url}' is not an http(s) URL; write it like http://127.0.0.1:8080/v1")
    api_key = os.environ.get(cfg.api_key_env, "")
    if not api_key:
        if not is_loopback(base_url):
            raise UserError(
                f"no API key for the LLM server at {base_url}: the environment variable {cfg.api_key_env} is not set; "
                f"export {cfg.api_key_env}=<your key> (or set [llm] api_key_env to the variable that holds it), "
                f'or use [llm] backend = "local" to label features offline'
            )
        api_key = LOOPBACK_PLACEHOLDER_KEY
    client = OpenAIClient(cfg.model or "", base_url=base_url, api_key=api_key, timeout_s=cfg.timeout_s)
    try:
        client.model_name = await _check_server(client, cfg, base_url)
    except BaseException:
        await client.aclose()
        raise
    return client


async def _check_server(client, cfg: LLMConfig, base_url: str) -> str:
    """One ``GET /models`` with a short timeout: the server answers, accepts the key, and has the model.

    Returns the model name to use (the server's only model when ``[llm] model`` is unset).
    """
    try:
        available = await client.list_models(timeout_s=cfg.connect_timeout_s)
    except BackendError as exc:
        if exc.reason.startswith(("connection error", "timeout")):
            raise UserError(
                f"cannot reach the LLM server at {base_url} ({exc.reason}); start the server or fix [llm] base_url "
                f'(or $OPENAI_BASE_URL), or use [llm] backend = "local"'
            ) from exc
        if exc.reason.startswith(("HTTP 401", "HTTP 403")):
            raise UserError(
                f"the LLM server at {base_url} rejected the API key in ${cfg.api_key_env} ({exc.reason}); check the key"
            ) from exc
        if exc.reason.startswith("HTTP 404"):  # OpenAI, vLLM, Ollama and llama.cpp all list models
            hint = "; OpenAI-compatible base URLs usually end in /v1" if not base_url.endswith("/v1") else ""
            raise UserError(f"no OpenAI-compatible API at {base_url} (GET {base_url}/models: {exc.reason}){hint}; fix [llm] base_url") from exc
        if exc.reason.startswith(("HTTP 405", "HTTP 501")):
            available = []  # a server without a models list: skip the model check, calls will tell
        else:
            raise UserError(f"the LLM server at {base_url} failed the start-up check: {exc.reason}") from exc
    if not cfg.model:
        if len(available) == 1:
            return available[0]
        listed = ", ".join(available[:20]) or "none listed"
        raise UserError(f"[llm] model is not set; choose one of the models at {base_url}: {listed}")
    if available and cfg.model not in available:
        more = f" (and {len(available) - 20} more)" if len(available) > 20 else ""
        raise UserError(
            f"model '{cfg.model}' is not served at {base_url}; it has: {', '.join(available[:20])}{more}; fix [llm] model"
        )
    return cfg.model
