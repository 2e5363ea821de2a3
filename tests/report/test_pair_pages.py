"""Pair pages, activation histograms and logit effects on a synthetic run with a known answer.

The synthetic run (tests/helpers/runs.py) has real harvest shards, SAEs and documents; ``truth`` says
which feature pairs encode the same concept. Everything the pages show is checked against an independent
computation: the word-pooled activations come from compare's own pooling (``pool_harvest``), the
histograms from encoding the shards directly, the logit effects from the final-norm formula written out
by hand for LayerNorm (GPT-2) and Gemma's RMSNorm (``1 + w``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.runs import SyntheticSpec, make_synthetic_run

from autointerp.compare.encode import pool_harvest
from autointerp.compare.tables import MATCHES_SCHEMA, write_parquet
from autointerp.compare.units import WORD_PATTERN, WordIndex
from autointerp.config import ModelEntry, RunConfig
from autointerp.data.corpus import load_saved_documents
from autointerp.exemplars.logit_effects import logit_effects
from autointerp.harvest.shards import read_shard
from autointerp.io import read_json, write_json
from autointerp.report import page_data
from autointerp.report.artifacts import load_run_inputs
from autointerp.report.pair_windows import SILENT
from autointerp.report.stage import report_stage
from autointerp.rundir.layout import RunDir
from autointerp.sae.saelens import load_sae

SPEC = SyntheticSpec(n_docs=30, n_shared=8, n_a_only=8, n_b_only=8, d_a=32, d_b=32, k=6)


def _encode_all(run_dir, slug):
    """Every token's SAE activations, straight from the shards: [rows, d_sae]."""
    folder = RunDir(run_dir).model(slug)
    sae = load_sae(folder.sae_dir)
    manifest = read_json(folder.manifest)
    out = []
    for s in manifest["shards"]:
        acts, _ = read_shard(folder.harvest, s["index"])
        with torch.no_grad():
            enc = sae.encode(acts.float())
        dense = torch.zeros(acts.shape[0], sae.cfg.d_sae).scatter_(1, enc.top_indices, enc.top_acts.float())
        out.append(dense.numpy())
    return np.concatenate(out)


def _prepare(root, tiny_causal=None, tiny_encoder=None):
    run = make_synthetic_run(root / "run", SPEC)
    rd = RunDir(run.run_dir)
    for slug, tiny in zip(run.slugs, (tiny_causal, tiny_encoder)):
        dense = _encode_all(run.run_dir, slug)
        n_active = (dense > 0).sum(0)
        pd.DataFrame({"feature": np.arange(dense.shape[1], dtype=np.int32), "n_active_tokens": n_active.astype(np.int64),
                      "density": n_active / len(dense), "max_act": dense.max(0).astype(np.float32),
                      "mean_act": np.where(n_active > 0, dense.sum(0) / np.maximum(n_active, 1), 0.0).astype(np.float32),
                      "n_contexts_active": n_active.astype(np.int64), "dead": n_active == 0}).to_parquet(rd.model(slug).feature_stats)
        if tiny is not None:
            manifest = read_json(rd.model(slug).manifest)
            manifest["model"] = {"path": str(tiny), "spec": str(tiny)}
            write_json(rd.model(slug).manifest, manifest)
    truth = sorted(run.truth)
    rng = np.random.default_rng(0)
    others = [(int(a), int(b)) for a, b in zip(rng.permutation(SPEC.n_shared + SPEC.n_a_only)[:4], rng.permutation(SPEC.n_shared + SPEC.n_b_only)[:4])
              if (int(a), int(b)) not in run.truth]
    rows = [{"feature_a": a, "feature_b": b, "method": "activation", "activation_corr": 0.9 if (a, b) in run.truth else 0.05,
             "label_similarity": np.nan, "p_value": 0.001, "shared": (a, b) in run.truth, "combined_score": 0.0, "combined_rank": i + 1,
             "label_a": None, "label_b": None, "domain": None, "activation_confidence": 0.99, "label_confidence": np.nan,
             "kind": "contextual" if (a, b) in run.truth else "unshared", "contextual_corr": 0.5, "lexical_null_corr": 0.1,
             "word_share_a": 0.2, "word_share_b": 0.2} for i, (a, b) in enumerate(truth + others)]
    pair = rd.pair(*run.slugs)
    pair.root.mkdir(parents=True)
    write_parquet(pd.DataFrame(rows), pair.matches, MATCHES_SCHEMA)
    write_json(pair.stats, {"unit": "word", "null": {"threshold": 0.3, "alpha": 0.01, "method": "derangement", "n_samples": 100}})
    cfg = RunConfig(name="synth", run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    cfg.report.plots = False  # the plots are not what these tests are about
    return run, cfg, truth, others


@pytest.fixture(scope="module")
def synth(tmp_path_factory, tiny_model_dirs):
    root = tmp_path_factory.mktemp("pairs")
    run, cfg, truth, others = _prepare(root, tiny_model_dirs["gpt2"], tiny_model_dirs["bert"])
    outcome = report_stage(cfg, progress=False)
    return run, cfg, truth, others, outcome


def test_pair_windows_are_compares_word_pooling_and_sections_mean_what_they_say(synth):
    run, cfg, truth, others, _ = synth
    docs = load_saved_documents(RunDir(run.run_dir).corpus)
    words = WordIndex.build(docs)
    doc_index_of = {d.doc_id: i for i, d in enumerate(docs)}
    pooled = {}
    for slug in run.slugs:
        folder = RunDir(run.run_dir).model(slug)
        pooled[slug] = pool_harvest(load_sae(folder.sae_dir), folder.harvest, read_json(folder.manifest), doc_index_of, words, progress=False)["word"]
    pa_, pb_ = pooled[run.slugs[0]], pooled[run.slugs[1]]
    covered = pa_.covered & pb_.covered
    stored = page_data.pw.read(RunDir(run.run_dir).pair(*run.slugs).pair_windows,
                               {"a": page_data._identity(load_run_inputs(cfg).model(run.slugs[0])),
                                "b": page_data._identity(load_run_inputs(cfg).model(run.slugs[1])),
                                "documents": page_data.file_sha256(RunDir(run.run_dir).documents), "params": page_data.pw.identity_params()},
                               truth + others)
    assert stored is not None  # written by the report, keyed by what it was made from
    both_share = {}
    for fa, fb in truth + others:
        xa = pa_.matrix[:, fa].toarray().ravel() * covered
        xb = pb_.matrix[:, fb].toarray().ravel() * covered
        s = stored.summary[(fa, fb)]
        assert s.max_a == pytest.approx(xa.max(), rel=1e-5) and s.max_b == pytest.approx(xb.max(), rel=1e-5)
        na, nb = xa / xa.max(), xb / xb.max()
        assert s.n_both == int(((na > 0) & (nb > 0)).sum())
        both_share[(fa, fb)] = s.n_both / max(1, s.n_both + s.n_a_only + s.n_b_only)
        windows = stored.of(fa, fb)
        best = next((r for r in windows if r.section == "both" and r.rank == 0), None)
        if s.n_both:
            # the first "both" window is centred on the unit with the largest min(normalised A, normalised B)
            assert min(best.act_a[best.center] / s.max_a, best.act_b[best.center] / s.max_b) == pytest.approx(np.minimum(na, nb).max(), rel=1e-5)
        for r in windows:
            a, b = r.act_a[r.center] / s.max_a, r.act_b[r.center] / s.max_b
            assert {"both": a > 0 and b > 0, "a_only": a > 0 and b < SILENT, "b_only": b > 0 and a < SILENT}[r.section]
            for start, end in zip(r.word_start, r.word_end):
                assert WORD_PATTERN.fullmatch(r.text[start:end])  # every shaded span is one word unit of the document
            assert r.text in next(d.text for d in docs if d.doc_id == r.doc_id)
    # pairs encoding the same concept fire together far more often than unrelated pairs
    assert min(both_share[p] for p in truth) > max(both_share[p] for p in others)


def test_histograms_count_every_firing_token(synth):
    run, cfg, *_ = synth
    data = page_data.collect(load_run_inputs(cfg), {}, {}, persist=False)
    for slug in run.slugs:
        dense = _encode_all(run.run_dir, slug)
        hist = data.histograms[slug]
        for f in range(dense.shape[1]):
            counts, top = hist[f]
            assert counts.sum() == (dense[:, f] > 0).sum()
            if top > 0:  # the largest activation lands in the last bin
                assert counts[-1] >= 1 and top == pytest.approx(dense[:, f].max(), rel=1e-6)


def test_pages_link_pairs_both_ways_and_report_rows_link_pair_pages(synth):
    run, cfg, truth, others, outcome = synth
    pages = RunDir(run.run_dir).report.pages
    a, b = run.slugs
    for fa, fb in truth + others:
        page = pages / "pairs" / f"{a}__{b}" / f"{fa}-{fb}.html"
        html = page.read_text(encoding="utf-8")
        for section in ("both", "a_only", "b_only"):
            assert f"id=\"{section}\"" in html
        assert "0.300" in html  # the null threshold
        assert f"../../{a}/{fa}.html" in html and f"../../{b}/{fb}.html" in html
        assert f"../pairs/{a}__{b}/{fa}-{fb}.html" in (pages / a / f"{fa}.html").read_text(encoding="utf-8")
        assert f"../pairs/{a}__{b}/{fa}-{fb}.html" in (pages / b / f"{fb}.html").read_text(encoding="utf-8")
        assert re.search(rf"\[side by side\]\(pages/pairs/{a}__{b}/{fa}-{fb}\.html\)", outcome.report.read_text(encoding="utf-8"))
    for name in ("by_contextual.html", "by_correlation.html", "by_density.html", "by_label_score.html"):
        assert (pages / name).is_file() and f"href=\"{name}\"" in (pages / "index.html").read_text(encoding="utf-8")
    # the causal model (a tiny GPT-2 behind synth-a) gets a logit table, the encoder (tiny BERT) a reason
    assert "<div class=\"logits\">" in (pages / a / f"{truth[0][0]}.html").read_text(encoding="utf-8")
    assert "not a causal language model" in (pages / b / f"{truth[0][1]}.html").read_text(encoding="utf-8")


def test_stored_page_data_is_reused_and_extended(synth):
    run, cfg, truth, others, _ = synth
    rd = RunDir(run.run_dir)
    files = [rd.pair(*run.slugs).pair_windows, rd.model(run.slugs[0]).activation_histogram, rd.model(run.slugs[0]).logit_effects]
    before = [p.stat().st_mtime_ns for p in files]
    inputs = load_run_inputs(cfg)
    key = f"{run.slugs[0]}__{run.slugs[1]}"
    data = page_data.collect(inputs, {key: truth}, {run.slugs[0]: [f for f, _ in truth]}, persist=True)
    assert [p.stat().st_mtime_ns for p in files] == before and set(truth) <= set(data.pairs[key].summary)
    extra = (SPEC.n_shared + SPEC.n_a_only - 1, 0)
    if extra in set(truth) | set(others):
        extra = (extra[0], 1)
    data = page_data.collect(inputs, {key: truth + [extra]}, {}, persist=True)
    assert extra in data.pairs[key].summary and files[0].stat().st_mtime_ns != before[0]


def test_report_elsewhere_only_reads_the_run(tmp_path):
    run, cfg, truth, _ = _prepare(tmp_path)
    outcome = report_stage(cfg, tmp_path / "elsewhere", progress=False)
    rd = RunDir(run.run_dir)
    assert not rd.pair(*run.slugs).pair_windows.exists() and not rd.model(run.slugs[0]).activation_histogram.exists()
    fa, fb = truth[0]
    page = tmp_path / "elsewhere" / "pages" / "pairs" / f"{run.slugs[0]}__{run.slugs[1]}" / f"{fa}-{fb}.html"
    assert "class=\"window pair\"" in page.read_text(encoding="utf-8") and outcome.pages_index.is_file()


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_logit_effects_follow_the_final_norm_and_unembedding(tiny_model_dirs, family):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_dirs[family]
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    d = model.config.hidden_size
    w_dec = torch.randn(6, d, generator=torch.Generator().manual_seed(1))
    frame = logit_effects(model, "transformer.h" if family == "gpt2" else "model.layers", tok, w_dec, range(6), top_n=4)
    w_u = model.get_output_embeddings().weight.detach()
    for f in range(6):
        x = w_dec[f] / w_dec[f].norm() * d ** 0.5
        if family == "gpt2":  # LayerNorm: centre, scale to unit variance, times gamma (the bias cancels)
            ln = model.transformer.ln_f
            y = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + ln.eps) * ln.weight.detach()
        else:  # Gemma's RMSNorm multiplies by (1 + w)
            norm = model.model.norm
            y = x / torch.sqrt((x ** 2).mean() + norm.eps) * (1 + norm.weight.detach())
        logits = w_u @ y
        rows = frame[frame["feature"] == f]
        up = rows[rows["direction"] == "up"].sort_values("rank")
        down = rows[rows["direction"] == "down"].sort_values("rank")
        assert up["token_id"].tolist() == torch.topk(logits, 4).indices.tolist()
        assert down["token_id"].tolist() == torch.topk(-logits, 4).indices.tolist()
        assert np.allclose(up["effect"].to_numpy(), torch.topk(logits, 4).values.numpy(), rtol=1e-4, atol=1e-4)
