"""User-facing errors.

Anything the user can fix (bad flag, missing file, offline hub, ...) is raised as ``UserError``; the
CLI prints its message as one line and exits non-zero without a traceback. Internal bugs keep their
tracebacks.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment; the message names the problem and the fix."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class DamagedArtifact(UserError, ValueError):
    """A run artifact exists but cannot be read (truncated, 0 bytes, not JSON / parquet, a column missing).

    One message for every reader of every artifact (``autointerp.io``: JSON, parquet, safetensors, TOML, .npz): the path,
    what is wrong, and the fix. A ValueError too, so readers that treat a damaged optional file as absent
    (caches, records) keep doing so."""

    def __init__(self, path, problem: str, fix: str | None = None):
        problem = " ".join(str(problem).split())  # one line, whatever the underlying library printed
        super().__init__(f"{path} is damaged ({problem}); {fix or 're-run the stage that writes it with --overwrite, or delete it'}")
        self.path = path
