"""``[llm]``: which secondary LLM labels and scores features, and how hard to push it.

Owned by the LLM client layer; fields may grow (every field needs a default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autointerp.errors import UserError

BACKENDS = ("local", "openai")  # autointerp.llm.factory builds these


@dataclass
class LLMConfig:
    backend: str = "local"  # local (in-process transformers model) | openai (any OpenAI-compatible server)
    model: str | None = None  # local: a model spec (default the embedded gemma-3-270m); openai: the server's model name
    base_url: str | None = None  # openai backend; default $OPENAI_BASE_URL, else https://api.openai.com/v1
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key (never the key itself)
    device: str = "auto"  # local backend: auto | cpu | cuda | mps
    concurrency: int = 4  # requests in flight at once (the local backend always runs one at a time)
    max_retries: int = 6  # extra attempts after a transient failure (429, 5xx, timeout, bad body)
    timeout_s: float = 120.0  # one request to a server (the local backend is bounded by total_timeout_s only)
    total_timeout_s: float = 1800.0  # one call, all its retries and back-off waits included
    backoff_s: float = 1.0  # first back-off cap; doubles per retry (full jitter: sleep uniform(0, cap))
    backoff_max_s: float = 60.0  # largest back-off cap
    connect_timeout_s: float = 5.0  # start-up check that the server answers (fails fast on a wrong URL)
    cache: bool = True  # sqlite response cache in the run directory (runs/<name>/llm_cache.sqlite)
    prices: dict = field(default_factory=dict)  # {"model": {"input": usd_per_1M, "output": usd_per_1M}}

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"[llm] backend = '{self.backend}' is unknown; use one of: {', '.join(BACKENDS)}")
        if self.concurrency < 1 or self.max_retries < 0:
            raise UserError(f"[llm] concurrency = {self.concurrency} must be >= 1 and max_retries = {self.max_retries} >= 0")
        for name in ("timeout_s", "total_timeout_s", "connect_timeout_s", "backoff_max_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"[llm] {name} = {getattr(self, name)} must be positive (seconds)")
        if self.backoff_s < 0:
            raise UserError(f"[llm] backoff_s = {self.backoff_s} must be >= 0 (seconds)")
