"""The LLM client layer against real components: the llama.cpp server serving the embedded Gemma GGUF, a
real fault-injecting HTTP proxy in front of it, and real sqlite files. Nothing here is mocked.

Prompts are short and ``max_tokens`` tiny: the point is the plumbing (retries, cache, concurrency,
accounting, errors), not the quality of a 270M model's answers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.llm_fixtures import FAULT_KINDS

from autointerp.errors import UserError
from autointerp.llm.accounting import AccountingClient, usage_table
from autointerp.llm.base import Completion, LLMError
from autointerp.llm.cache import ResponseCache
from autointerp.rundir.layout import LLM_CACHE_FILE as CACHE_FILENAME
from autointerp.llm.config import LLMConfig
from autointerp.llm.factory import open_client
from autointerp.llm.llama_server import free_port
from autointerp.llm.llama_server_main import fast_sorted
from autointerp.llm.reliable import ReliableClient

SECRET = "sk-test-DO-NOT-LEAK-4b1f9c0e7d"
PRICES = {"gemma-3-270m": {"input": 0.5, "output": 1.5}}


def openai_cfg(base_url: str, model: str | None = "gemma-3-270m", **overrides) -> LLMConfig:
    fast = {"backend": "openai", "base_url": base_url, "model": model, "concurrency": 3, "max_retries": 8, "timeout_s": 20.0,
            "total_timeout_s": 120.0, "backoff_s": 0.05, "backoff_max_s": 0.2, "prices": PRICES}
    return LLMConfig(**(fast | overrides))


async def run_batch(cfg: LLMConfig, run_dir: Path, prompts: list[str], max_tokens: int = 3):
    """Send ``prompts`` concurrently; return (results: Completion | LLMError, usage summary)."""
    async with open_client(cfg, run_dir) as client:
        results = await asyncio.gather(*(client.complete(p, max_tokens=max_tokens) for p in prompts), return_exceptions=True)
        return results, client.summary()


# --------------------------------------------------------------------------------------- real server


@pytest.mark.slow
def test_chat_and_completions_against_real_server(llama_server, tmp_path):
    async def go():
        async with open_client(openai_cfg(llama_server.base_url), tmp_path) as client:
            chat = await client.chat([{"role": "user", "content": "Name one colour."}], max_tokens=6)
            done = await client.complete("The capital of France is", max_tokens=4)
            return chat, done, client.summary()

    chat, done, summary = asyncio.run(go())
    for completion in (chat, done):
        assert isinstance(completion, Completion) and completion.text.strip()
        assert completion.usage.prompt_tokens > 0 and 0 < completion.usage.completion_tokens <= 6
        assert not completion.cached and completion.finish_reason in ("stop", "length")
    assert summary["calls"] == 2 and summary["retries"] == 0 and summary["model"] == "gemma-3-270m"


@pytest.mark.slow
def test_echo_logprobs_give_top_alternatives_per_prompt_token(llama_server, tmp_path):
    prompt = "Paris is the capital of France"

    async def go():
        async with open_client(openai_cfg(llama_server.base_url), tmp_path) as client:
            echoed = await client.complete(prompt, max_tokens=1, logprobs=3, echo=True)
            chat = await client.chat([{"role": "user", "content": "Say yes."}], max_tokens=3, logprobs=2)
            return echoed, chat

    echoed, chat = asyncio.run(go())
    tokens = echoed.logprobs
    assert tokens is not None and len(tokens) >= 5  # the prompt's tokens, then the generated one
    # The echoed tokens spell the prompt, and each text offset points at its token in the prompt.
    assert "".join(t.token for t in tokens).startswith(prompt)
    prompt_tokens = [t for t in tokens if t.text_offset is not None and t.text_offset < len(prompt)]
    assert len(prompt_tokens) >= 5
    for t in prompt_tokens:
        assert prompt[t.text_offset:t.text_offset + len(t.token)] == t.token
    # Every position after the first has a logprob and up to 3 alternatives, all log-probabilities.
    for t in tokens[1:]:
        assert t.logprob is not None and t.logprob <= 0.0
        assert 1 <= len(t.top) <= 3 and all(v <= 0.0 for v in t.top.values())
    # A well-formed sentence: the model's best guess at some prompt position is the actual next token.
    assert any(max(t.top, key=t.top.get) == t.token for t in tokens[1:len(prompt_tokens)])
    assert chat.logprobs and all(1 <= len(t.top) <= 2 for t in chat.logprobs)


@pytest.mark.slow
def test_fault_injection_batch_retries_cache_concurrency_and_costs(llama_server, fault_proxy, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # every logger, openai's and httpx's included
    seed, rate = 11, 0.35
    proxy = fault_proxy(llama_server.base_url, fault_rate=rate, seed=seed, stall_s=30.0)
    cfg = openai_cfg(proxy.base_url, timeout_s=6.0)
    prompts = [f"Item {i}: a colour is" for i in range(30)]

    started = time.monotonic()
    results, summary = asyncio.run(run_batch(cfg, tmp_path, prompts))
    elapsed = time.monotonic() - started

    ok = [r for r in results if isinstance(r, Completion)]
    failed = [r for r in results if isinstance(r, LLMError)]
    assert len(ok) + len(failed) == len(prompts)  # everything finished one way or the other
    assert all(f.reason for f in failed)
    # Every fault kind was injected, following the seeded sequence exactly.
    replay = random.Random(seed)
    expected = {}
    for _ in range(proxy.posts):
        roll, kind = replay.random(), replay.choice(FAULT_KINDS)
        if roll < rate:
            expected[kind] = expected.get(kind, 0) + 1
    assert dict(proxy.injected) == expected and set(expected) == set(FAULT_KINDS)
    # Retries are counted and match the faults: each injected fault (and each real answer that came after
    # the client's timeout, on a busy machine) costs one retry, except the last fault of a call that
    # finally failed. Requests the client sent == requests the proxy received.
    assert summary["retries"] == proxy.total_injected + proxy.abandoned - summary["failed_calls"] > 0
    assert summary["requests_sent"] == summary["calls"] + summary["retries"] == proxy.posts
    assert proxy.forwarded - proxy.abandoned == len(ok) and summary["failed_calls"] == len(failed)
    # Concurrency: never more than `concurrency` requests in flight, and the bound was actually used.
    assert 2 <= proxy.max_in_flight <= cfg.concurrency
    # Tokens and cost add up over the calls; the price applies per 1M tokens.
    assert summary["prompt_tokens"] == sum(r.usage.prompt_tokens for r in ok) > 0
    assert summary["completion_tokens"] == sum(r.usage.completion_tokens for r in ok) > 0
    expected_cost = (summary["prompt_tokens"] * 0.5 + summary["completion_tokens"] * 1.5) / 1e6
    assert summary["cost_usd"] == pytest.approx(expected_cost, rel=1e-4) and summary["price_known"]
    assert elapsed < 90

    # A second identical batch is answered from the sqlite cache: the proxy sees no traffic at all
    # (requests that failed the first time are the only ones sent again).
    proxy.reset_counts()
    again, summary2 = asyncio.run(run_batch(cfg, tmp_path, prompts))
    assert proxy.posts == len(failed)
    assert summary2["cached_calls"] == len(ok) and summary2["calls"] == len(failed)
    first_texts = {p: r.text for p, r in zip(prompts, results, strict=True) if isinstance(r, Completion)}
    for p, r in zip(prompts, again, strict=True):
        if p in first_texts:
            assert r.cached and r.text == first_texts[p]

    # The key was sent to the server but never reached the cache file or the logs.
    assert any(SECRET in h for h in proxy.authorization_headers) or not proxy.posts
    for path in tmp_path.iterdir():
        if path.name.startswith(CACHE_FILENAME):
            assert SECRET.encode() not in path.read_bytes()
    assert caplog.records and SECRET not in caplog.text


@pytest.mark.slow
def test_permanent_faults_fail_with_reason_and_bounded_time(llama_server, fault_proxy, tmp_path):
    always_500 = fault_proxy(llama_server.base_url, fault_rate=1.0, faults=("500",))
    results, summary = asyncio.run(run_batch(openai_cfg(always_500.base_url, max_retries=3), tmp_path / "a", ["Hi"]))
    assert isinstance(results[0], LLMError) and results[0].reason.startswith("HTTP 500") and results[0].reason.endswith("after 3 retries")
    assert always_500.posts == 4 and summary["retries"] == 3 and summary["failed_calls"] == 1

    stalls = fault_proxy(llama_server.base_url, fault_rate=1.0, faults=("stall",), stall_s=5.0)
    cfg = openai_cfg(stalls.base_url, timeout_s=0.5, total_timeout_s=2.0, max_retries=50)
    started = time.monotonic()
    results, _ = asyncio.run(run_batch(cfg, tmp_path / "b", ["Hi"]))
    assert isinstance(results[0], LLMError) and "timeout" in results[0].reason
    assert time.monotonic() - started < 4.0  # the total bound holds however many retries were allowed

    # 401 cannot be fixed by retrying: one request, no retries.
    auth = fault_proxy(llama_server.base_url, fault_rate=0.0)
    cfg = openai_cfg(auth.base_url)

    async def go():
        async with open_client(cfg, tmp_path / "c") as client:
            auth.require_key = "another-key"  # the server starts refusing after start-up
            auth.reset_counts()
            with pytest.raises(LLMError) as err:
                await client.complete("Hi", max_tokens=2)
            return err.value, client.summary()

    error, summary = asyncio.run(go())
    assert error.reason.startswith("HTTP 401") and auth.posts == 1 and summary["retries"] == 0


@pytest.mark.slow
def test_identical_concurrent_requests_are_sent_once(llama_server, fault_proxy, tmp_path):
    proxy = fault_proxy(llama_server.base_url, fault_rate=0.0)
    results, summary = asyncio.run(run_batch(openai_cfg(proxy.base_url), tmp_path, ["Same prompt"] * 5))
    assert proxy.posts == 1 and len({r.text for r in results}) == 1
    assert summary["calls"] == 1 and summary["cached_calls"] == 4


# ------------------------------------------------------------------------------------- bad set-ups


def test_missing_api_key_for_remote_server_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    cfg = LLMConfig(backend="openai", base_url="https://llm.example.com/v1", model="gpt-4o-mini", api_key_env="MY_LLM_KEY")
    with pytest.raises(UserError) as err:
        asyncio.run(run_batch(cfg, tmp_path, ["Hi"]))
    message = str(err.value)
    assert "MY_LLM_KEY" in message and "export" in message and 'backend = "local"' in message
    assert not (tmp_path / CACHE_FILENAME).exists()


def test_unreachable_url_fails_fast_and_names_it(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(UserError) as err:
        asyncio.run(run_batch(LLMConfig(backend="openai", base_url=url, model="m", max_retries=6), tmp_path, ["Hi"]))
    assert time.monotonic() - started < 5.0
    assert "cannot reach" in str(err.value) and url in str(err.value)


def test_bad_backend_and_price_entries_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="backend = 'openia' is unknown"):
        asyncio.run(run_batch(LLMConfig(backend="openia"), tmp_path, ["Hi"]))
    with pytest.raises(UserError, match="prices entry for 'gpt-x'"):
        AccountingClient(_Named("gpt-x"), backend="openai", prices={"gpt-x": {"input": 1.0}})


@pytest.mark.slow
def test_unknown_model_lists_the_servers_models(llama_server, tmp_path):
    with pytest.raises(UserError) as err:
        asyncio.run(run_batch(openai_cfg(llama_server.base_url, model="gpt-nonexistent"), tmp_path, ["Hi"]))
    assert "gpt-nonexistent" in str(err.value) and "gemma-3-270m" in str(err.value)
    # A base URL without the API prefix is named, with the usual fix.
    bare = llama_server.base_url.removesuffix("/v1")
    with pytest.raises(UserError, match=f"no OpenAI-compatible API at {bare} .*end in /v1"):
        asyncio.run(run_batch(openai_cfg(bare), tmp_path, ["Hi"]))
    # Without [llm] model, the server's only model is used.
    results, summary = asyncio.run(run_batch(openai_cfg(llama_server.base_url, model=None), tmp_path, ["Hi"]))
    assert isinstance(results[0], Completion) and summary["model"] == "gemma-3-270m"


@pytest.mark.slow
def test_wrong_api_key_is_a_user_error(llama_server, fault_proxy, tmp_path, monkeypatch):
    proxy = fault_proxy(llama_server.base_url, fault_rate=0.0, require_key="right-key")
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
    with pytest.raises(UserError, match="rejected the API key in \\$OPENAI_API_KEY"):
        asyncio.run(run_batch(openai_cfg(proxy.base_url), tmp_path, ["Hi"]))


# ------------------------------------------------------------------------------- cache & accounting


class _Named:
    """Only a name: enough for AccountingClient's price lookup (no calls are made)."""

    supports_logprobs = False

    def __init__(self, model_name: str):
        self.model_name = model_name


def test_unknown_price_costs_zero_and_says_so():
    client = AccountingClient(_Named("mystery-model"), backend="openai", prices=PRICES)
    client.usage.prompt_tokens, client.usage.calls = 1000, 2
    summary = client.summary()
    assert summary["price_known"] is False and summary["cost_usd"] == 0.0 and summary["price_usd_per_1m"] is None
    priced = AccountingClient(_Named("gemma-3-270m-q4"), backend="openai", prices=PRICES)  # prefix match
    assert priced.price is not None and priced.price.input_per_m == 0.5
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(usage_table([summary, priced.summary()]))
    text = console.export_text()
    assert "price unknown" in text and "mystery-model" in text and "0.0000" in text


def test_cache_survives_a_process_killed_mid_write(tmp_path):
    path = tmp_path / CACHE_FILENAME
    writer = (
        "import sys; from autointerp.llm.cache import ResponseCache\n"
        "cache = ResponseCache(sys.argv[1])\n"
        "for i in range(10**6):\n"
        "    cache.put(f'k{i}', {'prompt': 'p' * 2000, 'i': i}, {'text': 'x' * 5000, 'i': i})\n"
        "    if i == 20: print('ready', flush=True)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()

    cache = ResponseCache(path)  # reopening recovers from the WAL
    n = len(cache)
    assert n > 20
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT key, response FROM responses").fetchall()
    assert len(rows) == n
    for key, _ in rows:
        hit = cache.get(key)
        assert hit is not None and hit["text"] == "x" * 5000 and key == f"k{hit['i']}"
    cache.put("after", {"p": 1}, {"text": "still writable"})
    assert cache.get("after") == {"text": "still writable"}
    cache.close()


def test_backoff_is_full_jitter_capped_and_honours_retry_after():
    client = ReliableClient(_Named("m"), backoff_s=0.5, backoff_max_s=4.0, seed=0)
    for retry, cap in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (8, 4.0)):
        delays = [client.backoff_delay(retry) for _ in range(300)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap and min(delays) < 0.2 * cap  # spread over the whole range
    assert all(client.backoff_delay(0, retry_after_s=3.0) >= 3.0 for _ in range(20))
    assert client.backoff_delay(0, retry_after_s=600.0) == 4.0  # a huge Retry-After is capped


def test_llama_server_set_up_errors_are_user_errors(tmp_path):
    from autointerp.llm.llama_server import serve_gguf

    with pytest.raises(UserError, match="GGUF file not found"), serve_gguf(tmp_path / "missing.gguf"):
        pass
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} .* already in use"), serve_gguf(gguf, port=port):
            pass
    # Without llama-cpp-python installed (hidden from this interpreter), the message says how to install it.
    script = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'llama_cpp': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from autointerp.errors import UserError\n"
        "from autointerp.llm.llama_server import serve_gguf\n"
        "try:\n"
        f"    with serve_gguf({str(gguf)!r}): pass\n"
        "except UserError as e: print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert "pip install 'llama-cpp-python[server]'" in out.stdout, out.stderr


def test_fast_top_logprobs_sort_matches_builtin_sorted():
    """The llama server's numpy top-N path returns exactly what Python's sorted would (ties included)."""
    rng = np.random.default_rng(0)
    for n in (1, 7, 5000):
        values = rng.normal(size=n).astype(np.float32)
        values[::3] = values[0]  # ties: the higher token id comes first, as with tuple sorting
        values[n // 2] = -np.inf
        for reverse in (True, False):
            expected = sorted(zip(values, range(n)), reverse=reverse)
            assert fast_sorted(zip(values, range(n)), reverse=reverse) == expected
    shifted = range(10, 10 + 2 * n, 2)  # any range of ids, not only 0..n-1
    assert fast_sorted(zip(values, shifted), reverse=True) == sorted(zip(values, shifted), reverse=True)
    # Anything else goes to the builtin: plain lists, keys, zips of other things.
    assert fast_sorted([3, 1, 2]) == [1, 2, 3] and fast_sorted(["b", "a"], key=str, reverse=True) == ["b", "a"]
    assert fast_sorted(zip([2, 1], "xy")) == [(1, "y"), (2, "x")]
