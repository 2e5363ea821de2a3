"""Stage settings that the config file maps onto, kept free of heavy imports (torch) so that reading a
config, or running `autointerp --help`, stays fast. The stage modules re-export them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autointerp.errors import UserError

LEVELS = ("token", "sequence")
POOLS = ("last", "mean")
STORAGE_DTYPE_NAMES = ("float32", "bfloat16", "float16")


@dataclass
class HarvestConfig:
    layer: int = 6
    site: str = "resid"  # resid: residual stream after block `layer`; mlp: that block's MLP output
    ctx_len: int = 128
    batch_size: int = 16
    level: str = "token"  # token: one row per token; sequence: one row per document
    pool: str = "last"  # sequence level: last real (non-special) token, or mean over real tokens
    keep_special: bool = False  # store BOS/CLS/SEP rows too (token level)
    dtype: str = "float32"  # storage dtype of the shards
    compute_dtype: str = "auto"  # auto: bf16 on CUDA, float32 on CPU
    device: str = "auto"
    shard_tokens: int = 16_384  # approximate rows per shard (token level); the last shard is held out for evaluation

    def validate(self) -> None:
        if self.level not in LEVELS:
            raise UserError(f"unknown level '{self.level}'; use one of {', '.join(LEVELS)}")
        if self.pool not in POOLS:
            raise UserError(f"unknown pool '{self.pool}'; use one of {', '.join(POOLS)}")
        if self.dtype not in STORAGE_DTYPE_NAMES:
            raise UserError(f"unknown storage dtype '{self.dtype}'; use one of {', '.join(STORAGE_DTYPE_NAMES)}")
        if self.batch_size < 1 or self.shard_tokens < 1:
            raise UserError("--batch-size and shard_tokens must be positive")


@dataclass
class ExemplarConfig:
    n_top: int = 20  # top windows by max activation (train set draws from these)
    n_quantiles: int = 10
    per_quantile: int = 4  # quantile samples over each feature's activating windows
    n_random: int = 20  # random non-activating windows (negatives)
    window_before: int = 16
    window_after: int = 4  # tokens around the max-activating token (clipped to the context)
    test_fraction: float = 0.5  # share of quantile samples held out for scoring
    seed: int = 0
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
