"""Matching at pretrained widths: each feature's top partners from the sparse cross-product (compare.candidates)
and a sparse one-to-one assignment (compare.sparse_assignment), checked against the dense correlation matrix and
the dense Hungarian (compare.correlation, compare.matching) where both fit: the same correlations, the same
shared pairs above the null, differences only among below-null pairs (counted); unmatched features counted;
a width over the memory budget refused up front with the setting that fits (compare.matching_plan)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from autointerp.compare.activation import LevelResult, _level_result
from autointerp.compare.candidates import candidate_correlations
from autointerp.compare.config import CompareConfig
from autointerp.compare.correlation import correlate
from autointerp.compare.encode import PooledActivations
from autointerp.compare.matching import hungarian, null_model
from autointerp.compare.matching_plan import dense_gib, plan_matching, sparse_gib
from autointerp.compare.sparse_assignment import sparse_assignment
from autointerp.errors import UserError


def codes(units: int, d_a: int, d_b: int, active: int, seed: int, shared: float = 0.5) -> tuple[sp.csr_matrix, sp.csr_matrix, dict]:
    """Non-negative sparse codes with Zipf feature frequencies (a few dense features, a long rare tail). A
    ``shared`` share of A's features has a twin in B: where one fires in the first half of a unit's slots, its
    twin fires in B's same slot (a noisy copy of the value); every other slot of B is independent."""
    rng = np.random.default_rng(seed)
    pa, pb = (1.0 / np.arange(1, d + 1) for d in (d_a, d_b))
    pa, pb = rng.permutation(pa / pa.sum()), rng.permutation(pb / pb.sum())
    mapping = np.full(d_a, -1)
    twins = rng.permutation(d_a)[: int(d_a * shared)]
    mapping[twins] = rng.permutation(d_b)[: len(twins)]
    ia = rng.choice(d_a, size=(units, active), p=pa)
    ib = rng.choice(d_b, size=(units, active), p=pb)
    copy = (mapping[ia] >= 0) & (np.arange(active) < active // 2)
    ib[copy] = mapping[ia][copy]
    va = rng.gamma(2.0, 1.0, size=(units, active)).astype(np.float32)
    vb = np.where(copy, va * rng.uniform(0.5, 1.5, (units, active)), rng.gamma(2.0, 1.0, (units, active))).astype(np.float32)
    indptr = np.arange(0, units * active + 1, active)
    a = sp.csr_matrix((va.ravel(), ia.ravel(), indptr), shape=(units, d_a))
    b = sp.csr_matrix((vb.ravel(), ib.ravel(), indptr), shape=(units, d_b))
    a.sum_duplicates(), b.sum_duplicates()
    return a, b, {int(i): int(mapping[i]) for i in twins}


def dense_reference(a, b) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(np.hstack([a.toarray(), b.toarray()]).T)[: a.shape[1], a.shape[1]:]


def test_candidates_are_each_features_top_partners_with_exact_correlations():
    a, b, _ = codes(3000, 120, 170, 10, seed=1)
    valid_b = np.ones(170, bool)
    valid_b[:5] = False  # e.g. rare: never a candidate
    rows = np.arange(3000)
    k = 6
    got = candidate_correlations(a, b, rows, rows, k=k, valid_b=valid_b, block_entries=500, progress=False)  # many tiny blocks
    ref = dense_reference(a, b)
    assert np.allclose(got.values, ref[got.rows, got.cols], atol=1e-6) and (got.values > 0).all()
    assert not np.isin(got.cols, np.arange(5)).any()
    masked = np.where(np.isnan(ref) | ~valid_b[None, :], -np.inf, ref)
    cand = set(zip(got.rows.tolist(), got.cols.tolist()))
    for i in range(120):  # every row's k best positive partners are candidates (and symmetrically every column's)
        best = [j for j in np.argsort(-masked[i])[:k] if masked[i, j] > 0]
        assert all((i, j) in cand for j in best), i
    for j in np.flatnonzero(valid_b):
        best = [i for i in np.argsort(-masked[:, j])[:k] if masked[i, j] > 0]
        assert all((i, j) in cand for i in best), j
    # the pair lookup: candidates exact, anything else NaN
    assert np.allclose(got.pair_values(got.rows[:50], got.cols[:50]), got.values[:50])
    off = [(i, j) for i in range(120) for j in range(170) if (i, j) not in cand][:20]
    assert np.isnan(got.pair_values(np.array([p[0] for p in off]), np.array([p[1] for p in off]))).all()
    # each side's top k is kept: never fewer than min(k, positive partners) per live feature
    per_row = np.bincount(got.rows, minlength=120)
    assert (per_row >= np.minimum(k, (masked > 0).sum(1))).all()


def test_top_k_per_run_with_a_sampled_cut_equals_a_full_sort():
    """The per-row selection cuts long runs at a sampled lower bound before sorting: same result as sorting all,
    on shuffled, ascending and descending runs and ties, whatever the sample width."""
    from autointerp.compare.candidates import _top_k_runs, _top_k_sorted

    rng = np.random.default_rng(5)
    counts = np.r_[rng.integers(0, 40, 50), rng.integers(500, 3000, 20), 0, 7]
    values = rng.random(counts.sum()).astype(np.float32)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    for i in range(0, 20, 3):  # some runs ascending, some descending, one all tied
        run = slice(starts[50 + i], starts[50 + i] + counts[50 + i])
        values[run] = np.sort(values[run])[:: 1 if i % 2 else -1]
    values[starts[51]: starts[51] + counts[51]] = 0.5
    group = np.repeat(np.arange(len(counts)), counts)
    want = np.sort(_top_k_sorted(group, values, 8))
    for cells in (64, 4096, 1 << 22):
        got = np.sort(_top_k_runs(counts, values, 8, cells=cells))
        tie = group[got] == 51  # tied run: any 8 of its entries are its top 8
        assert np.array_equal(got[~tie], want[group[want] != 51]) and tie.sum() == 8


def test_sparse_assignment_is_the_maximum_weight_matching_of_the_candidates():
    """With every positive pair a candidate, its summed correlation equals the dense Hungarian's on max(corr, 0)."""
    rng = np.random.default_rng(2)
    for d_a, d_b in ((40, 60), (60, 40), (50, 50)):
        m = rng.uniform(-0.3, 1.0, (d_a, d_b)) * (rng.random((d_a, d_b)) < 0.3)
        r, c = np.nonzero(m > 0)
        got = sparse_assignment(r, c, m[r, c])
        dense = hungarian(np.maximum(m, 0))
        assert got.values.sum() == pytest.approx(dense.values.sum(), abs=1e-9)
        assert len(set(got.rows.tolist())) == len(got.rows) and len(set(got.cols.tolist())) == len(got.cols)
        assert np.array_equal(got.values, m[got.rows, got.cols]) and (got.values > 0).all()
        # and its LP duals certify it: u, v >= 0, corr <= u + v on every candidate, equal on the matched ones,
        # sum(u) + sum(v) = the matched sum (what compare.sparse_matching checks the left-out pairs against)
        got, duals = sparse_assignment(r, c, m[r, c], duals=True)
        u, v = np.zeros(d_a), np.zeros(d_b)
        u[duals.rows], v[duals.cols] = duals.u, duals.v
        assert (u >= 0).all() and (v >= 0).all() and (u[r] + v[c] >= m[r, c] - 1e-12).all()
        assert np.allclose(u[got.rows] + v[got.cols], got.values) and u.sum() + v.sum() == pytest.approx(got.values.sum())
    # a feature whose only partner is taken by a better pair stays unmatched (dense would force it onto a 0)
    lone = sparse_assignment(np.array([0, 1]), np.array([0, 0]), np.array([0.9, 0.4]))
    assert lone.rows.tolist() == [0] and lone.cols.tolist() == [0]
    assert len(sparse_assignment(np.zeros(0, int), np.zeros(0, int), np.zeros(0)).rows) == 0


def _levels(a, b, docs: int, **settings) -> dict[str, LevelResult]:
    units = a.shape[0]
    offsets = np.linspace(0, units, docs + 1).astype(np.int64)
    covered = np.ones(units, bool)
    out = {}
    for method in ("dense", "sparse"):
        cfg = CompareConfig(matching=method, **settings)
        out[method] = _level_result("word", PooledActivations(a, covered), PooledActivations(b, covered), offsets, cfg, progress=False)
    return out


def _agreement(levels: dict[str, LevelResult]) -> dict:
    """Shared pairs of each path, the pairs the two matchings disagree on, and the largest value among those."""
    pairs, shared = {}, {}
    for method, r in levels.items():
        v = r.assignment.values
        pairs[method] = dict(zip(zip(r.assignment.rows.tolist(), r.assignment.cols.tolist()), v.tolist()))
        shared[method] = {p for p, x in pairs[method].items() if x > r.null.threshold}
    differ = set(pairs["dense"]) ^ set(pairs["sparse"])
    top = max((pairs["dense"].get(p, pairs["sparse"].get(p)) for p in differ), default=-1.0)
    return {"shared": shared, "differ": differ, "max_differ": top}


def test_agrees_with_dense_hungarian_above_the_null_on_synthetic_codes():
    """Real pipeline (``_level_result``: correlation, rare features, assignment, derangement nulls) both ways."""
    a, b, mapping = codes(6000, 1500, 2000, 16, seed=3)  # wide for its units: a rare tail, many weak pairs
    levels = _levels(a, b, docs=100, candidates=8)
    dense, sparse = levels["dense"], levels["sparse"]
    got = _agreement(levels)
    assert sparse.null.threshold == pytest.approx(dense.null.threshold, abs=2e-3)
    assert got["shared"]["dense"] == got["shared"]["sparse"] and len(got["shared"]["dense"]) > 250
    assert sum(mapping.get(i) == j for i, j in got["shared"]["dense"]) >= 0.95 * len(got["shared"]["dense"])  # the planted twins
    # the matchings may differ only below the null (pairs the dense one forces at a correlation <= 0, which the
    # sparse one leaves unmatched); here, the candidates extended by the exact check, not at all
    assert len(got["differ"]) < 0.1 * len(dense.assignment.values)
    assert got["max_differ"] <= min(dense.null.threshold, sparse.null.threshold)
    check = sparse.summary()["exact_check"]
    assert check["certified"] and check["added_pairs"] > 0  # 8 candidates alone miss some dense pairs
    s = sparse.summary()
    assert s["matching"] == "sparse" and s["candidates"] == 8 and dense.summary()["matching"] == "dense"
    assert s["n_pairs"] + s["n_unmatched_a"] == dense.summary()["n_pairs"] + dense.summary()["n_unmatched_a"]
    assert dense.summary()["null_unmatched"] == 0
    assert len(sparse.null.samples) + sparse.null.n_unmatched == len(dense.null.samples)
    print(f"agreement: {len(got['shared']['dense'])} shared pairs identical; {len(got['differ'])} pairs differ, "
          f"all below the null (max {got['max_differ']:.3f} vs threshold {dense.null.threshold:.3f})")


def test_features_without_a_candidate_stay_unmatched_and_are_counted():
    a, b, _ = codes(4000, 60, 80, 8, seed=4)
    a, b = a.tolil(), b.tolil()
    a[:2000, 59] = 0.0  # feature 59 of A fires only on units 2000.. where B is silent: no positive partner
    a[2000:, 59] = 1.0 + np.arange(2000)[:, None] % 3
    b[2000:, :] = 0.0
    a, b = a.tocsr(), b.tocsr()
    a.eliminate_zeros(), b.eliminate_zeros()
    levels = _levels(a, b, docs=40, candidates=4, min_null_samples=10)
    s = levels["sparse"].summary()
    assert s["n_no_candidate_a"] >= 1 and 59 not in levels["sparse"].assignment.rows
    assert s["n_unmatched_a"] >= s["n_no_candidate_a"]
    assert 59 in levels["dense"].assignment.rows  # the dense Hungarian pairs it anyway, at a correlation <= 0
    dense_59 = levels["dense"].assignment.values[levels["dense"].assignment.rows == 59][0]
    assert dense_59 <= 0


def test_null_unmatched_slots_count_below_every_sample():
    samples = [np.linspace(0.0, 0.5, 90)]
    padded = null_model(samples, 0.05, n_unmatched=10)
    assert padded.threshold == pytest.approx(np.quantile(np.r_[np.full(10, -1.0), samples[0]], 0.95))
    assert padded.p_values(np.array([0.6]))[0] == pytest.approx(1 / 101)
    assert null_model(samples, 0.05).n_unmatched == 0


def test_a_width_that_cannot_fit_is_refused_up_front_with_the_setting_that_fits():
    cfg = CompareConfig(memory_gib=20)
    assert plan_matching(cfg, 3072, 5120).method == "dense"  # default widths: the (faster) dense path
    assert plan_matching(cfg, 65_536, 131_072).method == "sparse"
    assert dense_gib(65_536, 131_072) > 200 and sparse_gib(65_536, 131_072, 32) < 20
    with pytest.raises(UserError) as dense:
        plan_matching(dataclasses.replace(cfg, matching="dense"), 65_536, 131_072)
    msg = str(dense.value)
    assert "\n" not in msg and "GiB" in msg and 'matching = "sparse"' in msg, msg
    with pytest.raises(UserError) as sparse:
        plan_matching(dataclasses.replace(cfg, memory_gib=1.5, candidates=64), 65_536, 131_072)
    msg = str(sparse.value)
    assert "\n" not in msg and "candidates = " in msg and "1.5 GiB" in msg, msg
    fix = int(msg.split("candidates = ")[-1].split()[0])
    plan_matching(dataclasses.replace(cfg, memory_gib=1.5, candidates=fix), 65_536, 131_072)  # the named setting fits
    with pytest.raises(UserError, match="max_tokens"):
        plan_matching(dataclasses.replace(cfg, memory_gib=1.5), 65_536, 131_072, nnz=10**9)
    with pytest.raises(UserError, match="matching"):
        CompareConfig(matching="fast").validate()


def test_compare_stage_sparse_agrees_with_dense_on_a_synthetic_run(tmp_path, monkeypatch):
    """The whole compare stage on the synthetic two-model run (real harvest shards, SAEs, two tokenizations):
    the sparse path (4 candidates per feature) finds the dense path's shared pairs; its level cache holds
    candidate lists, no matrix, and a re-run from that cache gives the same tables."""
    from autointerp.compare import activation
    from autointerp.compare.stage import compare_models
    from autointerp.config import ModelEntry, RunConfig
    from autointerp.rundir.layout import RunDir
    from safetensors.numpy import load_file
    from helpers.runs import SyntheticSpec, make_synthetic_run

    run = make_synthetic_run(tmp_path / "run", SyntheticSpec(n_dead_a=3, n_dead_b=5, d_a=72, d_b=96))
    cfg = RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    cfg.compare = dataclasses.replace(cfg.compare, representation=False, bootstrap=20, document_level=False)
    dense = compare_models(cfg, cfg.models, progress=False)[0]
    shared = {}
    for method, outcome in (("dense", dense),):
        m = pd.read_parquet(outcome.out_dir / "matches.parquet")
        shared[method] = set(zip(m.loc[m["shared"], "feature_a"], m.loc[m["shared"], "feature_b"]))
    cfg.compare = dataclasses.replace(cfg.compare, matching="sparse", candidates=4)
    sparse = compare_models(cfg, cfg.models, progress=False, overwrite=True)[0]
    m = pd.read_parquet(sparse.out_dir / "matches.parquet")
    shared["sparse"] = set(zip(m.loc[m["shared"], "feature_a"], m.loc[m["shared"], "feature_b"]))
    assert shared["sparse"] == shared["dense"] and len(shared["dense"] & run.truth) >= 0.95 * len(run.truth)
    s, d = sparse.stats, dense.stats
    assert (s["matching"], d["matching"]) == ("sparse", "dense") and s["levels"]["word"]["candidates"] == 4
    assert s["null"]["threshold"] == pytest.approx(d["null"]["threshold"], abs=0.01)
    assert s["activation"]["n_pairs"] + s["n_unmatched_a"] == d["activation"]["n_pairs"] + d["n_unmatched_a"]
    assert s["n_no_candidate_a"] <= s["n_unmatched_a"] and "n_unmatched_a" in s["definitions"]
    cache = RunDir(run.run_dir).pair(*run.slugs).cache_file("word")
    tensors = load_file(str(cache))
    assert "corr" not in tensors and len(tensors["cand_values"]) <= 4 * 2 * (72 + 96)
    (sparse.out_dir / "matches.parquet").unlink()  # outputs missing: redone from the level cache, not recomputed
    monkeypatch.setattr(activation, "pool_harvest", lambda *a, **k: pytest.fail("the cached level was recomputed"))
    again = compare_models(cfg, cfg.models, progress=False)[0]
    pd.testing.assert_frame_equal(pd.read_parquet(again.out_dir / "matches.parquet"), m)


def test_compare_stage_refuses_a_width_over_budget_before_encoding(tmp_path, monkeypatch):
    from autointerp.compare import activation
    from autointerp.compare.stage import compare_models
    from autointerp.config import ModelEntry, RunConfig
    from helpers.runs import SyntheticSpec, make_synthetic_run

    run = make_synthetic_run(tmp_path / "run", SyntheticSpec(n_docs=10))
    cfg = RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    cfg.compare = dataclasses.replace(cfg.compare, matching="dense", memory_gib=1e-4, representation=False)
    monkeypatch.setattr(activation, "pool_harvest", lambda *a, **k: pytest.fail("encoded before refusing"))
    with pytest.raises(UserError, match=r"matching 64 x 80 latents densely needs ~[\d.]+ GiB, over the 0\.0001 GiB budget"):
        compare_models(cfg, cfg.models, progress=False)


def test_the_exact_check_stays_bounded_on_unstructured_codes():
    """Codes with no shared structure (every correlation weak, thousands nearly tied: what random-projection SAEs
    give): each round of the check adds at most ``per_row`` violations per A feature, so it cannot grow to 10^8
    pairs; the result is certified or says it is not, and the matching is still one-to-one on the candidates."""
    from autointerp.compare.candidates import PartnerScan
    from autointerp.compare.sparse_matching import certify

    a, b, _ = codes(3000, 600, 900, 24, seed=5, shared=0.0)
    rows = np.arange(a.shape[0])
    scan = PartnerScan(a, b, rows, rows)
    start = scan.top_k(4, progress=False)
    cand, assign, info = certify(scan, start, max_rounds=3, per_row=2)
    assert info["added_pairs"] <= 3 * 2 * a.shape[1]
    assert len(cand.values) <= len(start.values) + info["added_pairs"]
    assert len(set(assign.rows.tolist())) == len(assign.rows) and len(set(assign.cols.tolist())) == len(assign.cols)
    assert info["certified"] or info["violations_last_round"] > 0
    uncapped = certify(scan, start, max_rounds=1, per_row=10_000)[2]
    one = certify(scan, start, max_rounds=1, per_row=1)[2]
    assert one["violations_last_round"] == uncapped["violations_last_round"] == uncapped["added_pairs"] > 0  # all found, ...
    assert one["added_pairs"] < uncapped["added_pairs"]  # ... one per A feature kept
