"""Logit effects: the output tokens each SAE feature's decoder direction pushes up and down (causal LMs only).

A feature writes its decoder direction ``d`` into the residual stream. Its *direct* effect on the next-token
logits, ignoring every later block, is ``W_U (norm(d) - norm(0))``: the model's own final norm applied to
the direction (so RMSNorm / LayerNorm weights, Gemma's ``1 + w`` and LayerNorm's centring all count),
minus the norm's bias, then the unembedding. The one approximation, stated on every page: the final norm's
per-token ``1 / rms(x)`` depends on the whole residual stream, not on ``d``; using ``d`` alone rescales all
of a feature's logit effects by one positive factor, so the ranking of tokens is exact for the direct path.

Computed once per SAE for the features asked for, and stored as ``<model>/logit_effects.parquet`` (long
format, keyed by the SAE weights' sha256 in the file's metadata): later reports only read it. Features
already in the file are kept; asking for new ones appends them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from autointerp.io import read_stamped_parquet, write_stamped_parquet

APPROXIMATION = ("direct path only: logits of W_U · (final_norm(d) − final_norm(0)) for the feature's decoder direction d, "
                 "ignoring the blocks after the SAE's layer and the norm's per-token 1/rms scale (one positive factor per "
                 "feature, so the token ranking is unaffected)")
SCHEMA = pa.schema([("feature", pa.int64()), ("direction", pa.string()), ("rank", pa.int32()), ("token_id", pa.int64()),
                    ("token", pa.string()), ("effect", pa.float32())])
_KEY = b"autointerp.sae_sha256"
_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_norm", "layer_norm", "final_layernorm")


def _parent(model: nn.Module, blocks_path: str) -> nn.Module:
    obj: object = model
    for part in blocks_path.split(".")[:-1]:
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def output_map(model: nn.Module, blocks_path: str) -> tuple[nn.Module | None, nn.Module | None, torch.Tensor]:
    """(final norm, projection after it, unembedding [vocab, d]) of a causal LM, found next to its block list."""
    parent = _parent(model, blocks_path)
    norm = next((m for name in _NORM_NAMES if isinstance(m := getattr(parent, name, None), nn.Module)), None)
    project = getattr(parent, "project_out", None)  # OPT with word_embed_proj_dim != hidden_size
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings (not a causal LM)")
    return norm, project if isinstance(project, nn.Module) else None, head.weight


@torch.inference_mode()
def logit_effects(model: nn.Module, blocks_path: str, tokenizer, w_dec: torch.Tensor, features: Iterable[int],
                  top_n: int = 10, chunk: int = 256) -> pd.DataFrame:
    """The ``top_n`` tokens each feature's decoder row raises most ("up") and lowers most ("down")."""
    norm, project, w_u = output_map(model, blocks_path)
    features = np.asarray(sorted({int(f) for f in features}), dtype=np.int64)
    dtype = w_u.dtype if w_u.dtype in (torch.float32, torch.float64) else torch.float32
    w_u = w_u.to(dtype)
    rows: list[dict] = []
    for start in range(0, len(features), chunk):
        ids = features[start:start + chunk]
        d = w_dec[torch.as_tensor(ids)].to(device=w_u.device, dtype=dtype)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12) * d.shape[1] ** 0.5  # rms 1: the norm's eps is negligible
        if norm is not None:
            p = next(norm.parameters(), None)
            cast = d.to(p.dtype) if p is not None else d
            d = (norm(cast) - norm(torch.zeros_like(cast))).to(dtype)
        if project is not None:
            d = project(d.to(next(project.parameters()).dtype)).to(dtype)
        logits = d @ w_u.T  # [chunk, vocab]
        for direction, values, index in (("up", *torch.topk(logits, top_n, dim=1)), ("down", *torch.topk(-logits, top_n, dim=1))):
            values = values if direction == "up" else -values
            for i, f in enumerate(ids.tolist()):
                tokens = tokenizer.convert_ids_to_tokens(index[i].tolist())
                for r, (tid, tok, v) in enumerate(zip(index[i].tolist(), tokens, values[i].tolist())):
                    rows.append({"feature": f, "direction": direction, "rank": r, "token_id": tid, "token": str(tok), "effect": v})
    frame = pd.DataFrame(rows, columns=SCHEMA.names)
    return frame.astype({"feature": "int64", "rank": "int32", "token_id": "int64", "effect": "float32"})


def read_logit_effects(path: Path, sae_sha256: str) -> pd.DataFrame | None:
    """The stored table when it was made from this SAE; None when missing, damaged or stale."""
    table = read_stamped_parquet(path, _KEY, sae_sha256)
    return None if table is None else table.to_pandas()


def write_logit_effects(path: Path, frame: pd.DataFrame, sae_sha256: str) -> None:
    table = pa.Table.from_pandas(frame[SCHEMA.names].sort_values(["feature", "direction", "rank"], ascending=[True, False, True]),
                                 schema=SCHEMA, preserve_index=False)
    write_stamped_parquet(path, table, _KEY, sae_sha256)


def by_feature(frame: pd.DataFrame | None) -> dict[int, dict[str, list[tuple[str, float]]]]:
    """feature -> {"up": [(token, effect), ...], "down": [...]} in rank order."""
    out: dict[int, dict[str, list[tuple[str, float]]]] = {}
    if frame is None or frame.empty:
        return out
    for (feature, direction), group in frame.sort_values("rank").groupby(["feature", "direction"], sort=False):
        out.setdefault(int(feature), {})[str(direction)] = list(zip(group["token"].astype(str), group["effect"].astype(float)))
    return out
