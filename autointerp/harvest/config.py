"""``[harvest]``: where and how activations are read. Kept free of heavy imports (torch) so that reading a
config, or running `autointerp --help`, stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from autointerp.errors import UserError

SITES = ("resid", "mlp")  # autointerp.models.load.SITES
LEVELS = ("token", "sequence")
POOLS = ("last", "mean")
STORAGE_DTYPE_NAMES = ("float32", "bfloat16", "float16")


@dataclass
class HarvestConfig:
    layer: int = 6  # residual stream after block L (negative counts from the end)
    site: str = "resid"  # resid: residual stream after block `layer`; mlp: that block's MLP output
    ctx_len: int = 128  # tokens per context (special tokens included)
    batch_size: int = 16  # contexts per forward pass
    level: str = "token"  # token: one row per token; sequence: one row per document
    pool: str = "last"  # sequence level: last real (non-special) token, or mean over real tokens
    keep_special: bool = False  # store BOS/CLS/SEP rows too (token level)
    dtype: str = "float32"  # storage dtype of the shards
    compute_dtype: str = "auto"  # auto: bf16 on CUDA, float32 on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # "auto": load a model too large for one GPU spread over every visible GPU (and CPU) by accelerate's
    # device map (the activations are the same); "" loads it whole on `device`. Not with torchrun ranks.
    device_map: str = ""  # auto: spread a model too large for one GPU over all GPUs (accelerate)
    shard_tokens: int = 16_384  # approximate rows per shard (token level); the last shard is held out for evaluation

    def validate(self) -> None:
        for name, allowed in (("site", SITES), ("level", LEVELS), ("pool", POOLS), ("dtype", STORAGE_DTYPE_NAMES)):
            if getattr(self, name) not in allowed:
                raise UserError(f"[harvest] {name} = '{getattr(self, name)}' is unknown; use one of {', '.join(allowed)}")
        if self.device_map not in ("", "auto"):
            raise UserError(f"[harvest] device_map = '{self.device_map}' is unknown; use \"auto\" (spread over the GPUs) or \"\" (one device)")
        for name in ("ctx_len", "batch_size", "shard_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"[harvest] {name} = {getattr(self, name)} must be positive (--{name.replace('_', '-')})")
