"""Stream activation shards into shuffled training batches with bounded memory.

Harvested shards are written in corpus order, so consecutive rows are neighbouring tokens of the
same document; training on them unshuffled gives highly correlated batches. Rows go through a
buffer of ``buffer_rows``: whenever it is full it is permuted and half of it is emitted, so a row
can mix with rows from up to ~buffer_rows later. Shard order and permutations come from one seeded
generator, so the stream is a pure function of (shards, batch_size, buffer_rows, seed) - which is
what lets the trainer resume by skipping rows.

Held-out convention: ``held_out_split`` sorts the shards and reserves the last one(s) for evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from autointerp.errors import UserError
from autointerp.io import open_safetensors



_FIX = "delete it and re-run the harvest (or harvest with --overwrite)"


def shard_shape(path: str | Path, key: str = "activations") -> tuple[int, int]:
    """(rows, width) of one shard without reading its data; validates key, rank and dtype."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"activation shard {path} does not exist; re-run the harvest or fix the path")
    with open_safetensors(path, fix=_FIX) as f:
        keys = list(f.keys())
        if key not in keys:
            raise UserError(f"shard {path} has no tensor {key!r} (has {sorted(keys)}); pass the right key")
        sl = f.get_slice(key)
        shape, dtype = sl.get_shape(), sl.get_dtype()
    if len(shape) != 2:
        raise UserError(f"shard {path}: {key!r} has shape {shape}, expected 2-D [tokens, d_in]; re-harvest")
    if dtype.upper() not in {"F32", "F16", "BF16", "F64"}:
        raise UserError(f"shard {path}: {key!r} has dtype {dtype}, expected a float type; re-harvest")
    return int(shape[0]), int(shape[1])


def _read_chunks(path: Path, key: str, chunk_rows: int) -> Iterator[Tensor]:
    with open_safetensors(path, fix=_FIX) as f:
        sl = f.get_slice(key)
        n = sl.get_shape()[0]
        for start in range(0, n, chunk_rows):
            yield sl[start:start + chunk_rows].to(torch.float32)


def iter_activation_batches(shard_paths: Sequence[str | Path], batch_size: int, buffer_rows: int = 262144,
                            seed: int = 0, key: str = "activations", loop: bool = False,
                            drop_last: bool = False) -> Iterator[Tensor]:
    """Yield shuffled float32 [batch_size, d_in] batches from safetensors shards.

    ``loop=True`` cycles forever (shard order reshuffled each epoch; leftover rows carry over).
    Otherwise the final, smaller batch is yielded unless ``drop_last``.
    """
    paths = [Path(p) for p in shard_paths]
    if not paths:
        raise UserError("no activation shards given; run the harvest stage first")
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size} must be >= 1")
    shapes = [shard_shape(p, key) for p in paths]  # validate everything before yielding anything
    widths = {w for _, w in shapes}
    if sum(n for n, _ in shapes) == 0:
        raise UserError("activation shards hold no rows; re-run the harvest")
    if len(widths) != 1:
        raise UserError(f"activation shards have different widths {sorted(widths)}; they mix models or hooks")
    return _generate(paths, widths.pop(), batch_size, max(buffer_rows, 2 * batch_size), seed, key, loop, drop_last)


def _generate(paths: list[Path], d: int, batch_size: int, buffer_rows: int, seed: int, key: str, loop: bool,
              drop_last: bool) -> Iterator[Tensor]:
    g = torch.Generator().manual_seed(seed)
    buf = torch.empty(0, d)
    while True:
        for i in torch.randperm(len(paths), generator=g).tolist():
            for chunk in _read_chunks(paths[i], key, buffer_rows // 2):
                buf = torch.cat([buf, chunk])
                if len(buf) >= buffer_rows:
                    buf = buf[torch.randperm(len(buf), generator=g)]
                    n_out = (len(buf) // 2 // batch_size) * batch_size
                    yield from buf[:n_out].split(batch_size)
                    buf = buf[n_out:]
        if loop:
            continue
        buf = buf[torch.randperm(len(buf), generator=g)]
        for b in buf.split(batch_size):
            if len(b) == batch_size or not drop_last:
                yield b
        return


def held_out_split(shard_paths: Sequence[str | Path], n_eval: int = 1) -> tuple[list[Path], list[Path]]:
    """(train, eval): shards sorted by name, the last ``n_eval`` held out for FVU / L0 evaluation."""
    paths = sorted(Path(p) for p in shard_paths)
    if len(paths) <= n_eval:
        raise UserError(f"need more than {n_eval} activation shard(s) to hold {n_eval} out, got {len(paths)}; "
                        "harvest more tokens or use a smaller shard size")
    return paths[:-n_eval], paths[-n_eval:]
