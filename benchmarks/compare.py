"""Activation-matching cost: the streaming sparse correlation pass and the Hungarian assignment.

Synthetic pooled activations with realistic sparsity: --units aligned units (default 1M), --features per
model (default 4,096 x 4,096), --active features per unit per model (default 48), feature frequencies
Zipf-like (a few dense features, a long tail of rare ones), half of each unit's B features tracking A's
(so the matrix has structure to match, as in real data). Both models are CSR matrices, as the compare
stage holds them after max-pooling.

Measured, one phase at a time (time; peak traced memory of numpy/scipy allocations incl. the inputs):
1. autointerp's correlation pass (``autointerp.compare.correlation.correlate``) over all units;
2. the naive dense approach, ``numpy.corrcoef`` on the stacked [units, d_a + d_b] matrix. At 1M units that
   matrix alone is 1M x 8,192 x 8 B = 64 GiB, which does not fit in 24 GiB, so it runs on a random
   subsample of --naive-units units and its time is scaled linearly in units (corrcoef is one GEMM over
   the units: cost ~ units x (d_a + d_b)^2). The streaming pass runs on the same subsample too, and the two
   results are compared (max |difference|) as a correctness check;
3. ``scipy.optimize.linear_sum_assignment`` (maximise) on the 4,096 x 4,096 correlation matrix.

--large adds the 16,384 x 16,384 check: the streaming pass (over --large-units units; its accumulator
and output do not grow with units) and the Hungarian at that size, with their peak memory.

--wide adds the width sweep of ``benchmarks/wide_matching.py``: the compare stage's per-level matching (correlation,
assignment, derangement nulls) on the dense path and on the sparse one (top-k candidate partners + sparse
assignment) at 2k x 4k, 4k x 8k (both, their shared pairs compared), 16k x 32k and 65k x 131k (sparse: the
dense matrices would need ~1 TiB), --wide-units units at --wide-active features per unit; --wide-only runs
only the sweep (its RESULT then holds only the wide_ keys).

    python benchmarks/compare.py                    # default, ~5-10 min on 2 shared cores
    python benchmarks/compare.py --large            # + 16k x 16k (several more minutes)
    python benchmarks/compare.py --units 200000     # quicker
    python benchmarks/compare.py --wide             # + the width sweep up to 65,536 x 131,072 (~15-30 min)

With CUDA present, 1. is also run as the GPU pass (blocked dense products, ``method="dense"``) at tf32,
bf16 and fp32, each compared with the CPU result; --threads sets the CPU pass's threads (default: every core).

Ends with: RESULT corr_s=... naive_s=... speedup=... hungarian_4096_s=... peak_gib=... [gpu_corr_s=...
gpu_speedup=... gpu_max_diff=...] [wide_seconds=... wide_peak_gib=...] (naive_s is the scaled full-size estimate;
peak_gib is the correlation pass's peak incl. its inputs; the gpu_ keys only when CUDA exists: tf32 GPU seconds,
CPU / GPU, max |diff|; the wide_ keys with --wide: the 65k x 131k sparse matching's seconds and its process's
max RSS, inputs included).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AUTOINTERP_PROGRESS", "0")

import torch  # noqa: E402

from autointerp.compare.correlation import correlate, cpu_threads
from autointerp.compare.matching import hungarian

import wide_matching  # noqa: E402  (benchmarks/, on the path as this script's directory)

GIB = 1024**3


def log(msg: str) -> None:
    print(msg, flush=True)


def zipf_probs(n: int, rng: np.random.Generator, exponent: float = 1.0) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(p / p.sum())


def make_pair(units: int, d_a: int, d_b: int, active: int, rng: np.random.Generator, block: int = 131_072) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Two CSR [units, d] matrices with ~``active`` non-zeros per row; B's first half of slots follows A's."""
    pa, pb = zipf_probs(d_a, rng), zipf_probs(d_b, rng)
    shared_map = rng.permutation(d_b)[:d_a] if d_b >= d_a else rng.integers(0, d_b, d_a)
    parts_a, parts_b = [], []
    for start in range(0, units, block):
        n = min(block, units - start)
        ia = rng.choice(d_a, size=(n, active), p=pa)
        ib = np.concatenate([shared_map[ia[:, : active // 2]], rng.choice(d_b, size=(n, active - active // 2), p=pb)], axis=1)
        va = rng.gamma(2.0, 1.0, size=(n, active)).astype(np.float32)
        vb = (va * rng.uniform(0.5, 1.5, size=(n, active))).astype(np.float32)
        vb[:, active // 2 :] = rng.gamma(2.0, 1.0, size=(n, active - active // 2))
        indptr = np.arange(0, n * active + 1, active, dtype=np.int64)
        for parts, idx, val, d in ((parts_a, ia, va, d_a), (parts_b, ib, vb, d_b)):
            m = sp.csr_matrix((val.ravel(), idx.ravel().astype(np.int32), indptr), shape=(n, d))
            m.sum_duplicates()  # a Zipf head feature drawn twice in a row counts once (summed)
            parts.append(m)
    return sp.vstack(parts_a, format="csr"), sp.vstack(parts_b, format="csr")


def measured(fn, *args, **kwargs):
    """(result, seconds, peak traced GiB incl. everything alive) for one phase."""
    tracemalloc.reset_peak()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t
    return out, seconds, tracemalloc.get_traced_memory()[1] / GIB


def naive_corrcoef(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    stacked = np.hstack([a.toarray(), b.toarray()])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(stacked, rowvar=False)[: a.shape[1], a.shape[1] :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=4096)
    ap.add_argument("--active", type=int, default=48)
    ap.add_argument("--naive-units", type=int, default=16_384)
    ap.add_argument("--large", action="store_true", help="also check 16,384 x 16,384")
    ap.add_argument("--large-units", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of the sparse pass (default: every core)")
    ap.add_argument("--wide", action="store_true", help="also run the width sweep (benchmarks/wide_matching.py)")
    ap.add_argument("--wide-only", action="store_true", help="only the width sweep")
    wide_matching.add_arguments(ap, seed=False)
    args = ap.parse_args()
    if args.wide_only:
        wide = wide_matching.sweep(args, log=log)
        log(f"RESULT wide_seconds={wide['wide_seconds']:.1f} wide_peak_gib={wide['wide_peak_gib']:.2f}" if wide else "RESULT wide_failed=1")
        return
    rng = np.random.default_rng(args.seed)
    tracemalloc.start()
    d = args.features

    t = time.perf_counter()
    a, b = make_pair(args.units, d, d, args.active, rng)
    log(f"data: {args.units:,} units x {d:,} + {d:,} features, nnz/unit A {a.nnz / args.units:.1f} B {b.nnz / args.units:.1f} "
        f"({(a.data.nbytes + a.indices.nbytes + b.data.nbytes + b.indices.nbytes) / GIB:.2f} GiB CSR), built in {time.perf_counter() - t:.0f}s")
    rows = np.arange(args.units)

    res, corr_s, corr_peak = measured(correlate, a, b, rows, rows, method="sparse", threads=args.threads, progress=False)
    live = (~res.dead_a).sum(), (~res.dead_b).sum()
    log(f"streaming correlation ({args.threads or cpu_threads()} threads): {corr_s:.1f}s, peak {corr_peak:.2f} GiB (inputs included), "
        f"live features {live[0]} / {live[1]}")
    gpu_keys = ""
    if torch.cuda.is_available():
        correlate(a[:4096], b[:4096], rows[:4096], rows[:4096], method="dense", device="cuda", progress=False)  # warm-up
        for precision in ("tf32", "bf16", "fp32"):
            t = time.perf_counter()
            gres = correlate(a, b, rows, rows, method="dense", device="cuda", precision=precision, progress=False)
            torch.cuda.synchronize()
            g_s = time.perf_counter() - t
            ok = np.isfinite(res.corr)
            g_diff = float(np.abs(gres.corr[ok] - res.corr[ok]).max())
            log(f"GPU dense correlation ({torch.cuda.get_device_name(0)}, {precision}): {g_s:.2f}s = {corr_s / g_s:.1f}x the CPU pass; max |diff| {g_diff:.1e}")
            if precision == "tf32":
                gpu_keys = f" gpu_corr_s={g_s:.2f} gpu_speedup={corr_s / g_s:.1f} gpu_max_diff={g_diff:.1e}"
            del gres
    else:
        log("no CUDA: GPU pass not measured")

    sub = np.sort(rng.choice(args.units, size=min(args.naive_units, args.units), replace=False))
    a_sub, b_sub = a[sub], b[sub]
    naive, naive_sub_s, naive_peak = measured(naive_corrcoef, a_sub, b_sub)
    ours_sub, ours_sub_s, _ = measured(correlate, a_sub, b_sub, np.arange(len(sub)), np.arange(len(sub)), progress=False)
    both = np.isfinite(naive) & np.isfinite(ours_sub.corr)
    diff = float(np.abs(naive[both] - ours_sub.corr[both]).max())
    scale = args.units / len(sub)
    naive_s = naive_sub_s * scale
    dense_gib = args.units * 2 * d * 8 / GIB
    log(f"naive np.corrcoef on a {len(sub):,}-unit subsample: {naive_sub_s:.1f}s (peak {naive_peak:.2f} GiB); ours on the same "
        f"subsample {ours_sub_s:.2f}s; max |diff| {diff:.1e}")
    log(f"naive at {args.units:,} units: needs {dense_gib:.0f} GiB for the stacked float64 matrix "
        f"({'does not fit' if dense_gib > 24 else 'fits'} in 24 GiB); time scaled linearly: {naive_s:.0f}s")
    del naive, ours_sub, a_sub, b_sub

    assign, hung_s, hung_peak = measured(hungarian, res.corr, ~res.dead_a, ~res.dead_b)
    log(f"Hungarian {live[0]} x {live[1]}: {hung_s:.1f}s, peak {hung_peak:.2f} GiB; mean matched corr {assign.values.mean():.3f}")
    del a, b, res

    if args.large:
        big = 16_384
        la, lb = make_pair(args.large_units, big, big, args.active, rng)
        lres, l_s, l_peak = measured(correlate, la, lb, np.arange(args.large_units), np.arange(args.large_units), progress=False)
        log(f"16k streaming correlation over {args.large_units:,} units: {l_s:.1f}s, peak {l_peak:.2f} GiB "
            f"(accumulator {big * big * 8 / GIB:.0f} GiB float64 + output {big * big * 4 / GIB:.0f} GiB float32)")
        del la, lb
        _lassign, lh_s, lh_peak = measured(hungarian, lres.corr, ~lres.dead_a, ~lres.dead_b)
        log(f"16k Hungarian {(~lres.dead_a).sum()} x {(~lres.dead_b).sum()}: {lh_s:.1f}s, peak {lh_peak:.2f} GiB")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    log(f"process max RSS {rss:.2f} GiB (includes the naive subsample's dense matrices)")
    wide_keys = ""
    if args.wide:
        wide = wide_matching.sweep(args, log=log)
        wide_keys = f" wide_seconds={wide['wide_seconds']:.1f} wide_peak_gib={wide['wide_peak_gib']:.2f}" if wide else " wide_failed=1"
    log(f"RESULT corr_s={corr_s:.1f} naive_s={naive_s:.0f} speedup={naive_s / corr_s:.1f} "
        f"hungarian_4096_s={hung_s:.1f} peak_gib={corr_peak:.2f}{gpu_keys}{wide_keys}")


if __name__ == "__main__":
    main()
