"""One pass over a model's harvest with its SAE for what the pages need beyond the mined exemplars.

Two things come out of the same pass, so the harvest is encoded once per report that needs either:

- an activation histogram for every feature: counts of the tokens it fires on, in ``N_BINS`` equal bins
  from 0 to the feature's max activation (feature_stats.parquet), which the feature page draws as SVG;
- the word-pooled activations of the features that appear in pair pages (max over the tokens that
  overlap each word unit, exactly as ``autointerp compare`` pools them), which ``pair_windows`` turns
  into side-by-side windows.

Both results are stored by the caller (``page_data``), so later reports read them in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from autointerp.compare.encode import _expand, _Pooler, harvest_shards, shard_units
from autointerp.compare.units import WordIndex
from autointerp.sae.encode import chunk_codes, inference, read_harvest_shard

N_BINS = 32


@dataclass
class EncodedModel:
    histogram: np.ndarray  # [d_sae, N_BINS] int64 token counts; bin i covers [i, i + 1) * max_act / N_BINS
    max_act: np.ndarray  # [d_sae] the histogram's upper edge per feature
    words: sp.csr_matrix | None  # [n_units, len(features)] word-pooled activations of ``features`` (column order)
    covered: np.ndarray | None  # [n_units] bool: units the harvest covers
    features: np.ndarray  # the pooled features, sorted


def encode_for_pages(sae, harvest_dir: Path, manifest: dict, doc_index_of: dict[str, int], words: WordIndex | None,
                     features, max_act: np.ndarray, chunk_rows: int = 8192) -> EncodedModel:
    """Histograms of every feature, and word-pooled activations of ``features`` (when ``words`` is given)."""
    d_sae = sae.cfg.d_sae
    wanted = np.asarray(sorted({int(f) for f in features}), dtype=np.int64)
    column = np.full(d_sae, -1, dtype=np.int64)
    column[wanted] = np.arange(len(wanted))
    top = np.asarray(max_act, dtype=np.float64)
    scale = np.where(top > 0, N_BINS / np.where(top > 0, top, 1.0), 0.0)
    counts = np.zeros(d_sae * N_BINS, dtype=np.int64)
    pooler = _Pooler(words.n_units, max(len(wanted), 1)) if words is not None and len(wanted) else None
    with inference(sae) as device:
        for shard_index in harvest_shards(manifest):
            acts, index = read_harvest_shard(harvest_dir, shard_index)
            doc_idx, pair_rows, pair_units = shard_units(harvest_dir, index, doc_index_of, words if pooler else None)
            if pooler is not None:
                pooler.covered[pair_units] = True
            for start, stop, r, feats, vals in chunk_codes(sae, acts, chunk_rows, device):
                vals = vals.astype(np.float64)
                bins = np.clip((vals * scale[feats]).astype(np.int64), 0, N_BINS - 1)
                counts += np.bincount(feats * N_BINS + bins, minlength=d_sae * N_BINS)
                if pooler is not None:
                    keep = column[feats] >= 0
                    lo, hi = np.searchsorted(pair_rows, [start, stop])
                    rec, units = _expand(r[keep] - start, pair_rows[lo:hi] - start, pair_units[lo:hi], stop - start)
                    pooler.add(units, column[feats[keep]][rec], vals[keep][rec].astype(np.float32))
            if pooler is not None:
                pooler.flush()
    pooled = pooler.result() if pooler is not None else None
    return EncodedModel(counts.reshape(d_sae, N_BINS), top.astype(np.float32), pooled.matrix if pooled else None,
                        pooled.covered if pooled else None, wanted)
