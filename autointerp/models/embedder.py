"""Sentence embeddings for labels and windows (label matching, the offline embedding scorer).

One loader so every stage embeds with the same model: the embedded all-MiniLM-L6-v2 by default (shipped
inside a PyPI package, so it works offline), or any sentence-transformers model by hub id or path.
Embeddings are L2-normalised, so a dot product is a cosine.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from autointerp.errors import UserError
from autointerp.io import atomic_path, read_npz
from autointerp.models.resolve import EMBEDDED_MODELS, resolve_model

DEFAULT_EMBEDDER = "minilm-l6"


@functools.lru_cache(maxsize=2)
def load_embedder(spec: str = DEFAULT_EMBEDDER, device: str = "cpu"):
    """A SentenceTransformer for ``spec``: ``minilm-l6`` (embedded), a local directory or a hub id."""
    from sentence_transformers import SentenceTransformer

    if spec in EMBEDDED_MODELS and spec != "minilm-l6":
        raise UserError(f"{spec} is not a sentence embedder; use minilm-l6 or a sentence-transformers model id/path")
    path = resolve_model(spec).path if (spec in EMBEDDED_MODELS or Path(spec).expanduser().exists()) else spec
    from autointerp.models.resolve import MODEL_LOAD_LOCK

    try:
        with MODEL_LOAD_LOCK:  # never build two models at once (see MODEL_LOAD_LOCK)
            return SentenceTransformer(str(path), device=device, local_files_only=not _looks_remote(spec))
    except OSError as exc:
        raise UserError(f"cannot load sentence embedder {spec!r}: {exc}; use minilm-l6 (embedded) or a local sentence-transformers directory") from exc


def _looks_remote(spec: str) -> bool:
    return spec not in EMBEDDED_MODELS and not Path(spec).expanduser().exists()


def embed_texts(texts: list[str], spec: str = DEFAULT_EMBEDDER, batch_size: int = 64) -> np.ndarray:
    """[len(texts), dim] float32, unit-norm rows. Empty input gives a [0, dim] array."""
    model = load_embedder(spec)
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    out = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return out.astype(np.float32, copy=False)


def _text_key(text: str, spec: str) -> str:
    return hashlib.sha1(f"{spec}\0{text}".encode("utf-8")).hexdigest()


def embed_texts_cached(texts: list[str], spec: str, cache: Path, batch_size: int = 64) -> np.ndarray:
    """``embed_texts``, reusing the rows stored in ``cache`` (an .npz keyed by sha1 of embedder and text).

    Only texts not in the cache are embedded, then added to it (rewritten atomically): calls on different
    subsets of one model's features (a pair, a control) share it, and a changed label re-embeds one row.
    """
    keys = [_text_key(t, spec) for t in texts]
    known: dict[str, np.ndarray] = {}
    if Path(cache).is_file():
        try:
            stored = read_npz(cache)
            known = dict(zip(stored["keys"].tolist(), stored["embeddings"]))
        except (OSError, ValueError, KeyError):  # a damaged cache (DamagedArtifact is a ValueError) is only a cache: embed again
            known = {}
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if todo:
        fresh = embed_texts([t for _, t in todo], spec, batch_size)
        known.update(zip([k for k, _ in todo], fresh))
    if not texts:
        return embed_texts([], spec)
    if todo:
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, keys=np.array(list(known)), embeddings=np.stack(list(known.values())).astype(np.float32))
    return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)
