"""The peer venvs (sae-lens; delphi + neuronpedia) built in the background while other tests run.

Why: on a fresh machine each build is 2-3 minutes of pip, mostly waiting on downloads and unpacking. When the
collected tests need them (``pytest_collection_finish`` in conftest.py), the builds start at once, one after the
other in one background thread (two pip installs at once would share pip's cache), and the fixtures that
need a venv wait for its build; a build that was not started (a single test file run) runs when asked for.
The venv scripts reuse a finished venv in a second or two, so a warm machine pays nothing.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]


class Build(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall time of the build itself
    waited: float  # how long the fixture waited for it


# name -> (script, venv variable, default venv, the fixture that needs it)
ENVS = {
    "interop": (ROOT / "scripts" / "interop_env.sh", "INTEROP_VENV", ROOT / ".venv-interop", "interop_python"),
    "saelens": (ROOT / "scripts" / "saelens_env.sh", "SAELENS_VENV", ROOT / ".venv-saelens", "saelens_python"),
}
_builds: dict[str, Future] = {}
_running: set[subprocess.Popen] = set()  # builds in progress (stopped with the session: ``stop``)
_lock = threading.Lock()


def venv(name: str) -> Path:
    _, var, default, _ = ENVS[name]
    return Path(os.environ.get(var, default))


def _run(name: str) -> Build:
    script, var, _, _ = ENVS[name]
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, var: str(venv(name))})
    with _lock:
        _running.add(proc)
    try:
        out, err = proc.communicate(timeout=1800)
        return Build(proc.returncode, out, err, time.perf_counter() - t0, 0.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Build(124, out, err + "\ntimed out after 1800 s", time.perf_counter() - t0, 0.0)
    finally:
        with _lock:
            _running.discard(proc)


def stop() -> None:
    """Stop builds still running when the session ends (a test run stopped early): the venv scripts write their
    stamp last, so the next session rebuilds a venv left half-made."""
    with _lock:
        running = list(_running)
    for proc in running:
        proc.terminate()


def start(names: list[str]) -> None:
    """Build ``names`` one after the other in a background thread (each at most once per session)."""
    with _lock:
        todo = [n for n in names if n not in _builds]
        futures = {n: Future() for n in todo}
        _builds.update(futures)
    if not todo:
        return

    def work():
        for n in todo:
            futures[n].set_result(_run(n))

    threading.Thread(target=work, name="peer-venv-builds", daemon=True).start()


def wait(name: str) -> Build:
    """The build of ``name``: the background one when it was started, else one run now."""
    start([name])
    t0 = time.perf_counter()
    build = _builds[name].result()
    return build._replace(waited=time.perf_counter() - t0)


def needed(items) -> list[str]:
    """The peer venvs the collected test items use, in the order they will run."""
    want = {ENVS[n][3]: n for n in ENVS}
    order = []
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in want and want[fixture] not in order:
                order.append(want[fixture])
    return order
