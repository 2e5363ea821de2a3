"""Token and cost accounting: prices per model, running totals, a table to print and a dict to store.

Prices come from ``[llm] prices`` (USD per 1M input / output tokens), never from a built-in list that
would go stale. A model without a price costs 0 and is reported as "price unknown" rather than silently
free; the in-process ``local`` backend really is free. Cache hits spend nothing and cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rich.table import Table

from autointerp.errors import UserError
from autointerp.llm.base import Completion, LLMClient, LLMError, Usage
from autointerp.llm.wrapper import ClientWrapper


@dataclass(frozen=True)
class Price:
    input_per_m: float  # USD per 1M prompt tokens
    output_per_m: float  # USD per 1M completion tokens

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.input_per_m + usage.completion_tokens * self.output_per_m) / 1e6


FREE = Price(0.0, 0.0)


def parse_prices(prices: dict) -> dict[str, Price]:
    """``{"model": {"input": x, "output": y}}`` -> ``{"model": Price}``; a malformed entry is a UserError."""
    parsed = {}
    for model, entry in (prices or {}).items():
        try:
            parsed[str(model)] = Price(float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise UserError(
                f"[llm] prices entry for '{model}' is {entry!r}; write it as "
                f'"{model}" = {{ input = <USD per 1M prompt tokens>, output = <USD per 1M completion tokens> }}'
            ) from exc
    return parsed


def find_price(model: str, backend: str, prices: dict[str, Price]) -> Price | None:
    """The price for ``model``: exact name, else the longest configured prefix (``gpt-4o-mini`` covers
    ``gpt-4o-mini-2024-07-18``); the local backend is free; None when unknown."""
    if model in prices:
        return prices[model]
    prefixes = [name for name in prices if model.startswith(name)]
    if prefixes:
        return prices[max(prefixes, key=len)]
    return FREE if backend == "local" else None


class AccountingClient(ClientWrapper):
    """Prices every completion (``usage.cost_usd``) and keeps the run's totals, failed calls included."""

    def __init__(self, inner: LLMClient, *, backend: str, prices: dict | None = None):
        super().__init__(inner)
        self.backend = backend
        self.price = find_price(inner.model_name, backend, parse_prices(prices or {}))

    async def chat(self, messages, *, max_tokens=256, temperature=0.0, logprobs=None) -> Completion:
        return await self._account(self.inner.chat(messages, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs))

    async def complete(self, prompt, *, max_tokens=256, temperature=0.0, logprobs=None, echo=False, echo_at=None) -> Completion:
        return await self._account(self.inner.complete(prompt, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs, echo=echo, echo_at=echo_at))

    async def _account(self, pending) -> Completion:
        try:
            completion = await pending
        except LLMError as exc:
            self.usage.add(exc.usage)
            raise
        completion.usage.cost_usd = (self.price or FREE).cost(completion.usage)
        if completion.paid_usage is not None:
            completion.paid_usage.cost_usd = (self.price or FREE).cost(completion.paid_usage)
        self.usage.add(completion.usage)
        return completion

    def summary(self) -> dict:
        """The totals as a JSON-able dict (stored in labels.json under "usage")."""
        return usage_summary(self.usage, model=self.model_name, backend=self.backend, price=self.price)


def usage_summary(usage: Usage, *, model: str, backend: str, price: Price | None) -> dict:
    totals = {f.name: getattr(usage, f.name) for f in fields(usage)}
    return {
        "model": model,
        "backend": backend,
        **totals,
        "cost_usd": round(usage.cost_usd, 6),
        "requests_sent": usage.calls + usage.retries,
        "price_known": price is not None,
        "price_usd_per_1m": {"input": price.input_per_m, "output": price.output_per_m} if price is not None else None,
    }


def usage_table(summaries: list[dict] | dict, title: str = "LLM usage") -> Table:
    """A rich table of one or more ``summary()`` dicts, for printing at the end of a stage."""
    rows = [summaries] if isinstance(summaries, dict) else list(summaries)
    table = Table(title=title)
    for name, justify in (("model", "left"), ("calls", "right"), ("cached", "right"), ("retries", "right"), ("failed", "right"),
                          ("prompt tok", "right"), ("completion tok", "right"), ("cost USD", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        cost = f"{row['cost_usd']:.4f}" if row["price_known"] else "price unknown"
        table.add_row(
            f"{row['model']} ({row['backend']})", str(row["calls"]), str(row["cached_calls"]), str(row["retries"]),
            str(row["failed_calls"]), f"{row['prompt_tokens']:,}", f"{row['completion_tokens']:,}", cost,
        )
    return table


# usage fields that add up over the invocations of a stage (the others describe the model and its price)
ADDITIVE_USAGE = ("prompt_tokens", "completion_tokens", "cost_usd", "calls", "cached_calls", "retries", "failed_calls",
                  "requests_sent", "seconds", "n_features")


def _settle(client) -> Usage:
    """The response cache's ledger (``CachedClient.settle``) somewhere inside the client's wrappers."""
    layer = client
    while layer is not None:
        if hasattr(layer, "settle"):
            return layer.settle()
        layer = getattr(layer, "inner", None)
    return Usage()


def invocation_usage(client, before: Usage, seconds: float, n_features: int) -> dict:
    """What one stage invocation spent since ``before`` (a copy of ``client.usage``), as ``usage_summary`` plus
    ``seconds`` and ``n_features``; calls paid by an interrupted run (kill -9) and served from the cache now
    are counted once, here."""
    delta = client.usage.copy()
    for name in ("prompt_tokens", "completion_tokens", "cost_usd", "calls", "cached_calls", "retries", "failed_calls"):
        setattr(delta, name, getattr(delta, name) - getattr(before, name))
    recovered = _settle(client)
    delta.prompt_tokens += recovered.prompt_tokens
    delta.completion_tokens += recovered.completion_tokens
    delta.cost_usd += client.price.cost(recovered) if getattr(client, "price", None) is not None else 0.0
    summary = usage_summary(delta, model=client.model_name, backend=client.backend, price=client.price)
    return summary | {"seconds": round(seconds, 2), "n_features": n_features}


def add_usage(previous: dict | None, summary: dict) -> dict:
    """Totals over every invocation of a stage: ``summary`` added to ``previous`` when both used the same model
    and backend (a re-run that only retries failed features must not make the recorded cost look like zero)."""
    total = dict(summary)
    if previous and (previous.get("model"), previous.get("backend")) == (summary["model"], summary["backend"]):
        for key in ADDITIVE_USAGE:
            total[key] = round(previous.get(key, 0) + summary[key], 6)
    return total
