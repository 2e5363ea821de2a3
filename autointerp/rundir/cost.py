"""What a piece of work cost: wall seconds, CPU seconds, peak resident memory, and, where CUDA is in use,
CUDA time and peak GPU memory. ``measure()`` times a block; ``autointerp.rundir.stage_cost`` uses it to
charge each stage of ``autointerp run`` to the records it writes.

- ``wall_s``: ``time.perf_counter``.
- ``cpu_s``: user + system time of this process (all its threads: torch's, the shard writer's) plus that of
  child processes that exited during the block (``getrusage``; a still-running server counts once it exits).
- ``peak_rss_mb``: the highest resident memory of this process during the block, exact, without sampling:
  Linux keeps a high-water mark (``VmHWM``) that writing "5" to ``/proc/self/clear_refs`` resets, so each
  block resets it when it starts and reads it when it ends; a block that starts inside another first folds
  the mark into the enclosing ones. It is what the process held at its highest (a model an earlier stage
  left loaded counts), not what the block allocated. Where the mark cannot be reset (not Linux) it is the
  process's peak so far (``ru_maxrss``) and the cost says ``"rss_scope": "process"``. The price: the
  process's own ``ru_maxrss`` and what a parent sees of it (``/usr/bin/time -v``) then cover only the time
  since the last reset; the largest of the stages' peaks (cost.json's total) is the process's peak.
- ``cuda_s``, ``peak_gpu_mb`` (only when torch is imported and CUDA is available; the block then
  initialises CUDA on the current device if nothing has yet): the time between CUDA events recorded on
  the current stream at the start and at the end (the end waited for, so queued kernels count) and
  ``torch.cuda.max_memory_allocated`` on that device, its peak statistics reset and folded like the RSS mark.

Overhead: a few reads of ``/proc/self/status`` and ``getrusage`` per block (about 0.1 ms), no thread.
"""

from __future__ import annotations

import contextlib
import re
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_MB = 1024 * 1024
_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
_LOCK = threading.RLock()
_OPEN: list[Measurement] = []  # measurements in progress, outermost first (they share the process's marks)


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rss_mark_mb() -> float:
    """The process's resident high-water mark since it was last reset (MB)."""
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", _STATUS.read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / _MB


def _reset_rss_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _cuda():
    """torch.cuda when torch is already imported and a device is there; None otherwise (never imports torch)."""
    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


def _reset_marks() -> bool:
    """Fold the current marks into every open measurement, then reset them; False when RSS could not be reset."""
    rss, cuda = _rss_mark_mb(), _cuda()
    gpu = cuda.max_memory_allocated() / _MB if cuda is not None else None
    for m in _OPEN:
        m.fold(rss, gpu)
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    return _reset_rss_mark()


class Measurement:
    """One measured block: ``start()`` then ``stop()`` (the cost dict); see the module docstring."""

    def __init__(self) -> None:
        self.peak_rss = 0.0
        self.peak_gpu: float | None = None
        self.events = None

    def fold(self, rss: float, gpu: float | None) -> None:
        self.peak_rss = max(self.peak_rss, rss)
        if gpu is not None:
            self.peak_gpu = max(self.peak_gpu or 0.0, gpu)

    def start(self) -> Measurement:
        with _LOCK:
            self.rss_reset = _reset_marks()
            _OPEN.append(self)
        cuda = _cuda()
        if cuda is not None:
            self.device = cuda.current_device()
            self.events = (cuda.Event(enable_timing=True), cuda.Event(enable_timing=True))
            self.events[0].record(cuda.current_stream(self.device))
        self.wall0, self.cpu0 = time.perf_counter(), _cpu_seconds()
        return self

    def stop(self) -> dict:
        cuda = _cuda() if self.events is not None else None
        if cuda is not None:
            self.events[1].record(cuda.current_stream(self.device))
            self.events[1].synchronize()
        wall, cpu = time.perf_counter() - self.wall0, _cpu_seconds() - self.cpu0
        with _LOCK:
            self.fold(_rss_mark_mb(), cuda.max_memory_allocated(self.device) / _MB if cuda is not None else None)
            _OPEN.remove(self)
        cost = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_mb": round(self.peak_rss, 1)}
        if not self.rss_reset:
            cost["rss_scope"] = "process"
        if cuda is not None:
            cost |= {"cuda_s": round(self.events[0].elapsed_time(self.events[1]) / 1000, 3), "peak_gpu_mb": round(self.peak_gpu or 0.0, 1)}
        return cost


@contextlib.contextmanager
def measure() -> Iterator[dict]:
    """Measure the block; the yielded dict is filled with the cost when the block ends (also on an error)."""
    cost: dict = {}
    m = Measurement().start()
    try:
        yield cost
    finally:
        cost.update(m.stop())


_SUMMED, _PEAKS = ("wall_s", "cpu_s", "cuda_s"), ("peak_rss_mb", "peak_gpu_mb")


def combine(*costs: dict | None) -> dict:
    """Several costs as one: times added, peaks the largest (keys only some have are kept from those)."""
    out: dict = {}
    for cost in filter(None, costs):
        for key in _SUMMED:
            if cost.get(key) is not None:
                out[key] = round(out.get(key, 0.0) + cost[key], 3)
        for key in _PEAKS:
            if cost.get(key) is not None:
                out[key] = max(out.get(key, 0.0), cost[key])
        if "rss_scope" in cost:
            out["rss_scope"] = cost["rss_scope"]
    return out
