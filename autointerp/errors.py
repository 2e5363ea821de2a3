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
