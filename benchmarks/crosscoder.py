"""Crosscoder training throughput on word units vs the single-model SAE trainer, on the same data, in one run.

Both models' harvests in a run directory are pooled onto shared word units (crosscode.data.paired_units,
mean over each unit's tokens). Then, on the same first ``--units`` training units, in the same order,
with the same batch size, width, k and step count:

* crosscoder: ``train_sae`` on a CrossCoder over [x_A, x_B] (d_A + d_B inputs, one decoder per model);
* single-model: ``train_sae`` on a BatchTopK SAE over model A's rows alone (d_A inputs), the trainer the
  train stage uses (same code path: fused Adam, sparse backward on CPU, AuxK).

Wall time counts only ``train_sae`` (no pooling). Rounds are interleaved (crosscoder, SAE, crosscoder, ...)
and each trainer's best round is kept, because the machine is shared. ``ratio`` = crosscoder units/s over
SAE rows/s: what training one joint dictionary costs per row against training one model's SAE (the
crosscoder's rows are d_A + d_B wide, so ~(d_A + d_B) / d_A times the encoder work is expected).

    python benchmarks/crosscoder.py --run-dir runs/default          # the embedded pair's harvests

Ends with:  RESULT crosscoder_units_s=... sae_tok_s=... ratio=...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autointerp.compare.inputs import check_same_corpus  # noqa: E402
from autointerp.config import load_config  # noqa: E402
from autointerp.crosscode.data import common_scales, paired_units  # noqa: E402
from autointerp.crosscode.model import CrossCoder  # noqa: E402
from autointerp.crosscode.stage import pairs_for  # noqa: E402
from autointerp.rundir.layout import RunDir  # noqa: E402
from autointerp.sae.config import SAEConfig, TrainConfig  # noqa: E402
from autointerp.sae.topk import BatchTopKSAE  # noqa: E402
from autointerp.sae.trainer import train_sae  # noqa: E402


def _train(module, rows: torch.Tensor, batch_size: int, device: str) -> float:
    cfg = TrainConfig(batch_size=batch_size, total_tokens=len(rows) - len(rows) % batch_size, ce_contexts=0, device=device, seed=0)
    start = time.perf_counter()
    train_sae(module, iter([rows]), cfg)
    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    ap.add_argument("--units", type=int, default=16384, help="training rows (word units) per round")
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    cfg = load_config(run.config if run.config.is_file() else None)
    cfg.run_dir = str(args.run_dir)
    a, b, _ = pairs_for(cfg)[0]
    t0 = time.perf_counter()
    data = paired_units(a, b, check_same_corpus(args.run_dir, a, b), 0.1, 0, progress=False)
    pool_s = time.perf_counter() - t0
    n = min(args.units, data.n)
    rows = np.arange(n)
    scales = common_scales(data.x_a[rows], data.x_b[rows])
    x_cc = data.concat(rows)
    x_a = torch.from_numpy(data.x_a[rows] * scales[0])  # the SAE sees A at the same scale the crosscoder does
    print(f"pooled {data.n:,} units of {a.slug} (d={data.x_a.shape[1]}) x {b.slug} (d={data.x_b.shape[1]}) in {pool_s:.1f} s; "
          f"{n:,} training rows, d_sae {args.d_sae}, k {args.k}, batch {args.batch_size}, {args.threads} threads, {args.device}", flush=True)
    best = {"crosscoder": float("inf"), "sae": float("inf")}
    for r in range(args.rounds):
        torch.manual_seed(r)
        cc = CrossCoder(data.x_a.shape[1], data.x_b.shape[1], args.d_sae, args.k, scales)
        best["crosscoder"] = min(best["crosscoder"], _train(cc, x_cc, args.batch_size, args.device))
        torch.manual_seed(r)
        sae = BatchTopKSAE(SAEConfig(architecture="batchtopk", d_in=data.x_a.shape[1], d_sae=args.d_sae, k=args.k))
        best["sae"] = min(best["sae"], _train(sae, x_a, args.batch_size, args.device))
        print(f"round {r}: crosscoder {best['crosscoder']:.1f} s, sae {best['sae']:.1f} s (best so far)", flush=True)
    used = n - n % args.batch_size
    cc_s, sae_s = used / best["crosscoder"], used / best["sae"]
    print(f"RESULT crosscoder_units_s={cc_s:.0f} sae_tok_s={sae_s:.0f} ratio={cc_s / sae_s:.3f}")


if __name__ == "__main__":
    main()
