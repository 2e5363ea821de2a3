"""Width sweep of activation matching: the dense path (matrix + Hungarian) against the sparse one (top-k candidate
partners + sparse assignment) at growing dictionary widths, up to Llama Scope's 65,536 x 131,072.

Each width runs in its own process (so its peak RSS is its own) through the compare stage's real per-level
function (``autointerp.compare.activation._level_result``: correlation, rare features, assignment, document
derangement nulls) on synthetic pooled codes from ``benchmarks/compare.py``'s generator: --wide-units word units
in documents of --doc-units, --wide-active features per unit per model (realistic for Gemma Scope / Llama Scope
pooled onto words: L0 50-90 per token), Zipf-like frequencies, half of B's slots tracking A's. Where both paths
fit (dense up to --wide-dense-max pairs) both run and their shared pairs are compared: identical above the null,
differences only among below-null pairs (counted).

Measured per width and path: seconds (wall, and CPU summed over the threads: on a shared machine the wall time
says as much about the neighbours), tracemalloc peak of the matching (numpy/scipy allocations beyond the
inputs), the process's max RSS, and ``compare.matching_plan``'s estimate. Used by ``benchmarks/compare.py --wide``;
on its own:

    python benchmarks/wide_matching.py                       # the default sweep (~10-15 min on 2 shared cores)
    python benchmarks/wide_matching.py --widths 4096x8192    # one width
    python benchmarks/wide_matching.py --real-run runs/default  # dense vs sparse on a finished run's activations

Ends with: RESULT wide_seconds=... wide_peak_gib=... (the widest width's sparse seconds and max RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("AUTOINTERP_PROGRESS", "0")

GIB = 1024**3
WIDTHS = "2048x4096,4096x8192,16384x32768,65536x131072"


def add_arguments(ap: argparse.ArgumentParser, seed: bool = True) -> None:
    ap.add_argument("--widths", default=WIDTHS, help="comma-separated d_a x d_b")
    ap.add_argument("--wide-units", type=int, default=400_000, help="aligned word units (a 500k-token corpus has ~400k)")
    ap.add_argument("--wide-active", type=int, default=64, help="active features per unit per model")
    ap.add_argument("--doc-units", type=int, default=400, help="units per document (the nulls derange documents)")
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--wide-dense-max", type=int, default=4096 * 8192, help="run the dense path too up to this many pairs")
    if seed:
        ap.add_argument("--seed", type=int, default=0)


def agreement(dense, sparse) -> dict:
    """Shared pairs (above each path's own null) of two LevelResults, and the matched pairs they differ on."""
    pairs = {p: dict(zip(zip(r.assignment.rows.tolist(), r.assignment.cols.tolist()), r.assignment.values.tolist()))
             for p, r in (("dense", dense), ("sparse", sparse))}
    thresholds = {"dense": dense.null.threshold, "sparse": sparse.null.threshold}
    shared = {p: {q for q, v in pairs[p].items() if v > thresholds[p]} for p in pairs}
    differ = set(pairs["dense"]) ^ set(pairs["sparse"])
    top = max((pairs["dense"].get(q, pairs["sparse"].get(q)) for q in differ), default=None)
    return {"shared_dense": len(shared["dense"]), "shared_sparse": len(shared["sparse"]),
            "shared_identical": shared["dense"] == shared["sparse"],
            "shared_only_dense": len(shared["dense"] - shared["sparse"]), "shared_only_sparse": len(shared["sparse"] - shared["dense"]),
            "pairs_differ": len(differ), "pairs_differ_above_null": sum(pairs["dense"].get(q, pairs["sparse"].get(q)) > min(thresholds.values())
                                                                        for q in differ),
            "max_corr_among_differ": top, "null_dense": thresholds["dense"], "null_sparse": thresholds["sparse"],
            "pairs_dense": len(pairs["dense"]), "pairs_sparse": len(pairs["sparse"])}


def real_run(run_dir: str, candidates: int, log=print) -> None:
    """Both paths on a finished run's real pooled activations (read only: nothing is written into the run)."""
    import dataclasses

    from autointerp.compare.activation import _level_result
    from autointerp.compare.encode import pool_harvest
    from autointerp.compare.inputs import check_same_corpus, model_inputs
    from autointerp.compare.units import WordIndex
    from autointerp.config import load_config
    from autointerp.sae.saelens import load_sae

    cfg = load_config(Path(run_dir) / "config.toml")
    cfg.run_dir = run_dir
    a, b = (model_inputs(cfg.run_path, e) for e in cfg.models[:2])
    docs = check_same_corpus(cfg.run_path, a, b)
    words = WordIndex.build(docs)
    index = {d.doc_id: i for i, d in enumerate(docs)}
    pooled = {m.slug: pool_harvest(load_sae(m.sae_dir), m.harvest_dir, m.manifest, index, words, cfg.compare.chunk_rows, False, m.slug)
              for m in (a, b)}
    for level in ("word", "document"):
        offsets = words.doc_offsets if level == "word" else np.arange(len(docs) + 1, dtype=np.int64)
        res = {}
        for path in ("dense", "sparse"):
            t = time.perf_counter()
            res[path] = _level_result(level, pooled[a.slug][level], pooled[b.slug][level], offsets,
                                      dataclasses.replace(cfg.compare, matching=path, candidates=candidates), progress=False)
            log(f"real run {run_dir} ({a.slug} {res[path].corr.shape[0]:,} x {b.slug} {res[path].corr.shape[1]:,} latents), {level} level, "
                f"{path}: {time.perf_counter() - t:.1f}s, " + ", ".join(f"{k}={v}" for k, v in res[path].summary().items()
                                                                      if k in ("n_units", "n_pairs", "n_shared", "null_threshold", "n_unmatched_a",
                                                                               "n_unmatched_b", "n_no_candidate_a", "n_no_candidate_b", "null_unmatched")))
        log(f"real run {run_dir}, {level} level agreement: {json.dumps(agreement(res['dense'], res['sparse']))}")


def one(d_a: int, d_b: int, args) -> dict:
    """Both paths (where dense is run) at one width, in this process."""
    from compare import make_pair

    from autointerp.compare.activation import _level_result
    from autointerp.compare.config import CompareConfig
    from autointerp.compare.encode import PooledActivations
    from autointerp.compare.matching_plan import dense_gib, sparse_gib

    t = time.perf_counter()
    a, b = make_pair(args.wide_units, d_a, d_b, args.wide_active, np.random.default_rng(args.seed))
    built = time.perf_counter() - t
    covered = np.ones(args.wide_units, bool)
    offsets = np.r_[np.arange(0, args.wide_units, args.doc_units), args.wide_units].astype(np.int64)
    out = {"d_a": d_a, "d_b": d_b, "units": args.wide_units, "nnz_per_unit": round((a.nnz + b.nnz) / 2 / args.wide_units, 1),
           "built_s": round(built, 1), "paths": {}}
    paths = ["dense", "sparse"] if d_a * d_b <= args.wide_dense_max else ["sparse"]
    results = {}
    tracemalloc.start()
    for path in paths:
        cfg = CompareConfig(matching=path, candidates=args.candidates)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        t, cpu = time.perf_counter(), time.process_time()
        r = _level_result("word", PooledActivations(a, covered), PooledActivations(b, covered), offsets, cfg, progress=False)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        peak = (tracemalloc.get_traced_memory()[1] - base) / GIB
        est = dense_gib(d_a, d_b) if path == "dense" else sparse_gib(d_a, d_b, args.candidates, a.nnz + b.nnz)
        s = r.summary()
        out["paths"][path] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "traced_peak_gib": round(peak, 2), "estimate_gib": round(est, 2),
                              **{k: s.get(k) for k in ("n_pairs", "n_shared", "null_threshold", "null_samples", "null_unmatched",
                                                       "n_unmatched_a", "n_unmatched_b", "n_no_candidate_a", "n_no_candidate_b",
                                                       "n_candidate_pairs")}}
        results[path] = r
        del r
    if len(results) == 2:
        out["agreement"] = agreement(results["dense"], results["sparse"])
    out["max_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)
    return out


def sweep(args, log=print) -> dict:
    """Each width in a fresh process; returns the widest width's sparse seconds and max RSS."""
    rows = []
    for width in args.widths.split(","):
        d_a, d_b = (int(x) for x in width.lower().split("x"))
        cmd = [sys.executable, __file__, "--one", f"{d_a}x{d_b}", "--wide-units", str(args.wide_units), "--wide-active", str(args.wide_active),
               "--doc-units", str(args.doc_units), "--candidates", str(args.candidates), "--wide-dense-max", str(args.wide_dense_max),
               "--seed", str(args.seed)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("WIDE ")), None)
        if done.returncode or line is None:
            log(f"width {d_a} x {d_b}: failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:] }")
            continue
        row = json.loads(line[5:])
        rows.append(row)
        for path, p in row["paths"].items():
            log(f"width {d_a:,} x {d_b:,} ({row['units']:,} units, {row['nnz_per_unit']} active/unit) {path:6s}: {p['seconds']:.1f}s "
                f"({p.get('cpu_seconds', float('nan')):.0f}s CPU over the threads), "
                f"matching peak {p['traced_peak_gib']:.2f} GiB traced (estimate {p['estimate_gib']:.2f}); pairs {p['n_pairs']:,}, "
                f"shared {p['n_shared']:,} above null {p['null_threshold']:.3f}; unmatched A {p['n_unmatched_a']:,} B {p['n_unmatched_b']:,}"
                + (f", no candidate A {p['n_no_candidate_a']:,} B {p['n_no_candidate_b']:,}; null unmatched {p['null_unmatched']:,}"
                   if path == "sparse" else ""))
        log(f"width {d_a:,} x {d_b:,}: process max RSS {row['max_rss_gib']:.2f} GiB (inputs and both paths included)")
        if "agreement" in row:
            g = row["agreement"]
            log(f"width {d_a:,} x {d_b:,} agreement: shared dense {g['shared_dense']:,} / sparse {g['shared_sparse']:,}, identical "
                f"{g['shared_identical']} (only dense {g['shared_only_dense']}, only sparse {g['shared_only_sparse']}); "
                f"{g['pairs_differ']:,} matched pairs differ ({g['pairs_differ_above_null']} above the null), max corr among them "
                f"{g['max_corr_among_differ']}")
    widest = max(rows, key=lambda r: r["d_a"] * r["d_b"]) if rows else None
    if widest is None:
        return {}
    return {"wide_seconds": widest["paths"]["sparse"]["seconds"], "wide_peak_gib": widest["max_rss_gib"],
            "wide_width": f"{widest['d_a']}x{widest['d_b']}", "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--real-run", default=None, help="instead: both paths on this finished run's real activations (read only)")
    args = ap.parse_args()
    if args.real_run:
        real_run(args.real_run, args.candidates, log=lambda m: print(m, flush=True))
        return
    if args.one:
        d_a, d_b = (int(x) for x in args.one.split("x"))
        print("WIDE " + json.dumps(one(d_a, d_b, args), default=float), flush=True)
        return
    res = sweep(args, log=lambda m: print(m, flush=True))
    if res:
        print(f"RESULT wide_seconds={res['wide_seconds']:.1f} wide_peak_gib={res['wide_peak_gib']:.2f} (width {res['wide_width']})", flush=True)


if __name__ == "__main__":
    main()
