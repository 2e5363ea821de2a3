"""The run-directory lock, with real processes: a second process is refused with one line naming the
holder's PID, the lock is reentrant in one process, a killed holder's lock is taken over, the CLI refuses
a locked run directory before writing anything, and ``report --out elsewhere`` needs no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autointerp.errors import UserError
from autointerp.rundir.layout import RunDir
from autointerp.rundir.lock import read_holder, run_lock

ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", COLUMNS="200")

# Takes the lock on argv[1], says so, and holds it until its stdin closes.
HOLD = textwrap.dedent("""
    import sys
    from autointerp.rundir.lock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
""")

# Tries the lock on argv[1] once: prints "ok" or the error's message.
TRY = textwrap.dedent("""
    import sys
    from autointerp.errors import UserError
    from autointerp.rundir.lock import run_lock
    try:
        with run_lock(sys.argv[1]):
            print("ok")
    except UserError as exc:
        print("refused:", exc.message)
""")


def _hold(run_dir: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _release(holder: subprocess.Popen) -> None:
    holder.stdin.close()
    assert holder.wait(timeout=60) == 0


def _try(run_dir: Path) -> str:
    result = subprocess.run([sys.executable, "-c", TRY, str(run_dir)], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_second_process_is_refused_naming_the_holder_then_gets_it(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = _hold(run_dir)
    try:
        out = _try(run_dir)
        assert out.count("\n") == 1 and out.startswith("refused: "), out
        assert f"{run_dir} is in use by another autointerp process (PID {holder.pid}" in out
        assert "--run-dir" in out
        with pytest.raises(UserError, match=f"PID {holder.pid}"):  # and in this process too
            with run_lock(run_dir):
                pass
    finally:
        _release(holder)
    assert _try(run_dir) == "ok\n"
    assert RunDir(run_dir).lock.read_text() == ""  # emptied (and left in place) on release


def test_reentrant_within_one_process(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with run_lock(run_dir):
        with run_lock(run_dir / "." ):  # the same directory spelled differently
            assert read_holder(RunDir(run_dir).lock).pid == os.getpid()
            assert "refused" in _try(run_dir)
        assert f"PID {os.getpid()}" in _try(run_dir)  # the inner exit did not release it
    assert _try(run_dir) == "ok\n"


def test_disabled_and_non_zero_torchrun_ranks_do_not_lock(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = _hold(run_dir)
    try:
        with run_lock(run_dir, enabled=False):
            pass
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        with run_lock(run_dir):  # rank 1 of a torchrun job: rank 0 holds the lock for the job
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(UserError, match=f"PID {holder.pid}"):
            with run_lock(run_dir):
                pass
    finally:
        _release(holder)


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = _hold(run_dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    holder.stdin.close()
    stale = read_holder(RunDir(run_dir).lock)
    assert stale is not None and stale.pid == holder.pid  # the dead process's PID is still in the file
    with run_lock(run_dir):
        assert read_holder(RunDir(run_dir).lock).pid == os.getpid()
        out = _try(run_dir)
        assert f"PID {os.getpid()}" in out and f"PID {holder.pid}" not in out


def test_cli_refuses_a_locked_run_directory_before_writing(tiny_model_dirs, text_corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = _hold(run_dir)
    try:
        before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")}
        script = Path(sys.executable).parent / "autointerp"
        command = [str(script)] if script.is_file() else [sys.executable, "-m", "autointerp"]
        result = subprocess.run([*command, "harvest", "--model", str(tiny_model_dirs["gpt2"]), "--layer", "0", "--dataset", str(text_corpus), "--run-dir", str(run_dir)],
                                capture_output=True, text=True, env=ENV, timeout=300)
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert f"PID {holder.pid}" in lines[0] and "in use" in lines[0]
        assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")} == before
    finally:
        _release(holder)


def test_report_elsewhere_does_not_need_the_lock(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = _hold(run_dir)
    try:
        result = subprocess.run([sys.executable, "-m", "autointerp", "report", "--out", str(tmp_path / "elsewhere"), "--run-dir", str(run_dir)],
                                capture_output=True, text=True, env=ENV, timeout=300)
        assert "in use by another autointerp process" not in result.stdout + result.stderr  # may fail otherwise (no artifacts)
    finally:
        _release(holder)
