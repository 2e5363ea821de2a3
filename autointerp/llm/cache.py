"""Response cache in sqlite (``runs/<name>/llm_cache.sqlite``): a re-run makes zero new LLM calls.

The key is the sha256 of the full request as canonical JSON: backend kind, model, endpoint, every
generation parameter, and the messages or prompt. The API key is never part of a request description,
so it can never reach the file. Each answer is written in its own transaction in WAL mode: a process
killed mid-write leaves the previous state intact (sqlite rolls the partial transaction back on the next
open), and readers in other processes are never blocked. Within one event loop, identical requests in
flight at the same time are sent once: the later ones wait for the first and read its cached answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from autointerp.llm.base import Completion, LLMClient, TokenLogprob, Usage
from autointerp.llm.wrapper import ClientWrapper

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def request_key(request: dict[str, Any]) -> str:
    """sha256 of the request as canonical JSON (sorted keys, no whitespace): equal requests, equal keys."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """A key -> (request, response) store in one sqlite file; usable from several processes at once."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used only from the event loop's thread; autocommit mode, explicit transactions.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes
        self._db.execute(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        if "accounted" not in columns:  # caches written before the ledger: their calls were counted when made
            self._db.execute("ALTER TABLE responses ADD COLUMN accounted INTEGER NOT NULL DEFAULT 1")

    def accounted(self, key: str) -> bool:
        """Whether the paid call behind ``key`` is already in some stage's usage totals (labels.json)."""
        row = self._db.execute("SELECT accounted FROM responses WHERE key = ?", (key,)).fetchone()
        return bool(row[0]) if row else True

    def mark_accounted(self, keys) -> None:
        keys = list(keys)
        if keys:
            with self._transaction():
                self._db.executemany("UPDATE responses SET accounted = 1 WHERE key = ?", [(k,) for k in keys])

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, request, response, created, accounted) VALUES (?, ?, ?, ?, 0)",
                (key, json.dumps(request, ensure_ascii=False), json.dumps(response, ensure_ascii=False), time.time()),
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def completion_to_dict(completion: Completion) -> dict[str, Any]:
    logprobs = None
    if completion.logprobs is not None:
        logprobs = [[t.token, t.logprob, t.top, t.text_offset] for t in completion.logprobs]
    return {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "logprobs": logprobs,
        "prompt_tokens": completion.usage.prompt_tokens,
        "completion_tokens": completion.usage.completion_tokens,
    }


def completion_from_dict(data: dict[str, Any]) -> Completion:
    """A cached answer: same text and logprobs; usage counts one cache hit and no tokens (nothing was spent now);
    ``paid_usage`` keeps what the original call consumed, so a label served from the cache keeps its cost."""
    logprobs = None
    if data.get("logprobs") is not None:
        logprobs = [TokenLogprob(token=t, logprob=lp, top=dict(top), text_offset=off) for t, lp, top, off in data["logprobs"]]
    paid = Usage(prompt_tokens=int(data.get("prompt_tokens") or 0), completion_tokens=int(data.get("completion_tokens") or 0))
    return Completion(text=data["text"], usage=Usage(cached_calls=1), logprobs=logprobs, cached=True, finish_reason=data.get("finish_reason"),
                      paid_usage=paid)


class CachedClient(ClientWrapper):
    """Answers repeated requests from ``cache``; only misses reach ``inner``. Failures are never cached."""

    def __init__(self, inner: LLMClient, cache: ResponseCache, backend_kind: str):
        super().__init__(inner)
        self.cache = cache
        self.backend_kind = backend_kind
        self._in_flight: dict[str, asyncio.Event] = {}
        # the ledger: paid calls not yet in any stored totals (this process's misses, and hits on answers whose
        # paying process was killed before it stored its usage); ``settle`` hands them to the stage once
        self.unsettled: dict[str, Usage] = {}
        self.recovered = Usage()  # tokens of paid calls recovered from the ledger since the last settle

    async def chat(self, messages, *, max_tokens=256, temperature=0.0, logprobs=None) -> Completion:
        request = self._describe("chat", messages=messages, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs)
        return await self._cached(request, lambda: self.inner.chat(messages, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs))

    async def complete(self, prompt, *, max_tokens=256, temperature=0.0, logprobs=None, echo=False, echo_at=None) -> Completion:
        selective = {"echo_at": sorted(set(echo_at))} if (echo and echo_at is not None) else {}  # keyed only when given: other keys unchanged
        request = self._describe("completions", prompt=prompt, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs, echo=echo, **selective)
        return await self._cached(request, lambda: self.inner.complete(prompt, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs, echo=echo, echo_at=echo_at))

    def settle(self) -> Usage:
        """Mark every unsettled call accounted (the caller stores its usage now) and return the recovered tokens."""
        recovered, self.recovered = self.recovered, Usage()
        self.cache.mark_accounted(self.unsettled)
        self.unsettled = {}
        return recovered

    def _describe(self, endpoint: str, **params: Any) -> dict[str, Any]:
        return {"backend": self.backend_kind, "model": self.model_name, "endpoint": endpoint, **params}

    async def _cached(self, request: dict[str, Any], call: Callable[[], Awaitable[Completion]]) -> Completion:
        key = request_key(request)
        while (pending := self._in_flight.get(key)) is not None:
            await pending.wait()  # the same request is on its way: reuse its answer (or try again if it failed)
        if (hit := self.cache.get(key)) is not None:
            completion = completion_from_dict(hit)
            self.usage.add(completion.usage)
            if key not in self.unsettled and not self.cache.accounted(key):
                self.unsettled[key] = completion.paid_usage.copy()  # paid by a killed run: count it once, here
                self.recovered.add(completion.paid_usage)
            return completion
        done = self._in_flight[key] = asyncio.Event()
        try:
            completion = await call()
            self.cache.put(key, request, completion_to_dict(completion))
            self.unsettled[key] = Usage()  # counted in this client's usage already
        finally:
            del self._in_flight[key]
            done.set()
        self.usage.add(completion.usage)
        return completion
