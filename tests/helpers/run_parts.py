"""The pieces every test run builder shares (see ``helpers.runs``): the corpus, a harvest, an SAE with a
chosen dictionary, the real exemplar miner; all written through the package's own writers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

import torch

from autointerp.data.corpus import CorpusConfig, CorpusStats, Document, save_documents
from autointerp.exemplars.config import ExemplarConfig
from autointerp.exemplars.mine import mine_exemplars
from autointerp.harvest.shards import write_shard
from autointerp.io import write_json
from autointerp.rundir.layout import HARVEST_MANIFEST, ModelDir, RunDir
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.saelens import save_sae


# =============================================================================================== shared pieces
def write_documents(run_dir: Path, docs: list[Document], dataset: str) -> None:
    """The run's corpus through the corpus writer, every document kept."""
    save_documents(RunDir(run_dir).corpus, docs, CorpusStats(n_seen=len(docs), n_kept=len(docs)), CorpusConfig(dataset=dataset))


def write_harvest(hdir: Path, shards: list[tuple[torch.Tensor, pd.DataFrame]], record: dict, meta: dict | None = None) -> None:
    """Shards (activations, index frame) through the real shard writer, then harvest.json as the harvest stage
    records it: ``record`` (d_model, identity, counts) with ``complete`` and each shard's rows and contexts."""
    entries = []
    for index, (acts, frame) in enumerate(shards):
        write_shard(hdir, index, acts, frame, meta or {})
        entries.append({"index": index, "rows": len(frame), "contexts": int(frame["context_id"].nunique())})
    write_json(hdir / HARVEST_MANIFEST, {"complete": True} | record | {"n_shards": len(entries), "shards": entries})


def write_piece_harvest(model: ModelDir, documents: dict[str, list[str]], vector_of: Callable[[int, int], np.ndarray], *,
                        d_model: int, ctx_len: int, split: bool = True, shard_contexts: int | None = None) -> dict[str, str]:
    """A harvest of documents given as token pieces (one token per piece, its separator inside it, GPT-2 style):
    token i of document d carries ``vector_of(d, i)`` (called in document, then token order); contexts of
    ``ctx_len`` tokens (``split`` False: one context per document), ``shard_contexts`` of them per shard (None:
    one shard). Returns the documents' texts."""
    texts, contexts = {}, []
    for d, (doc_id, pieces) in enumerate(documents.items()):
        rows, pos = [], 0
        for i, piece in enumerate(pieces):
            rows.append(({"doc_id": doc_id, "position": i, "token_id": 0, "token": piece, "char_start": pos, "char_end": pos + len(piece)},
                         vector_of(d, i)))
            pos += len(piece)
        texts[doc_id] = "".join(pieces)
        step = ctx_len if split else len(rows)
        contexts += [rows[s : s + step] for s in range(0, len(rows), step)]
    per_shard = shard_contexts or len(contexts)
    shards = []
    for start in range(0, len(contexts), per_shard):
        part = contexts[start : start + per_shard]
        frame = pd.DataFrame([r | {"context_id": start + c, "ctx_pos": j} for c, ctx in enumerate(part) for j, (r, _) in enumerate(ctx)])
        shards.append((torch.from_numpy(np.stack([x for ctx in part for _, x in ctx])), frame.astype({"context_id": "int64", "ctx_pos": "int32"})))
    write_harvest(model.harvest, shards, {"d_model": d_model, "hook_name": "toy", "n_documents": len(documents), "n_contexts": len(contexts),
                                          "identity": {"model": model.slug, "layer": 0, "site": "resid", "level": "token", "ctx_len": ctx_len}},
                  {"model": model.slug})
    return texts


def save_tied_topk_sae(sae_dir: Path, w_dec: np.ndarray, k: int, metadata: dict, b_enc: float | np.ndarray = 0.0) -> None:
    """A TopK SAE whose latent j writes (and reads) row j of ``w_dec``: decoder ``w_dec``, encoder its transpose,
    encoder bias ``b_enc``, no decoder bias. Saved through the real writer."""
    d_sae, d_in = w_dec.shape
    sae = create_sae(SAEConfig(d_in=d_in, d_sae=d_sae, architecture="topk", k=k, metadata=metadata))
    with torch.no_grad():
        sae.W_dec.copy_(torch.from_numpy(w_dec))
        sae.W_enc.copy_(torch.from_numpy(w_dec.T.copy()))
        sae.b_enc.copy_(torch.as_tensor(b_enc, dtype=sae.b_enc.dtype).expand_as(sae.b_enc))
        sae.b_dec.zero_()
    save_sae(sae, sae_dir)


def save_identity_sae(sae_dir: Path, d: int, k: int, slug: str) -> None:
    """A TopK SAE whose latent i is input dimension i (encoder and decoder the identity), saved for real."""
    save_tied_topk_sae(sae_dir, np.eye(d, dtype=np.float32), k, {"model_name": slug, "hook_name": "toy", "level": "token"})


def mine(sae, hdir: Path, docs: dict[str, str] | list[Document], out: Path, **settings):
    """The real exemplar miner, ``settings`` overriding ExemplarConfig's defaults."""
    return mine_exemplars(sae, hdir, docs, out, ExemplarConfig(**settings), progress=False)
