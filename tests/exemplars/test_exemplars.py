"""Exemplar mining: windows and statistics equal a brute-force dense computation on a synthetic harvest,
planted features on a real harvest, quantile coverage, train/test disjointness, negatives, sequence level,
chunk invariance (encode only ever sees chunks), and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autointerp.data.corpus import CorpusConfig, collect_documents
from autointerp.errors import UserError
from autointerp.io import write_json
from autointerp.models import load_model
from autointerp.exemplars.mine import ExemplarConfig, mine_exemplars
from autointerp.harvest.harvester import HarvestConfig, harvest, load_manifest
from autointerp.sae.config import SAEConfig
from autointerp.sae.topk import TopKSAE
from autointerp.sae.registry import create_sae
from autointerp.harvest.shards import read_shard
from helpers.runs import make_word_harvest, mine, word_harvest_sae

D = 32
N_WORDS = 40


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ helpers
def _read_all(hdir: Path) -> tuple[torch.Tensor, pd.DataFrame]:
    parts = [read_shard(hdir, s["index"]) for s in load_manifest(hdir)["shards"]]
    return torch.cat([p[0] for p in parts]).float(), pd.concat([p[1] for p in parts], ignore_index=True)


def _dense(sae, x: torch.Tensor) -> np.ndarray:
    """Brute force (tests only): the full [rows, d_sae] latent matrix."""
    with torch.no_grad():
        out = sae.encode(x)
    dense = torch.zeros(x.shape[0], sae.cfg.d_sae).scatter(1, out.top_indices, out.top_acts.float())
    return dense.clamp_min(0).numpy()


def _cap(n_ctx: int, cfg: ExemplarConfig) -> int:
    n_test = int(np.floor(cfg.test_fraction * cfg.n_quantiles * cfg.per_quantile + 0.5))
    return min(cfg.n_top, n_ctx - min(n_ctx // 2, n_test))


# -------------------------------------------------------------------------------------------- tests
def test_top_windows_and_stats_equal_brute_force(tmp_path):
    hdir, docs = make_word_harvest(tmp_path)
    sae = word_harvest_sae()
    cfg = {"n_top": 5, "n_quantiles": 4, "per_quantile": 2, "n_random": 6, "window_before": 3, "window_after": 2, "chunk_rows": 13}
    result = mine(sae, hdir, docs, tmp_path / "out", **cfg)
    ex = pd.read_parquet(result.exemplars_path)
    stats = pd.read_parquet(result.stats_path)
    x, index = _read_all(hdir)
    dense = _dense(sae, x)
    ctx = index["context_id"].to_numpy()

    # statistics
    assert len(stats) == 64 and result.n_rows == len(index)
    np.testing.assert_array_equal(stats["n_active_tokens"], (dense > 0).sum(0))
    np.testing.assert_allclose(stats["max_act"], dense.max(0), rtol=1e-6)
    np.testing.assert_allclose(stats["density"], (dense > 0).mean(0))
    fired = (dense > 0).sum(0)
    np.testing.assert_allclose(stats["mean_act"], np.where(fired > 0, dense.sum(0) / np.maximum(fired, 1), 0), rtol=1e-5)
    per_ctx = pd.DataFrame(dense).groupby(ctx).max()
    np.testing.assert_array_equal(stats["n_contexts_active"], (per_ctx > 0).sum(axis=0))
    assert stats["dead"].tolist() == [False] * 32 + [True] * 32
    assert set(ex["feature"]) == set(range(32))  # dead features get no exemplars

    checked = 0
    for f in range(32):
        col = dense[:, f]
        best = {}  # context -> (max, first argmax row)
        for r in np.flatnonzero(col > 0):
            c = ctx[r]
            if c not in best or col[r] > best[c][0]:
                best[c] = (col[r], r)
        expected = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[: _cap(len(best), ExemplarConfig(**cfg))]
        top = ex[(ex.feature == f) & (ex.kind == "top")].sort_values("rank_or_quantile")
        assert top["split"].eq("train").all()
        assert top["context_id"].tolist() == [c for c, _ in expected]
        np.testing.assert_allclose(top["max_act"], [m for _, (m, _) in expected], rtol=1e-6)
        assert top["max_act"].is_monotonic_decreasing
        for row, (c, (m, r)) in zip(top.itertuples(), expected):
            rows = np.flatnonzero(ctx == c)
            lo, hi = max(rows[0], r - 3), min(rows[-1] + 1, r + 3)
            assert row.max_index == r - lo
            assert list(row.tokens) == index["token"].iloc[lo:hi].tolist()
            np.testing.assert_allclose(row.acts, col[lo:hi], rtol=1e-5, atol=1e-7)
            assert row.acts[row.max_index] == pytest.approx(row.max_act, rel=1e-5)
            assert row.text == docs[row.doc_id][row.char_start[0] : row.char_end[-1]] == " ".join(row.tokens)
            checked += 1
        # the planted direction: feature f's best window peaks on word w_f
        if len(top):
            assert top.iloc[0]["tokens"][top.iloc[0]["max_index"]] == f"w{f}"
    assert checked > 50


def test_quantiles_splits_and_negatives(tmp_path):
    hdir, docs = make_word_harvest(tmp_path, n_docs=60, seed=1)
    sae = word_harvest_sae(k=8)  # noise makes most features fire weakly in many contexts: a wide range
    cfg = ExemplarConfig(n_top=5, n_quantiles=5, per_quantile=3, n_random=8, window_before=2, window_after=1, chunk_rows=64)
    result = mine_exemplars(sae, hdir, docs, tmp_path / "out", cfg, progress=False)
    ex = pd.read_parquet(result.exemplars_path)
    x, index = _read_all(hdir)
    dense = _dense(sae, x)
    per_ctx = pd.DataFrame(dense).groupby(index["context_id"].to_numpy()).max()

    # each (feature, context) at most once -> train and test are disjoint
    assert not ex.duplicated(["feature", "context_id"]).any()
    train = set(zip(ex.feature[ex.split == "train"], ex.context_id[ex.split == "train"]))
    test = set(zip(ex.feature[ex.split == "test"], ex.context_id[ex.split == "test"]))
    assert train and test and not train & test

    wide = 0
    for f in range(32):
        fx = ex[ex.feature == f]
        q = fx[fx.kind == "quantile"]
        ctx_max = per_ctx[f][per_ctx[f] > 0].sort_values()
        rest = ctx_max.drop(fx[fx.kind == "top"]["context_id"])  # activating windows not in top
        if len(rest) >= 3 * cfg.n_quantiles:
            wide += 1
            assert sorted(set(q.rank_or_quantile)) == list(range(cfg.n_quantiles))
            assert len(q) == cfg.n_quantiles * cfg.per_quantile
            by_bin = q.groupby("rank_or_quantile")["max_act"]
            assert (by_bin.max().to_numpy()[:-1] <= by_bin.min().to_numpy()[1:] + 1e-6).all()  # bins ordered
            assert q.max_act.min() <= rest.quantile(0.2) and q.max_act.max() >= rest.quantile(0.8)  # spans range
            # held-out share and stratification: every bin contributes to test
            assert (q.split == "test").sum() == int(np.floor(cfg.test_fraction * len(q) + 0.5))
            assert set(q[q.split == "test"].rank_or_quantile) == set(range(cfg.n_quantiles))
        np.testing.assert_allclose(q["max_act"], ctx_max.loc[q["context_id"]].to_numpy(), rtol=1e-5)
        # negatives: contexts where the feature never fired, per-token acts all zero
        neg = fx[fx.kind == "random"]
        assert len(neg) == min(cfg.n_random, int((per_ctx[f] == 0).sum()))
        assert (per_ctx[f].loc[neg["context_id"]] == 0).all()
        assert all(not np.any(a) for a in neg["acts"]) and (neg.max_act == 0).all()
        assert (neg.split == "train").sum() == (len(neg) + 1) // 2 and (neg.split == "test").sum() == len(neg) // 2
        assert (fx[fx.kind.isin(["top", "quantile"])].max_act > 0).all()
    assert wide >= 10


def test_small_features_keep_a_test_set(tmp_path):
    hdir, docs = make_word_harvest(tmp_path, n_docs=10, seed=2)
    sae = word_harvest_sae(k=1)  # only the planted coordinate fires: few contexts per feature
    result = mine(sae, hdir, docs, tmp_path / "out", n_top=20, n_quantiles=10, per_quantile=4, n_random=4)
    ex, stats = pd.read_parquet(result.exemplars_path), pd.read_parquet(result.stats_path)
    for f, n in zip(stats.feature, stats.n_contexts_active):
        fx = ex[(ex.feature == f) & ex.kind.isin(["top", "quantile"])]
        assert len(fx) == n  # every activating context used exactly once
        if n >= 2:
            assert (fx.split == "test").sum() >= 1 and (fx.split == "train").sum() >= 1


def test_chunking_does_not_change_results_and_encode_sees_only_chunks(tmp_path):
    calls = []

    class RecordingSAE(TopKSAE):
        def encode(self, x):
            calls.append(tuple(x.shape))
            return super().encode(x)

    hdir, docs = make_word_harvest(tmp_path)
    sae = RecordingSAE(SAEConfig(d_in=D, d_sae=1024, k=4))  # d_sae >> rows per chunk
    a = mine(sae, hdir, docs, tmp_path / "a", chunk_rows=7, n_top=4, n_random=4)
    assert calls and max(c[0] for c in calls) <= 7
    b = mine(sae, hdir, docs, tmp_path / "b", chunk_rows=10_000, n_top=4, n_random=4)
    ea, eb = pd.read_parquet(a.exemplars_path), pd.read_parquet(b.exemplars_path)
    assert len(ea) > 0
    pd.testing.assert_frame_equal(ea.drop(columns=["acts", "max_act"]), eb.drop(columns=["acts", "max_act"]))
    np.testing.assert_allclose(ea.max_act, eb.max_act, rtol=1e-5)
    pd.testing.assert_frame_equal(pd.read_parquet(a.stats_path), pd.read_parquet(b.stats_path), rtol=1e-5)


def test_rerun_overwrites_cleanly(tmp_path):
    hdir, docs = make_word_harvest(tmp_path)
    out = tmp_path / "out"
    first = mine(word_harvest_sae(), hdir, None, out, n_top=3)
    assert pd.read_parquet(first.exemplars_path)["text"].isna().all()  # no docs -> no text
    second = mine(word_harvest_sae(), hdir, docs, out, n_top=3)
    ex = pd.read_parquet(second.exemplars_path)
    assert ex["text"].notna().all() and second.n_windows == len(ex)
    assert not list(out.glob(".*.tmp"))
    meta = json.loads((out / "exemplars.json").read_text())
    assert meta["n_windows"] == len(ex) and meta["config"]["n_top"] == 3


def _real_harvest(tiny_model_dirs, text_corpus, hdir, **kw):
    lm = load_model(str(tiny_model_dirs["gpt2"]))
    docs, _ = collect_documents(CorpusConfig(dataset=str(text_corpus), shuffle=False))
    harvest(lm, docs, hdir, HarvestConfig(layer=1, ctx_len=32, shard_tokens=300, **kw), progress=False)
    return {d.doc_id: d.text for d in docs}


def test_planted_token_feature_on_real_harvest(tiny_model_dirs, text_corpus, tmp_path):
    hdir = tmp_path / "h"
    docs = _real_harvest(tiny_model_dirs, text_corpus, hdir)
    x, index = _read_all(hdir)
    assert load_manifest(hdir)["n_shards"] > 1
    # Plant feature 5 = "this token": the direction separating one frequent token's activations from the rest.
    planted = None
    for tok in index["token_id"].value_counts().index[:10]:
        is_tok = torch.tensor((index["token_id"] == tok).to_numpy())
        d = x[is_tok].mean(0) - x[~is_tok].mean(0)
        proj = x @ (d / d.norm())
        if proj[is_tok].min() > proj[~is_tok].max():
            planted = (int(tok), d / d.norm(), float(proj[~is_tok].max() + proj[is_tok].min()) / 2)
            break
    assert planted is not None, "no linearly separable frequent token in the tiny harvest"
    tok, direction, threshold = planted
    sae = create_sae(SAEConfig(d_in=D, d_sae=64, k=4), seed=0)
    with torch.no_grad():
        sae.W_enc[:, 5] = direction * 100
        sae.b_enc[5] = -threshold * 100  # fires exactly on the token, and wins the top-k there
    result = mine(sae.eval(), hdir, docs, tmp_path / "out", n_top=5, n_random=6)
    ex = pd.read_parquet(result.exemplars_path)
    stats = pd.read_parquet(result.stats_path).set_index("feature")
    assert stats.loc[5, "n_active_tokens"] == (index["token_id"] == tok).sum()
    top = ex[(ex.feature == 5) & (ex.kind == "top")]
    assert len(top) > 0
    for row in top.itertuples():
        assert row.token_ids[row.max_index] == tok
        acts = np.asarray(row.acts)
        assert ((acts > 0) == (np.asarray(row.token_ids) == tok)).all()
        doc = docs[row.doc_id]
        assert row.text == doc[row.char_start[0] : row.char_end[-1]]
        assert all(doc[a:b] for a, b in zip(row.char_start, row.char_end))  # every token maps into the doc
    neg = ex[(ex.feature == 5) & (ex.kind == "random")]
    assert len(neg) > 0 and all(tok not in list(t) for t in neg.token_ids)


def test_sequence_level_windows_are_documents(tiny_model_dirs, text_corpus, tmp_path):
    hdir = tmp_path / "h"
    docs = _real_harvest(tiny_model_dirs, text_corpus, hdir, level="sequence")
    sae = create_sae(SAEConfig(d_in=D, d_sae=16, k=3), seed=0)
    result = mine(sae, hdir, docs, tmp_path / "out", n_top=2, n_quantiles=2, per_quantile=1, n_random=2)
    assert result.level == "sequence" and result.n_rows == result.n_contexts == len(docs)
    ex = pd.read_parquet(result.exemplars_path)
    assert len(ex) > 0 and (ex.tokens.map(len) == 1).all() and (ex.max_index == 0).all()
    for row in ex.itertuples():
        assert row.text == docs[row.doc_id][row.char_start[0] : row.char_end[0]][:2000]
        assert len(row.text) > 20
    assert not ex.duplicated(["feature", "context_id"]).any()


def test_user_errors(tmp_path):
    hdir, docs = make_word_harvest(tmp_path)
    with pytest.raises(UserError, match=r"d_in=16.*d_model=32"):
        mine(create_sae(SAEConfig(d_in=16, d_sae=32, k=2)), hdir, docs, tmp_path / "o")
    with pytest.raises(UserError, match="autointerp harvest"):
        mine(word_harvest_sae(), tmp_path / "nowhere", docs, tmp_path / "o")
    manifest = json.loads((hdir / "harvest.json").read_text())
    write_json(hdir / "harvest.json", {**manifest, "complete": False})
    with pytest.raises(UserError, match="incomplete.*autointerp harvest"):
        mine(word_harvest_sae(), hdir, docs, tmp_path / "o")
    write_json(hdir / "harvest.json", manifest)
    with pytest.raises(UserError, match="test_fraction"):
        mine(word_harvest_sae(), hdir, docs, tmp_path / "o", test_fraction=1.5)
    with pytest.raises(UserError, match="not among the supplied documents"):
        mine(word_harvest_sae(), hdir, {"other": "text"}, tmp_path / "o")
    assert not (tmp_path / "o" / "exemplars.parquet").exists()


def test_all_dead_sae_writes_stats_and_empty_exemplars(tmp_path):
    hdir, docs = make_word_harvest(tmp_path, n_docs=4)
    sae = word_harvest_sae()
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)  # nothing ever fires
    result = mine(sae, hdir, docs, tmp_path / "out")
    stats, ex = pd.read_parquet(result.stats_path), pd.read_parquet(result.exemplars_path)
    assert stats["dead"].all() and (stats["n_active_tokens"] == 0).all() and result.n_dead == 64
    assert len(ex) == 0 and "acts" in ex.columns
