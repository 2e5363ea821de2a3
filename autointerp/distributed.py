"""Multi-process data parallelism for SAE training (``torchrun --nproc-per-node N autointerp train``) and
harvesting (``torchrun --nproc-per-node N -m autointerp harvest``: the ranks share the shards).

Every rank reads the same deterministic global batch stream and trains on its slice
``batch[rank::world]``; losses use the global batch's FVU denominator, so summing gradients across
ranks reproduces the single-process gradient (TopK latents are per token). gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


BARRIER_TIMEOUT_MIN = 180


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> None:
    """Join the process group torchrun describes (idempotent); pins each rank to its GPU when there are GPUs."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # Ranks wait at barriers while rank 0 alone chooses a corpus (a hub dataset can take long) or writes
    # an SAE: far longer than torch's default 10-30 minutes.
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=BARRIER_TIMEOUT_MIN))


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def device_for_rank(requested: str) -> str:
    if requested == "auto" and torch.cuda.is_available() and world_size() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return requested


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_gradients(module: torch.nn.Module) -> None:
    """All-reduce (sum) every gradient in one flat buffer: one collective per step."""
    if world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
