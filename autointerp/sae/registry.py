"""The architectures by name (``architecture`` in ``[sae]`` and in cfg.json)."""

from __future__ import annotations

import torch

from autointerp.sae.base import SparseAutoencoder
from autointerp.sae.config import ARCHITECTURE_NAMES, SAEConfig
from autointerp.sae.jumprelu import JumpReLUSAE
from autointerp.sae.relu import ReLUSAE
from autointerp.sae.topk import BatchTopKSAE, TopKSAE

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {cls.architecture: cls for cls in (TopKSAE, BatchTopKSAE, ReLUSAE, JumpReLUSAE)}
assert set(ARCHITECTURES) == set(ARCHITECTURE_NAMES), "sae.config.ARCHITECTURE_NAMES must list every registered architecture"


def create_sae(cfg: SAEConfig, seed: int | None = None) -> SparseAutoencoder:
    """Instantiate ``cfg.architecture``; ``seed`` makes the random decoder init reproducible."""
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return ARCHITECTURES[cfg.architecture](cfg)
