"""Shared plumbing for the peer trainers that benchmarks/sae_train.py runs inside the peer venv.

Protocol: the benchmark writes the pre-shuffled, already-truncated training rows to a safetensors file
(key "activations", float32 [steps * batch_size, d_in]); a peer script trains on them in order, batch by
batch, and writes ``weights.safetensors`` (W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec: the
SAELens layout, acting on raw activations as TopK(ReLU((x - b_dec) W_enc + b_enc)) W_dec + b_dec) and
``result.json`` (timing, settings, versions) into ``--out``. Only the training loop is timed: imports,
data loading and weight export are not.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def base_parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--data", required=True, help="safetensors file with 'activations' [rows, d_in] float32")
    p.add_argument("--out", required=True, help="directory for weights.safetensors and result.json")
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--d-sae", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--auxk-alpha", type=float, required=True)
    p.add_argument("--dead-tokens", type=int, required=True,
                   help="a latent is dead once it has not fired for this many tokens (autointerp's >= rule)")
    return p


def setup(args: argparse.Namespace) -> list[torch.Tensor]:
    """Threads, seed and the training batches (views of one in-memory tensor, in file order)."""
    torch.set_num_threads(args.threads)
    x = load_file(args.data)["activations"].to(torch.float32).contiguous()
    if len(x) % args.batch_size:
        raise SystemExit(f"{args.data}: {len(x)} rows is not a multiple of batch size {args.batch_size}")
    return list(x.split(args.batch_size))


class Timer:
    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def versions(*names: str) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = "not installed"
    return out


def write(out_dir: str, weights: dict[str, torch.Tensor], result: dict) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in weights.items()}, str(out / "weights.safetensors"))
    result = {**result, "torch_threads": torch.get_num_threads(), "pid": os.getpid()}
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
