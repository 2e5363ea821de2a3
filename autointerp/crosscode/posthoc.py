"""The crosscoder held against the post-hoc view (one SAE per model, Hungarian on correlations).

For each crosscoder latent, the SAE feature of each model whose max-pooled word-unit activation
(compare.encode.pool_harvest, the units compare matches on) correlates best with the latent's activation
over the same units. A latent "maps" to a feature only at correlation >= ``min_corr``. Then both ways:
of the crosscoder's shared latents that map on both sides, how many land on a pair that compare's
matches.parquet calls shared; of compare's shared pairs, how many are the (best A, best B) of some shared
latent. Disagreements are listed with the latent's top word units as exemplars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from autointerp.compare.correlation import correlate
from autointerp.compare.encode import pool_harvest
from autointerp.compare.inputs import ComparedModel
from autointerp.crosscode.data import PairedUnits
from autointerp.data.corpus import Document


def best_features(codes: sp.csr_matrix, model: ComparedModel, data: PairedUnits, docs: list[Document],
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best feature, its correlation) per latent, and the best latent per SAE feature (-1 if none)."""
    from autointerp.sae.saelens import load_sae

    sae = load_sae(model.sae_dir)
    doc_index_of = {d.doc_id: i for i, d in enumerate(docs)}
    pooled = pool_harvest(sae, model.harvest_dir, model.manifest, doc_index_of, data.words, progress=progress, label=model.slug)["word"]
    rows = np.arange(data.n)
    corr = correlate(codes, pooled.matrix, rows, data.units, progress=progress, label=f"crosscode vs {model.slug}").corr
    filled = np.where(np.isfinite(corr), corr, -np.inf)
    best = filled.argmax(1)
    value = filled[np.arange(len(best)), best]
    best_latent = np.where(np.isfinite(filled.max(0)), filled.argmax(0), -1)
    return best.astype(np.int64), np.where(np.isfinite(value), value, np.nan), best_latent.astype(np.int64)


def _window(texts: list[str], words, unit: int, radius: int = 5) -> dict:
    """The unit with up to ``radius`` words either side (same document), as plain text parts."""
    doc = int(np.searchsorted(words.doc_offsets, unit, side="right") - 1)
    lo, hi = max(int(words.doc_offsets[doc]), unit - radius), min(int(words.doc_offsets[doc + 1]), unit + radius + 1)
    return {"before": " ".join(texts[lo:unit]) + " ", "word": texts[unit], "after": " " + " ".join(texts[unit + 1:hi])}


def exemplar_words(codes: sp.csr_matrix, latent: int, data: PairedUnits, texts: list[str], n: int = 3) -> list[dict]:
    """The latent's top ``n`` word units, each in its +-5-word window (before / word / after, unescaped)."""
    col = codes[:, latent].tocoo()
    top = col.row[np.argsort(-col.data)[:n]]
    return [_window(texts, data.words, int(data.units[r])) for r in top]


def agreement(table: pd.DataFrame, matches: pd.DataFrame | None, min_corr: float) -> tuple[pd.DataFrame, dict]:
    """Add ``posthoc`` (shared pair / unshared pair / no pair / unmapped) and ``posthoc_kind`` per latent; the
    agreement figures both ways. ``matches``: compare's matches.parquet (activation method) or None."""
    mapped = (table["corr_a"] >= min_corr) & (table["corr_b"] >= min_corr)
    out = table.assign(posthoc="unmapped", posthoc_kind="")
    if matches is None:
        return out, {"available": False, "reason": "no matches.parquet: run `autointerp compare` first"}
    act = matches[matches["method"] == "activation"] if "method" in matches else matches
    kind = {(int(a), int(b)): (str(k) if s else "unshared") for a, b, s, k in
            zip(act["feature_a"], act["feature_b"], act["shared"], act["kind"] if "kind" in act else ["shared"] * len(act))}
    shared_pairs = {p for p, k in kind.items() if k != "unshared"}
    pair = list(zip(out["best_a"].astype(int), out["best_b"].astype(int)))
    label = np.array(["shared pair" if p in shared_pairs else "unshared pair" if p in kind else "no pair" for p in pair], dtype=object)
    out["posthoc"] = np.where(mapped, label, "unmapped")
    out["posthoc_kind"] = [kind.get(p, "") if m else "" for p, m in zip(pair, mapped)]
    cc_shared = (out["class"] == "shared") & mapped
    shared_latent_pairs = {p for p, s in zip(pair, cc_shared) if s}
    n_cc = int(cc_shared.sum())
    hits = int((out.loc[cc_shared, "posthoc"] == "shared pair").sum())
    covered = sum(p in shared_latent_pairs for p in shared_pairs)
    by_kind = {k: [p for p in shared_pairs if kind[p] == k] for k in sorted({kind[p] for p in shared_pairs})}
    exclusive = out["class"].isin(["a_only", "b_only"]) & mapped
    return out, {
        "available": True, "min_corr": min_corr,
        "n_crosscoder_shared_mapped": n_cc, "n_posthoc_shared_pairs": len(shared_pairs),
        "crosscoder_shared_in_posthoc": hits / n_cc if n_cc else None,
        "posthoc_shared_in_crosscoder": covered / len(shared_pairs) if shared_pairs else None,
        "posthoc_shared_in_crosscoder_by_kind": {k: (sum(p in shared_latent_pairs for p in v) / len(v) if v else None) for k, v in by_kind.items()},
        "n_exclusive_on_posthoc_shared_pair": int((exclusive & (out["posthoc"] == "shared pair")).sum()),
        "definitions": {"crosscoder_shared_in_posthoc": "of the shared latents whose best SAE feature reaches min_corr on both sides, the share whose (best A, best B) is a shared pair of matches.parquet",
                        "posthoc_shared_in_crosscoder": "of matches.parquet's shared pairs, the share that is the (best A, best B) of some shared latent"},
    }


def disagreements(out: pd.DataFrame, codes: sp.csr_matrix, data: PairedUnits, texts: list[str], n: int) -> list[dict]:
    """Latents the two views disagree on: exclusive here but on a post-hoc shared pair, and shared here but on
    a pair post-hoc calls unshared; the most-used first, each with exemplar word windows."""
    rows = []
    for cls, post, what in ((("a_only", "b_only"), "shared pair", "crosscoder exclusive, post-hoc shared"),
                            (("shared",), "unshared pair", "crosscoder shared, post-hoc unshared")):
        pick = out[out["class"].isin(cls) & (out["posthoc"] == post)].sort_values("n_units", ascending=False).head(n)
        for r in pick.to_dict("records"):
            rows.append({"latent": int(r["latent"]), "kind": what, "class": str(r["class"]), "relative_norm": float(r["relative_norm"]),
                         "best_a": int(r["best_a"]), "corr_a": float(r["corr_a"]), "best_b": int(r["best_b"]), "corr_b": float(r["corr_b"]),
                         "exemplars": exemplar_words(codes, int(r["latent"]), data, texts)})
    return rows
