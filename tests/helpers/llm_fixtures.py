"""LLM test fixtures: the real llama.cpp server on loopback, and a fault-injecting HTTP proxy in front of it.

Registered in conftest.py via ``pytest_plugins = ["llm_fixtures"]``; usable from any test file.

- ``llama_server``: session-scoped; serves the embedded Gemma 3 270M GGUF with ``llama_cpp.server`` on
  127.0.0.1 (logits for every prompt token on, so echo+logprobs works). Yields a ``LlamaServer`` with
  ``.base_url`` (".../v1") and ``.model`` (the name to put in ``[llm] model``).
- ``fault_proxy``: a factory ``fault_proxy(upstream_base_url, fault_rate=0.3, faults=FAULT_KINDS, seed=0,
  stall_s=3.0, require_key=None) -> FaultProxy``. The proxy is a real ``ThreadingHTTPServer``; POST
  requests (the LLM calls) are answered, with probability ``fault_rate``, by one injected fault instead of
  the upstream's answer. The n-th POST gets the n-th draw of ``random.Random(seed)``, so the fault sequence
  is deterministic given the seed. It counts what it injected, what it forwarded (and how many of those
  the client had abandoned, timed out, before the upstream answered) and the most requests it had in
  flight at once. GET requests (``/v1/models``) always pass through.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import random
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

FAULT_KINDS = ("429", "500", "stall", "empty", "malformed")


class FaultProxy:
    """A loopback HTTP proxy that injects faults into a set fraction of POST requests."""

    def __init__(self, upstream_base_url: str, *, fault_rate: float = 0.3, faults=FAULT_KINDS, seed: int = 0,
                 stall_s: float = 3.0, require_key: str | None = None):
        upstream = urlparse(upstream_base_url)
        self.upstream_host, self.upstream_port = upstream.hostname, upstream.port
        self.upstream_prefix = upstream.path.rstrip("/")  # e.g. /v1
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.stall_s = stall_s
        self.require_key = require_key
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected: collections.Counter[str] = collections.Counter()
        self.forwarded = 0  # POSTs passed to the upstream
        self.abandoned = 0  # ... of which the client had hung up (timed out) before the answer came
        self.requests = 0  # every request received, GETs included
        self.posts = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.authorization_headers: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True  # stalled handlers must not block shutdown
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.upstream_prefix}"

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.injected.clear()
            self.forwarded = self.abandoned = self.requests = self.posts = self.max_in_flight = 0
            self.authorization_headers.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _draw_fault(self) -> str | None:
        """Called once per POST, under the lock: the next fault in the seeded sequence, or None to forward."""
        roll, kind = self._random.random(), self._random.choice(self.faults) if self.faults else None
        return kind if roll < self.fault_rate else None

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_GET(self):
                self._handle(body=None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self._handle(body=self.rfile.read(length))

            def _handle(self, body: bytes | None):
                with proxy._lock:
                    proxy.requests += 1
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                    proxy.authorization_headers.append(self.headers.get("Authorization", ""))
                    fault = None
                    if body is not None:
                        proxy.posts += 1
                        fault = proxy._draw_fault()
                        if fault:
                            proxy.injected[fault] += 1
                try:
                    if proxy.require_key is not None and self.headers.get("Authorization") != f"Bearer {proxy.require_key}":
                        self._reply(401, b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}')
                    elif fault:
                        self._inject(fault)
                    else:
                        self._forward(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: nothing to answer
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1

            def _inject(self, fault: str):
                if fault == "429":
                    self._reply(429, b'{"error": {"message": "Rate limit reached", "type": "rate_limit"}}', {"Retry-After": "0"})
                elif fault == "500":
                    self._reply(500, b'{"error": {"message": "injected server error", "type": "server_error"}}')
                elif fault == "stall":
                    if self._stall_until_client_leaves(proxy.stall_s):
                        self._reply(504, b'{"error": {"message": "stalled"}}')
                elif fault == "empty":
                    self._reply(200, b"")
                elif fault == "malformed":
                    self._reply(200, b'{"id": "cmpl-1", "object": "text_completion", "choices": [{"text": "tru')
                else:  # pragma: no cover - a typo in a test's fault list
                    raise ValueError(f"unknown fault kind {fault}")

            def _stall_until_client_leaves(self, seconds: float) -> bool:
                """Hold the request open; False as soon as the client hangs up (so it stops counting as
                in flight), True if it was still waiting after ``seconds``."""
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    if self._client_gone(wait_s=0.05):
                        return False
                return True

            def _client_gone(self, wait_s: float = 0.0) -> bool:
                """True if the client closed its end (it waits for our answer, so it sends nothing else)."""
                readable, _, _ = select.select([self.connection], [], [], wait_s)
                if not readable:
                    return False
                try:
                    return not self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    return True

            def _forward(self, body: bytes | None):
                """Pass the request upstream (in a helper thread) while watching the client: a client that
                hangs up (times out) stops counting as in flight at once, and its answer is dropped."""
                result: dict = {}
                wake_r, wake_w = socket.socketpair()  # the helper writes one byte when the upstream answered
                worker = threading.Thread(target=self._call_upstream, args=(body, result, wake_w), daemon=True)
                worker.start()
                gone = False
                try:
                    while True:
                        readable, _, _ = select.select([wake_r, self.connection], [], [])
                        if self.connection in readable and self._client_gone():
                            gone = True
                            break
                        if wake_r in readable:
                            break
                finally:
                    wake_r.close()
                if self.command == "POST":
                    with proxy._lock:
                        proxy.forwarded += 1
                        proxy.abandoned += gone
                if gone:
                    return  # the client timed out before the upstream answered: it will retry
                worker.join()
                if "error" in result:
                    self._reply(502, b'{"error": {"message": "upstream unreachable"}}')
                else:
                    self._reply(result["status"], result["data"], {"Content-Type": result["content_type"]})

            def _call_upstream(self, body: bytes | None, result: dict, wake: socket.socket):
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    upstream = conn.getresponse()
                    result["data"] = upstream.read()
                    result["status"] = upstream.status
                    result["content_type"] = upstream.getheader("Content-Type", "application/json")
                except OSError as exc:
                    result["error"] = exc
                finally:
                    conn.close()
                    with contextlib.suppress(OSError):
                        wake.send(b"x")
                    wake.close()

            def _reply(self, status: int, data: bytes, headers: dict | None = None):
                self.send_response(status)
                headers = {"Content-Type": "application/json", **(headers or {})}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        return Handler


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """The real llama.cpp OpenAI-compatible server serving the embedded Gemma GGUF on loopback."""
    from autointerp.llm.llama_server import serve_embedded

    log_dir = tmp_path_factory.mktemp("llama_server")
    with serve_embedded(log_path=log_dir / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def fault_proxy():
    """Factory of fault-injecting proxies (all closed at the end of the session)."""
    proxies: list[FaultProxy] = []

    def make(upstream_base_url: str, **kwargs) -> FaultProxy:
        proxy = FaultProxy(upstream_base_url, **kwargs)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
