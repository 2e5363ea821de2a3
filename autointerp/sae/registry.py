"""The architectures by name (``architecture`` in ``[sae]`` and in cfg.json), and where their facts are read.

Adding an architecture: a module with a ``SparseAutoencoder`` subclass (its ``_select`` and its facts as class
attributes: ``uses_k``, ``default_l1``, ``trainable``, ``saelens_name``, ...), its class in ``BUILT_IN`` below,
and its name in ``autointerp.sae.config.ARCHITECTURE_USES_K`` (checked here). Code elsewhere asks the class
(``architecture(name).uses_k``), never compares names. ``register`` adds one defined outside the package.
"""

from __future__ import annotations

import torch

from autointerp.errors import UserError
from autointerp.sae.base import SparseAutoencoder
from autointerp.sae.config import ARCHITECTURE_USES_K, SAEConfig
from autointerp.sae.jumprelu import JumpReLUSAE
from autointerp.sae.relu import ReLUSAE
from autointerp.sae.topk import BatchTopKSAE, TopKSAE

BUILT_IN: tuple[type[SparseAutoencoder], ...] = (TopKSAE, BatchTopKSAE, ReLUSAE, JumpReLUSAE)
ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {cls.architecture: cls for cls in BUILT_IN}
assert {n: c.uses_k for n, c in ARCHITECTURES.items()} == ARCHITECTURE_USES_K, \
    "sae.config.ARCHITECTURE_USES_K must list every built-in architecture with its uses_k"


def register(cls: type[SparseAutoencoder]) -> type[SparseAutoencoder]:
    """Make ``cls`` an architecture under ``cls.architecture``: configs accept the name from now on, and
    ``create_sae`` / ``load_sae`` build it (usable as a class decorator)."""
    if not cls.architecture or not issubclass(cls, SparseAutoencoder):
        raise ValueError(f"{cls!r} must be a SparseAutoencoder subclass with a non-empty `architecture` name")
    ARCHITECTURES[cls.architecture] = cls
    ARCHITECTURE_USES_K[cls.architecture] = cls.uses_k
    return cls


def architecture(name: str) -> type[SparseAutoencoder]:
    """The class of ``name``; an unknown name (a cfg.json from elsewhere) is a one-line error."""
    if name not in ARCHITECTURES:
        raise UserError(f"SAE architecture {name!r} is unknown; autointerp runs {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def trainable_names() -> list[str]:
    return [name for name, cls in ARCHITECTURES.items() if cls.trainable]


def create_sae(cfg: SAEConfig, seed: int | None = None) -> SparseAutoencoder:
    """Instantiate ``cfg.architecture``; ``seed`` makes the random decoder init reproducible."""
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return architecture(cfg.architecture)(cfg)
