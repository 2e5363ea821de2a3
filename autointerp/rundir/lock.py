"""One process at a time in a run directory.

``run_lock(run_dir)`` holds an exclusive ``flock`` on ``<run>/.lock`` while its block runs; every command
that writes into a run directory takes it (``autointerp run`` for the whole chain, and each stage function
again: the lock is reentrant within one process). A second process gets a one-line ``UserError`` naming
the holder's PID and command. The holder writes ``pid``, ``host`` and ``command`` lines into the file after
locking; that text is only read to name the holder when locking fails, and only a live PID is ever named.

A process that dies (SIGKILL, OOM, a lost node) loses its flock with it, so a lock file left behind is
simply taken over. On release the file is emptied and left in place, not removed: removing it would let a
process that had already opened the old file lock that orphaned inode while a third process locks the
new file, and both would believe they own the directory.

Under ``torchrun`` only rank 0 takes the lock: the ranks of one job share the directory by design (rank 0
writes, the others wait at barriers), so a lock per rank would refuse the job's own ranks.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shlex
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

from autointerp.errors import UserError
from autointerp.rundir.layout import RunDir

log = logging.getLogger("autointerp")

# resolved lock path -> [file descriptor (None when the filesystem has no flock), depth]
_HELD: dict[Path, list] = {}
_GUARD = threading.Lock()
# A holder writes its PID right after locking; a failed locker waits this long to read a live one.
_WAIT_FOR_HOLDER_S = 2.0
_COMMAND_CHARS = 80


class Holder(NamedTuple):
    pid: int
    host: str
    command: str


@contextmanager
def run_lock(run_dir: Path | str, *, enabled: bool = True, create: bool = False) -> Iterator[None]:
    """Hold the run directory's lock for the block.

    Reentrant in one process: only the outermost block locks and unlocks. ``enabled=False`` (or a
    non-zero torchrun rank) makes it a no-op. Raises ``UserError`` when another live process holds it.
    Only the stages that start a run (``create=True``: harvest, ``autointerp run``) create a missing
    directory; for the others there is nothing to guard yet, and they fail on their missing inputs."""
    if not enabled or _secondary_rank() or (not create and not Path(run_dir).is_dir()):
        yield
        return
    path = RunDir(Path(run_dir)).lock
    path.parent.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
        else:
            _HELD[key] = [_acquire(path, run_dir), 1]
    try:
        yield
    finally:
        with _GUARD:
            held = _HELD[key]
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                _release(held[0])


def read_holder(lock_path: Path) -> Holder | None:
    """The process named in a lock file, or None when the file is empty, unreadable or names no PID."""
    try:
        text = Path(lock_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = dict(line.partition(": ")[::2] for line in text.splitlines() if ": " in line)
    try:
        pid = int(fields.get("pid", ""))
    except ValueError:
        return None
    return Holder(pid, fields.get("host", ""), fields.get("command", ""))


def _secondary_rank() -> bool:
    """A rank > 0 of a torchrun job (rank 0 holds the lock for the job). torchrun sets WORLD_SIZE, which
    ``distributed.launched_by_torchrun`` reads; without it torch is not imported here."""
    if "WORLD_SIZE" not in os.environ:
        return False
    from autointerp import distributed as ddp

    if not ddp.launched_by_torchrun():
        return False
    # The process group may not be joined yet (train_stage joins it), so RANK from torchrun counts too.
    return ddp.rank() != 0 or int(os.environ.get("RANK", "0")) != 0


def _acquire(path: Path, run_dir: Path | str) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    deadline = time.monotonic() + _WAIT_FOR_HOLDER_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):  # no flock on this filesystem: run unlocked
                os.close(fd)
                log.warning("could not lock %s (%s); not guarding the run directory against a second process", path, exc.strerror)
                return None
        holder = _live_holder(path)
        if holder is not None or time.monotonic() >= deadline:
            os.close(fd)
            raise UserError(_busy_message(run_dir, holder))
        time.sleep(0.05)  # the holder has locked but not yet written its PID (or a dead one's is still there)
    text = f"pid: {os.getpid()}\nhost: {socket.gethostname()}\ncommand: {_command_line()}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8"), 0)
    return fd


def _release(fd: int | None) -> None:
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)  # emptied while still locked: a reader never sees our PID after we let go
    except OSError:
        pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _live_holder(path: Path) -> Holder | None:
    """The lock file's process if it is alive (a process on another host sharing the filesystem cannot be
    checked and is trusted: its flock is what just refused us)."""
    holder = read_holder(path)
    if holder is None or holder.pid == os.getpid():
        return None
    if holder.host and holder.host != socket.gethostname():
        return holder
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by another user
        return holder
    return holder


def _busy_message(run_dir: Path | str, holder: Holder | None) -> str:
    fix = "wait for it to finish or use another --run-dir"
    if holder is None:
        return f"{run_dir} is in use by another autointerp process; {fix}"
    where = f" on {holder.host}" if holder.host and holder.host != socket.gethostname() else ""
    command = " ".join(holder.command.split())
    if len(command) > _COMMAND_CHARS:
        command = command[: _COMMAND_CHARS - 3] + "..."
    return f"{run_dir} is in use by another autointerp process (PID {holder.pid}{where}{': ' + command if command else ''}); {fix}"


def _command_line() -> str:
    argv = list(sys.argv) or ["python"]
    first = Path(argv[0])
    if argv[0] in ("-c", "-m", ""):
        head = "python " + argv[0] if argv[0] else "python"
    elif first.name == "__main__.py":  # python -m autointerp
        head = first.parent.name
    else:
        head = first.name
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])]).replace("\n", " ")
