"""Dense or sparse matching for a pair of widths, and the memory it needs: refused up front when it cannot fit.

The dense path (``correlation`` + ``matching.hungarian``) holds [d_a, d_b] matrices: the float64 accumulator and
the float32 correlations, then the Hungarian's float64 working copies, and during the null the real matrix next
to the null's. It is faster at the default widths (a few thousand latents: one dense product stream and a
dense LAPJV beat the candidate selection and the sparse solver), and out of reach at pretrained ones
(65,536 x 131,072 x ``DENSE_BYTES_PER_PAIR`` is ~1 TiB). The sparse path (``candidates`` +
``sparse_assignment``) needs O(block x d_b + (d_a + d_b) x k) plus copies of the pooled activations.

The estimates (bytes per pair, per candidate, per stored activation) are peaks measured with tracemalloc by
``benchmarks/compare.py``'s width sweep, rounded up. A plan over the budget raises a one-line ``UserError`` with
the estimate and the setting that would fit, before the correlation pass allocates anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from autointerp.errors import UserError

GIB = 1024**3
DENSE_BYTES_PER_PAIR = 40  # real float32 corr + a null's float64 accumulator and float32 corr + Hungarian copies
CANDIDATE_BYTES = 160  # per kept (feature, partner) slot: row and column lists, their union, the solver's graph
STORED_BYTES = 32  # per pooled activation (both sides): float64 paired copies and transposes, 24 measured at 65k x 131k
BLOCK_BYTES = 80  # per product entry of one block: product, ids, correlations, sort keys (times threads + 1)
BASE_BYTES = 256 * 1024**2  # interpreter, libraries, per-feature vectors


def budget_gib(setting: float) -> float:
    """The configured budget, or 80% of this machine's physical memory when 0."""
    if setting > 0:
        return float(setting)
    try:
        return 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8.0


def dense_gib(d_a: int, d_b: int) -> float:
    return (d_a * d_b * DENSE_BYTES_PER_PAIR + BASE_BYTES) / GIB


def sparse_gib(d_a: int, d_b: int, k: int, nnz: int = 0, threads: int = 2) -> float:
    from autointerp.compare.candidates import BLOCK_ENTRIES

    slots = 2 * (d_a + d_b) * k  # the real level's candidates stay alive while a null's are built
    block = min(BLOCK_ENTRIES, d_a * d_b)  # a block never holds more than every pair
    return (slots * CANDIDATE_BYTES + nnz * STORED_BYTES + (threads + 1) * block * BLOCK_BYTES + BASE_BYTES) / GIB


def _gib(x: float) -> str:
    return f"{x:.1f} GiB" if x >= 1 else f"{x:.2g} GiB"


@dataclass(frozen=True)
class MatchingPlan:
    method: str  # dense | sparse
    estimate_gib: float
    budget_gib: float


def plan_matching(cfg, d_a: int, d_b: int, nnz: int = 0) -> MatchingPlan:
    """Resolve ``cfg.matching`` for these widths (``nnz``: pooled activations of both sides, 0 when not known yet)
    and check it against ``cfg.memory_gib``; a plan that cannot fit is refused with the setting that would."""
    from autointerp.compare.correlation import cpu_threads

    budget, threads = budget_gib(cfg.memory_gib), cpu_threads()
    method = cfg.matching
    if method == "auto":
        method = "dense" if d_a * d_b <= cfg.dense_max_pairs else "sparse"
    where = f"matching {d_a:,} x {d_b:,} latents"
    sparse = sparse_gib(d_a, d_b, cfg.candidates, nnz, threads)
    if method == "dense":
        need = dense_gib(d_a, d_b)
        if need > budget:
            fix = (f'set [compare] matching = "sparse" (~{_gib(sparse)})' if sparse <= budget
                   else "no setting fits: lower [corpus] max_tokens or use a larger machine")
            raise UserError(f"{where} densely needs ~{_gib(need)}, over the {_gib(budget)} budget "
                            f"([compare] memory_gib); {fix}")
        return MatchingPlan("dense", need, budget)
    if sparse > budget:
        fits = [k for k in (16, 8, 4, 2, 1) if k < cfg.candidates and sparse_gib(d_a, d_b, k, nnz, threads) <= budget]
        fix = (f"set [compare] candidates = {fits[0]} (~{_gib(sparse_gib(d_a, d_b, fits[0], nnz, threads))})" if fits
               else "no candidates setting fits: lower [corpus] max_tokens (fewer pooled activations) or use a larger machine")
        raise UserError(f"{where} sparsely with candidates = {cfg.candidates} needs ~{_gib(sparse)}, over the "
                        f"{_gib(budget)} budget ([compare] memory_gib); {fix}")
    return MatchingPlan("sparse", sparse, budget)
