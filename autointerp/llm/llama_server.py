"""Run a GGUF model behind llama-cpp-python's OpenAI-compatible server on loopback, for tests and benchmarks.

``serve_gguf(path)`` starts ``python -m llama_cpp.server`` on 127.0.0.1 and a free port, waits until
``GET /v1/models`` answers, yields a ``LlamaServer`` (``base_url``, ``model``), and stops the process on
exit. Settings that matter for auto-interp:

- ``logits_all``: llama-cpp-python keeps logits only for the last position unless asked; echo +
  logprobs (prompt-token logprobs, the one-request simulation scorer) needs them for every position.
- ``n_ctx`` 4096: explainer prompts with a dozen exemplar windows run to a few thousand tokens.
- ``model_alias``: the name clients put in ``[llm] model`` (instead of the file path).
- the server runs through ``llama_server_main``, which computes each position's top-N logprobs with
  numpy instead of sorting the whole vocabulary in Python (~10x faster echo + logprobs with Gemma's
  262k-token vocabulary: a 7-token echo 9 s -> 1 s, a 101-token echo 16 s).
- ``chat_format``: the embedded Gemma GGUF carries no chat template, and llama-cpp-python's fallback
  (llama-2) makes Gemma answer chat requests with nothing; ``serve_embedded`` passes ``gemma``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autointerp.errors import UserError

INSTALL_HINT = "pip install 'llama-cpp-python[server]'"
EMBEDDED_MODEL = "gemma-3-270m"
EMBEDDED_CHAT_FORMAT = "gemma"


@dataclass(frozen=True)
class LlamaServer:
    base_url: str  # http://127.0.0.1:<port>/v1
    model: str  # the served model's name (its alias)
    pid: int
    log_path: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def check_installed() -> None:
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings"):
        try:
            missing = importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # a broken install counts as missing
            missing = True
        if missing:
            raise UserError(f"the llama.cpp server needs the package llama-cpp-python with its server extra (missing: {module}); {INSTALL_HINT}")


def server_command(gguf_path: Path, *, port: int, model_alias: str, n_ctx: int, n_threads: int | None, chat_format: str | None,
                   extra_args: list[str]) -> list[str]:
    command = [
        sys.executable, "-m", "autointerp.llm.llama_server_main",
        "--model", str(gguf_path),
        "--model_alias", model_alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--logits_all", "True",  # prompt-token logprobs (echo=True + logprobs)
        "--n_gpu_layers", "0",
    ]
    if chat_format:
        command += ["--chat_format", chat_format]
    if n_threads:
        command += ["--n_threads", str(n_threads), "--n_threads_batch", str(n_threads)]
    return command + list(extra_args)


@contextlib.contextmanager
def serve_gguf(
    gguf_path: Path | str,
    *,
    model_alias: str | None = None,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    chat_format: str | None = None,
    port: int | None = None,
    startup_timeout_s: float = 180.0,
    log_path: Path | str | None = None,
    extra_args: list[str] | None = None,
) -> Iterator[LlamaServer]:
    """Serve ``gguf_path`` on loopback while the block runs; raise ``UserError`` if it cannot start."""
    check_installed()
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise UserError(f"GGUF file not found: {gguf_path}; check the path")
    if port and port_in_use(port):
        # another server there would answer our readiness check and be mistaken for this one
        raise UserError(f"port {port} on 127.0.0.1 is already in use; choose another port or leave it unset for a free one")
    port = port or free_port()
    alias = model_alias or gguf_path.stem
    log_path = Path(log_path) if log_path else Path(os.environ.get("TMPDIR", "/tmp")) / f"llama_server_{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = server_command(gguf_path, port=port, model_alias=alias, n_ctx=n_ctx, n_threads=n_threads,
                             chat_format=chat_format, extra_args=extra_args or [])
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent)  # noqa: PLW1509 - async-signal-safe call only
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(process, base_url, startup_timeout_s, log_path)
        yield LlamaServer(base_url=base_url, model=alias, pid=process.pid, log_path=log_path)
    finally:
        _stop(process)


@contextlib.contextmanager
def serve_embedded(**kwargs) -> Iterator[LlamaServer]:
    """Serve the embedded Gemma 3 270M (model name ``gemma-3-270m``) with its chat format."""
    from autointerp.models.resolve import embedded_gguf_path

    kwargs = {"model_alias": EMBEDDED_MODEL, "chat_format": EMBEDDED_CHAT_FORMAT, **kwargs}
    with serve_gguf(embedded_gguf_path(), **kwargs) as server:
        yield server


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the parent dies, so a killed test run or
    benchmark never leaves an orphaned server holding a GB of memory. Only a plain libc call here (libc
    loaded beforehand): nothing that could wait on a lock another thread of the parent held."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_until_ready(process: subprocess.Popen, base_url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"the llama.cpp server exited with status {process.returncode} while starting: {_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200 and json.loads(response.read()).get("data"):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.25)
    raise UserError(f"the llama.cpp server did not answer at {base_url} within {timeout_s:g} s: {_log_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _log_tail(log_path: Path, lines: int = 3) -> str:
    try:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return f"(no log at {log_path})"
    return " | ".join(tail) or f"(empty log at {log_path})"
