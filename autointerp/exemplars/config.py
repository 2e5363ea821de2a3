"""``[exemplars]``: which windows are mined per feature. Free of heavy imports (read with the config)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autointerp.errors import UserError


@dataclass
class ExemplarConfig:
    n_top: int = 20  # top windows by max activation (train set draws from these)
    n_quantiles: int = 10  # activation-strength bins the quantile windows are drawn from
    per_quantile: int = 4  # quantile samples over each feature's activating windows
    n_random: int = 20  # random non-activating windows (negatives)
    window_before: int = 16  # tokens kept before each window's max token
    window_after: int = 4  # tokens around the max-activating token (clipped to the context)
    test_fraction: float = 0.5  # share of quantile samples held out for scoring
    seed: int = 0  # seed of the random windows and the train/test split
    chunk_rows: int = 8192  # encoding chunk
    reservoir: int = 256  # per-feature reservoir of activating windows for quantile sampling
    negative_pool: int = 1024  # random contexts tracked for negatives (memory: d_sae x pool bits)

    def validate(self) -> None:
        ints = ("n_top", "n_quantiles", "per_quantile", "n_random", "window_before", "window_after")
        for name in ints:
            if getattr(self, name) < 0:
                raise UserError(f"exemplar setting {name}={getattr(self, name)} must be >= 0; fix the exemplars config")
        for name in ("chunk_rows", "reservoir", "negative_pool"):
            if getattr(self, name) < 1:
                raise UserError(f"exemplar setting {name}={getattr(self, name)} must be >= 1; fix the exemplars config")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise UserError(f"exemplar test_fraction={self.test_fraction} must be in [0, 1]; fix the exemplars config")

    @property
    def n_test_target(self) -> int:
        return _round_half_up(self.test_fraction * self.n_quantiles * self.per_quantile)



def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)
