"""Synthetic superposition data with a known dictionary, to check that SAE training finds it.

Real activations have no ground truth, so "the SAE trains" can only be verified here: generate
X = codes @ dictionary with many more unit-norm features than dimensions and sparse non-negative
codes, train, and measure how many dictionary rows have a near-parallel decoder row.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from autointerp.errors import UserError


class SyntheticData(NamedTuple):
    X: Tensor  # [n_samples, d] float32
    dictionary: Tensor  # [n_features, d], unit-norm rows
    codes: Tensor  # [n_samples, n_features] sparse COO, non-negative


class Recovery(NamedTuple):
    fraction: float  # ground-truth features with some decoder row at cosine > threshold
    mean_max_cosine: float  # mean over ground-truth features of the best decoder cosine


def make_superposition_data(n_features: int = 256, d: int = 64, n_samples: int = 50_000,
                            avg_active: float = 6.0, seed: int = 0, magnitude: str = "uniform") -> SyntheticData:
    """Sample sparse codes (each feature on independently with p = avg_active / n_features).

    ``magnitude``: "uniform" draws active values from U(0.5, 1.5) (features are clearly on or off),
    "exponential" from Exp(1) (many weak activations; harder, closer to real feature statistics).
    """
    if not 0 < avg_active <= n_features:
        raise UserError(f"avg_active={avg_active} must be in (0, n_features={n_features}]")
    # Salted so that the same integer seed given to SAE init does not reproduce the dictionary itself
    # (torch.randn under manual_seed(0) would make W_dec's first rows equal the ground truth).
    g = torch.Generator().manual_seed(seed + 0x5EED_0F_5A3)
    dictionary = torch.randn(n_features, d, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    on = torch.rand(n_samples, n_features, generator=g) < avg_active / n_features
    rows, cols = on.nonzero(as_tuple=True)
    if magnitude == "uniform":
        values = 0.5 + torch.rand(len(rows), generator=g)
    elif magnitude == "exponential":
        values = torch.empty(len(rows)).exponential_(1.0, generator=g)
    else:
        raise UserError(f"unknown magnitude {magnitude!r}; use 'uniform' or 'exponential'")
    codes = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n_samples, n_features),
                                    check_invariants=True).coalesce()
    X = torch.sparse.mm(codes, dictionary)
    return SyntheticData(X, dictionary, codes)


def feature_recovery(decoder: Tensor, dictionary: Tensor, threshold: float = 0.9) -> Recovery:
    """Match each true feature to its most similar decoder row (decoder [d_sae, d], dictionary [F, d])."""
    if decoder.shape[-1] != dictionary.shape[-1]:
        raise UserError(f"decoder width {decoder.shape[-1]} != dictionary width {dictionary.shape[-1]}")
    dec = torch.nn.functional.normalize(decoder.detach().float(), dim=-1)
    dic = torch.nn.functional.normalize(dictionary.detach().float(), dim=-1)
    best = (dic @ dec.T).max(dim=1).values
    return Recovery(float((best > threshold).float().mean()), float(best.mean()))
