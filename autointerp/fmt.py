"""Number formatting every layer shares (the report's markdown, the stages' console tables, the verdict's
sentences), so a share reads the same wherever it is printed. No imports beyond the standard library."""

from __future__ import annotations

import math


def is_missing(value) -> bool:
    """None or NaN (a value that could not be computed); anything not a number is not missing."""
    if value is None:
        return True
    try:
        return bool(math.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def pct(value, digits: int = 1, missing: str = "n/a") -> str:
    """A fraction as a percentage with ``digits`` decimals ("12.5%"); ``missing`` for None/NaN."""
    if is_missing(value):
        return missing
    return f"{100 * float(value):.{digits}f}%"
