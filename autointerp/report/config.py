"""``[report]``: what the markdown report and HTML pages include. Owned by the reports module; fields may grow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReportConfig:
    max_matches: int = 30  # rows of the matched-concepts table
    pages: bool = True  # write HTML feature pages
    plots: bool = True
