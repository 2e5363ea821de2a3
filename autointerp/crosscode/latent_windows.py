"""Exemplar windows of crosscoder latents, on word units, showing both models on the same words.

A crosscoder latent has one activation per word unit (the shared encoder reads both models at once), so a
window is an ordinary exemplar window (``rundir.windows.Window``, ``EXEMPLAR_SCHEMA``) whose "tokens" are
the word units of compare's ``WordIndex``: ``tokens`` the words' texts, ``token_ids`` their global unit ids,
``char_start`` / ``char_end`` their character spans in the document, ``acts`` the latent's activation per
word (0 on words one of the harvests does not cover), ``context_id`` the document index. The explainer,
the lexical profile and the embedding scorer read these rows as they read a model's exemplars.

Two more columns say what each model contributes on the same words: ``read_a`` and ``read_b``, the part
of the latent's pre-activation computed from that model's pooled activation,

    read_m(n) = (s_m x_m(n) - b_dec_m) . W_enc_m[:, j]        so that  act_j(n) = relu(read_a + read_b + b_enc_j)

when the latent fires (above the inference threshold); ``s_m`` is the model's common-norm scale, so the
value is the same computed on raw activations with the saved (scale-folded) weights. NaN on words a
harvest does not cover. A shared latent is read from both models on its top words; an exclusive one
mostly from one.

Selection per latent, in words (``[exemplars]`` sizes; ``window_before`` / ``window_after`` count words):
peaks are picked greedily by activation, each more than ``window_before + window_after`` words from every
earlier peak (so no two windows share a word); ``top`` = the first ``n_top`` (train; capped so that
min(N // 2, n_test) peaks remain for the held-out set, as in ``exemplars.mine``); ``quantile`` = the other
peaks in ``n_quantiles`` equal-count bins by activation, ``per_quantile`` drawn per bin (seeded),
round(test_fraction x drawn) of them test, stratified over bins; ``random`` = up to ``n_random`` windows
centred on a covered word where the latent is silent on every word of the window, alternately train / test.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import torch

from autointerp.crosscode.data import PairedUnits
from autointerp.crosscode.model import CrossCoder
from autointerp.data.corpus import Document
from autointerp.exemplars.config import ExemplarConfig
from autointerp.exemplars.mine import EXEMPLAR_SCHEMA

SCHEMA = pa.schema(list(EXEMPLAR_SCHEMA) + [pa.field("read_a", pa.list_(pa.float32())), pa.field("read_b", pa.list_(pa.float32()))])
KIND_ORDER = {"top": 0, "quantile": 1, "random": 2}


def _peaks(act: np.ndarray, gap: int) -> np.ndarray:
    """Firing units by descending activation, each more than ``gap`` units from every one kept before it."""
    firing = np.flatnonzero(act > 0)
    order = firing[np.argsort(-act[firing], kind="stable")]
    blocked = np.zeros(len(act), bool)
    kept = []
    for u in order.tolist():
        if not blocked[u]:
            kept.append(u)
            blocked[max(0, u - gap):u + gap + 1] = True
    return np.asarray(kept, np.int64)


def choose_windows(act: np.ndarray, covered: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], cfg: ExemplarConfig,
                   rng: np.random.Generator) -> list[tuple[str, str, int, int]]:
    """(split, kind, rank_or_quantile, centre unit) of one latent's windows; ``act`` is over all word units,
    ``bounds`` = (lo, hi) of each unit's window (clipped to its document)."""
    peaks = _peaks(act, cfg.window_before + cfg.window_after)
    n = len(peaks)
    n_top = min(cfg.n_top, max(0, n - min(n // 2, cfg.n_test_target)))
    out = [("train", "top", r, int(u)) for r, u in enumerate(peaks[:n_top])]
    rest = peaks[n_top:]
    rest = rest[np.argsort(act[rest], kind="stable")]
    drawn = []  # (position in its bin's draw, bin, unit)
    if len(rest) and cfg.n_quantiles and cfg.per_quantile:
        for b, members in enumerate(np.array_split(rest, min(cfg.n_quantiles, len(rest)))):
            pick = rng.permutation(len(members))[: cfg.per_quantile]
            drawn += [(i, b, int(members[p])) for i, p in enumerate(pick)]
    drawn.sort()
    n_test = math.floor(cfg.test_fraction * len(drawn) + 0.5)
    out += [("test" if i < n_test else "train", "quantile", b, u) for i, (_, b, u) in enumerate(drawn)]
    if cfg.n_random:
        lo, hi = bounds
        fired = np.concatenate([[0], np.cumsum(act > 0)])
        silent = np.flatnonzero(covered & (fired[hi] == fired[lo]))
        pick = np.sort(rng.choice(silent, size=min(cfg.n_random, len(silent)), replace=False)) if len(silent) else []
        out += [("train" if i % 2 == 0 else "test", "random", i, int(u)) for i, u in enumerate(pick)]
    return out


def _encoder_parts(cc: CrossCoder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Per model: its rows of W_enc, its part of b_dec (common-norm space) and its scale."""
    with torch.no_grad():
        w = cc.W_enc.detach().double().cpu().numpy()
        b = cc.b_dec.detach().double().cpu().numpy()
        s_a, s_b = (float(v) for v in cc.scales)
    return w[: cc.d_a], w[cc.d_a:], b[: cc.d_a], b[cc.d_a:], s_a, s_b


def mine_latent_windows(cc: CrossCoder, data: PairedUnits, codes: sp.csr_matrix, docs: list[Document], latents: list[int],
                        cfg: ExemplarConfig) -> pa.Table:
    """Every window of ``latents`` as a ``SCHEMA`` table, grouped by latent (top, quantile, random)."""
    words = data.words
    n_units = words.n_units
    row_of = np.full(n_units, -1, np.int64)
    row_of[data.units] = np.arange(data.n)
    covered = row_of >= 0
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), np.diff(words.doc_offsets))
    all_units = np.arange(n_units, dtype=np.int64)
    lo = np.maximum(words.doc_offsets[doc_of], all_units - cfg.window_before)
    hi = np.minimum(words.doc_offsets[doc_of + 1], all_units + cfg.window_after + 1)
    w_a, w_b, bd_a, bd_b, s_a, s_b = _encoder_parts(cc)
    csc = codes.tocsc()
    rows: list[dict] = []
    for j in latents:
        act = np.zeros(n_units, np.float32)
        col = slice(csc.indptr[j], csc.indptr[j + 1])
        act[data.units[csc.indices[col]]] = csc.data[col]
        chosen = choose_windows(act, covered, (lo, hi), cfg, np.random.default_rng([cfg.seed, j]))
        needed = np.unique(np.concatenate([np.arange(lo[c], hi[c]) for *_, c in chosen])) if chosen else np.zeros(0, np.int64)
        needed = needed[covered[needed]]
        read = {}
        if len(needed):
            r = row_of[needed]
            ra = (data.x_a[r].astype(np.float64) * s_a - bd_a) @ w_a[:, j]
            rb = (data.x_b[r].astype(np.float64) * s_b - bd_b) @ w_b[:, j]
            read = {int(u): (a, b) for u, a, b in zip(needed, ra, rb)}
        for split, kind, rank, c in chosen:
            rows.append(_row(j, split, kind, rank, c, int(lo[c]), int(hi[c]), int(doc_of[c]), act, read, words, docs))
    position = {j: i for i, j in enumerate(latents)}
    rows.sort(key=lambda r: (position[r["feature"]], KIND_ORDER[r["kind"]], r["rank_or_quantile"], r["split"]))
    return pa.Table.from_pylist(rows, schema=SCHEMA) if rows else SCHEMA.empty_table()


def _row(j: int, split: str, kind: str, rank: int, c: int, lo: int, hi: int, d: int, act: np.ndarray, read: dict,
         words, docs: list[Document]) -> dict:
    base = int(words.char_offsets[d])
    starts = (words.starts[lo:hi] - base).astype(np.int64)
    ends = (words.ends[lo:hi] - base).astype(np.int64)
    text = docs[d].text
    nan = (math.nan, math.nan)
    return {"feature": j, "split": split, "kind": kind, "rank_or_quantile": rank, "context_id": d, "doc_id": docs[d].doc_id,
            "max_act": float(act[c]), "max_index": c - lo, "tokens": [text[s:e] for s, e in zip(starts, ends)],
            "token_ids": list(range(lo, hi)), "acts": act[lo:hi].tolist(), "char_start": starts.tolist(), "char_end": ends.tolist(),
            "text": text[int(starts[0]):int(ends[-1])],
            "read_a": [float(read.get(u, nan)[0]) for u in range(lo, hi)], "read_b": [float(read.get(u, nan)[1]) for u in range(lo, hi)]}
