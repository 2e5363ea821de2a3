"""``[report]``: what the markdown report and HTML pages include. Owned by the reports module; fields may grow.

Every field has a default so older config.toml files keep loading. Page counts are bounded on purpose:
an SAE has thousands of features, and a page for each would bury the few that were labelled or matched.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReportConfig:
    max_matches: int = 30  # rows of the matched-concepts table (best combined_rank first)
    max_disagreements: int = 10  # rows per disagreement table (activation-only vs label-only pairs)
    pages: bool = True  # write HTML feature pages
    plots: bool = True  # write the plots (plots/)
    # Which features get an HTML page: every labelled feature, both sides of the best `page_top_matches`
    # pairs (by combined_rank) and of every shared pair up to that cap, plus the `page_top_density` densest
    # live features per model; at most `page_max_per_model` per model.
    page_top_matches: int = 100  # feature pages for the features of the best matches
    page_top_density: int = 20  # feature pages for each model's most active features
    page_max_per_model: int = 400  # at most this many feature pages per model
    page_top_windows: int = 8  # top-activation windows shown per feature page
    page_quantile_windows: int = 4  # quantile (typical-activation) windows shown per feature page
    exemplar_chars: int = 90  # characters of context around the max token in the markdown tables

    def validate(self) -> None:
        from autointerp.errors import UserError

        for name in ("max_matches", "max_disagreements", "page_top_matches", "page_top_density", "page_max_per_model",
                     "page_top_windows", "page_quantile_windows", "exemplar_chars"):
            if getattr(self, name) < 0:
                raise UserError(f"[report] {name} must be >= 0 (got {getattr(self, name)}); fix it in the run config")
