"""The crosscoder across two tokenizers: ground truth from a synthetic pair, save/load, the classes, the CLI.

The synthetic pair (helpers/runs.py's make_synthetic_run) is built from a shared part and two exclusive parts of a known
dictionary, written into each model's space through its own random rotation, with different
tokenizations (B splits every word in two); the crosscoder must find each part in the right class with
decoder directions at cosine > 0.9 to the truth in the right model's space. Every document of the trained
run also carries a hostile markup fragment (its punctuation and words are ordinary word units with codes),
so the latent pages must render it inert.
"""

from __future__ import annotations

import dataclasses


import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from autointerp.cli import app
from autointerp.config import RunConfig
from autointerp.crosscode.analysis import class_summary
from autointerp.crosscode.config import CrosscodeConfig
from autointerp.crosscode.model import CrossCoder, load_crosscoder, save_crosscoder
from autointerp.crosscode.posthoc import agreement
from autointerp.crosscode.stage import crosscode_stage
from autointerp.errors import UserError
from autointerp.rundir.layout import RunDir
from autointerp.sae.saelens import load_sae
from autointerp.cli import stage
from helpers.runs import SyntheticSpec, make_synthetic_run, synthetic_codes, synthetic_documents
from helpers.crosscode_fixture import SPEC, _chosen, _config


@pytest.fixture(scope="module")
def trained(crosscoded):
    return crosscoded


def _cos(decoder: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    f = torch.nn.functional.normalize
    return (f(decoder.double(), dim=1) @ f(truth.double(), dim=1).T).numpy()


@pytest.mark.slow
def test_recovers_shared_and_exclusive_parts_in_the_right_space(trained):
    run, _cfg, summary, reused = trained
    assert not reused
    out = RunDir(run.run_dir).crosscoder(*run.slugs)
    cc = load_crosscoder(out.root)
    latents = pd.read_parquet(out.latents)
    dec_a, dec_b = cc.split(cc.W_dec.detach())
    cos_a = _cos(dec_a, load_sae(RunDir(run.run_dir).model(run.slugs[0]).sae_dir).W_dec.detach())
    cos_b = _cos(dec_b, load_sae(RunDir(run.run_dir).model(run.slugs[1]).sae_dir).W_dec.detach())
    cls = latents["class"].to_numpy()
    found = {"shared": 0, "a_only": 0, "b_only": 0}
    for concept in range(SPEC.n_shared + SPEC.n_a_only + SPEC.n_b_only):
        ja, jb = np.flatnonzero(run.concept_of_a == concept), np.flatnonzero(run.concept_of_b == concept)
        if len(ja) and len(jb):
            found["shared"] += bool(((cos_a[:, ja[0]] > 0.9) & (cos_b[:, jb[0]] > 0.9) & (cls == "shared")).any())
        elif len(ja):
            found["a_only"] += bool(((cos_a[:, ja[0]] > 0.9) & (cls == "a_only")).any())
        else:
            found["b_only"] += bool(((cos_b[:, jb[0]] > 0.9) & (cls == "b_only")).any())
    assert found["shared"] >= 0.9 * SPEC.n_shared, found
    assert found["a_only"] >= 0.9 * SPEC.n_a_only, found
    assert found["b_only"] >= 0.9 * SPEC.n_b_only, found
    # an exclusive latent's other-side decoder part is near zero, and Latent Scaling agrees
    excl = latents[latents["class"].isin(["a_only", "b_only"])]
    assert (excl["relative_norm"].sub(0.5).abs() > 0.4).all()
    assert (excl["nu_error"] < 0.3).all()
    # per-model metrics on held-out units: both models reconstructed
    fvu = summary["metrics"]["fvu"]
    assert max(fvu.values()) < 0.1, fvu
    assert summary["n_eval_units"] > 0 and summary["n_train_units"] > summary["n_eval_units"]


@pytest.mark.slow
def test_posthoc_view_agrees_on_the_shared_set(trained):
    run, _cfg, summary, _ = trained
    post = summary["posthoc"]
    assert post["available"]
    assert post["posthoc_shared_in_crosscoder"] >= 0.9, post
    assert post["crosscoder_shared_in_posthoc"] >= 0.9, post
    latents = pd.read_parquet(RunDir(run.run_dir).crosscoder(*run.slugs).latents)
    shared = latents[(latents["class"] == "shared") & (latents["corr_a"] >= 0.9) & (latents["corr_b"] >= 0.9)]
    pairs = set(zip(shared["best_a"].astype(int), shared["best_b"].astype(int)))
    assert len(pairs & run.truth) >= 0.9 * len(run.truth)
    # exclusive latents map, on their own side, to an SAE feature of an exclusive concept
    a_only = latents[latents["class"] == "a_only"]
    assert (run.concept_of_a[a_only["best_a"].to_numpy()] >= SPEC.n_shared).mean() >= 0.9


@pytest.mark.slow
def test_per_model_l0_and_dead_latents_match_the_ground_truth(trained):
    from autointerp.compare.encode import pool_harvest
    from autointerp.compare.units import WordIndex
    from autointerp.data.corpus import load_saved_documents

    run, _cfg, summary, _ = trained
    per = summary["metrics"]["per_model"]
    latents = pd.read_parquet(RunDir(run.run_dir).crosscoder(*run.slugs).latents)
    r, fires = latents["relative_norm"].to_numpy(), latents["class"].to_numpy() != "dead"
    a, b = run.slugs
    # a latent counts for A unless its decoder norm is (almost) all B's, and the other way round
    assert per[a]["n_latents"] == int((r <= 0.9).sum()) and per[b]["n_latents"] == int((r >= 0.1).sum())
    assert per[a]["n_live"] == int(((r <= 0.9) & fires).sum()) and per[a]["n_dead"] == int(((r <= 0.9) & ~fires).sum())
    assert per[b]["unused_fraction"] == pytest.approx(1 - ((r >= 0.1) & fires).sum() / len(r))
    # every concept a model uses has a live latent for it: 32 shared + 32 A-only for A, 32 + 48 for B
    assert SPEC.n_shared + SPEC.n_a_only <= per[a]["n_live"] <= 1.25 * (SPEC.n_shared + SPEC.n_a_only)
    assert SPEC.n_shared + SPEC.n_b_only <= per[b]["n_live"] <= 1.25 * (SPEC.n_shared + SPEC.n_b_only)
    # L0 per model against the truth: the model's own SAE (its true dictionary) on the same word units
    docs = load_saved_documents(RunDir(run.run_dir).corpus)
    words = WordIndex.build(docs)
    from autointerp.compare.inputs import ready_inputs as side

    for slug in run.slugs:
        m = side(RunDir(run.run_dir).model(slug), slug)
        pooled = pool_harvest(load_sae(m.sae_dir), m.harvest_dir, m.manifest, {d.doc_id: i for i, d in enumerate(docs)}, words,
                              progress=False, label=slug)["word"]
        true_l0 = float(np.diff(pooled.matrix.tocsr()[np.flatnonzero(pooled.covered)].indptr).mean())
        assert per[slug]["l0"] == pytest.approx(true_l0, rel=0.15), (slug, per[slug]["l0"], true_l0)
    assert per[a]["l0"] + per[b]["l0"] > summary["metrics"]["l0"]  # shared latents count for both


@pytest.mark.slow
def test_rerun_reuses_and_changed_settings_are_refused(trained):
    run, cfg, summary, _ = trained
    out = RunDir(run.run_dir).crosscoder(*run.slugs)
    stamps = [p.stat().st_mtime_ns for p in (out.latent_exemplars, out.latent_labels)]
    (again, reused), = crosscode_stage(cfg, progress=False)
    assert reused and again["classes"] == summary["classes"]
    assert [p.stat().st_mtime_ns for p in (out.latent_exemplars, out.latent_labels)] == stamps  # the latent steps reused too
    changed = dataclasses.replace(cfg, crosscode=CrosscodeConfig(d_sae=128, k=6, epochs=12, batch_size=256))  # the shared run's cfg stays as trained
    with pytest.raises(UserError, match="d_sae"):
        crosscode_stage(changed, progress=False)


def test_save_load_round_trip_acts_on_raw_activations(tmp_path):
    torch.manual_seed(0)
    cc = CrossCoder(5, 7, 16, 3, scales=(0.01, 4.0))
    with torch.no_grad():
        cc.W_dec.mul_(torch.rand(16, 1) + 0.5)
        cc.b_dec.normal_()
        cc.threshold.fill_(0.05)
    cc.eval()
    x = torch.randn(40, 12) * torch.cat([torch.full((5,), 100.0), torch.ones(7)])
    save_crosscoder(cc, tmp_path, {"models": ["a", "b"]})
    back = load_crosscoder(tmp_path)
    for mine, theirs in zip(cc.encode(x), back.encode(x)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(back.relative_norms(), cc.relative_norms(), rtol=1e-5, atol=1e-6)
    # the saved tensors act on raw inputs: pre-activation from the per-model parts equals the module's
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "crosscoder.safetensors"))
    pre = torch.relu((x[:, :5] - t["b_dec_a"]) @ t["W_enc_a"] + (x[:, 5:] - t["b_dec_b"]) @ t["W_enc_b"] + t["b_enc"])
    torch.testing.assert_close(pre, cc._pre_acts(cc._scale_in(x)), rtol=1e-4, atol=1e-4)
    acts, idx = back.encode(x)
    recon = back.decode(acts, idx)
    dense = torch.zeros(40, 16).scatter(1, idx, acts)
    torch.testing.assert_close(recon[:, :5], dense @ t["W_dec_a"] + t["b_dec_a"], rtol=1e-4, atol=1e-3)
    with pytest.raises(UserError, match="crosscode"):
        load_crosscoder(tmp_path / "missing")


def test_classes_follow_the_stated_thresholds():
    cfg = CrosscodeConfig()
    table = {"class": np.array(["shared", "a_only", "b_only", "leaning", "norm_only", "dead", "shared"])}
    s = class_summary(table, cfg)
    assert s["n_live"] == 6 and s["counts"]["dead"] == 1
    assert s["fractions"]["shared"] == pytest.approx(2 / 6)
    assert s["thresholds"]["a_only"] == "r < 0.1" and s["thresholds"]["shared"] == "0.3 <= r <= 0.7"


def test_agreement_counts_both_directions():
    table = pd.DataFrame({"latent": [0, 1, 2, 3], "class": ["shared", "shared", "a_only", "shared"],
                          "best_a": [1, 2, 3, 9], "best_b": [10, 20, 30, 90], "corr_a": [0.9, 0.9, 0.9, 0.1],
                          "corr_b": [0.9, 0.9, 0.1, 0.9], "n_units": [5, 5, 5, 5], "relative_norm": [0.5, 0.5, 0.0, 0.5]})
    matches = pd.DataFrame({"feature_a": [1, 2, 4], "feature_b": [10, 21, 40], "method": "activation",
                            "shared": [True, True, False], "kind": ["lexical", "contextual", "unshared"]})
    out, agree = agreement(table, matches, 0.3)
    assert list(out["posthoc"]) == ["shared pair", "no pair", "unmapped", "unmapped"]
    assert agree["crosscoder_shared_in_posthoc"] == 0.5  # latent 0 lands on a shared pair, latent 1 on none
    assert agree["posthoc_shared_in_crosscoder"] == 0.5  # (1, 10) found, (2, 21) not
    assert agree["posthoc_shared_in_crosscoder_by_kind"] == {"contextual": 0.0, "lexical": 1.0}
    assert agreement(table, None, 0.3)[1]["available"] is False


def test_config_validation_and_opt_in(tmp_path):
    with pytest.raises(UserError, match="crosscode"):
        CrosscodeConfig(k=64, d_sae=32).validate()
    with pytest.raises(UserError, match="exclusive_below"):
        CrosscodeConfig(exclusive_below=0.45).validate()
    assert CrosscodeConfig().enabled is False
    # disabled: `autointerp run` skips the stage (its gate), so nothing is needed and nothing written
    cfg = RunConfig(run_dir=str(tmp_path / "run"))
    assert stage("crosscode").enabled(cfg) is False and stage("sweep").enabled(cfg) is False
    cfg.crosscode = dataclasses.replace(cfg.crosscode, enabled=True)
    assert stage("crosscode").enabled(cfg) is True
    assert not RunDir(tmp_path / "run").crosscode.exists()


def test_cli_names_the_missing_stage(tmp_path):
    run = make_synthetic_run(tmp_path / "run", SyntheticSpec(n_docs=4, words_per_doc=(20, 30)))
    RunDir(run.run_dir).model(run.slugs[1]).sae.weights.unlink()
    (tmp_path / "c.toml").write_text(f'run_dir = "{run.run_dir}"\n' + "".join(f'[[models]]\nmodel = "{s}"\n' for s in run.slugs))
    result = CliRunner().invoke(app, ["crosscode", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2, result.output
    assert "autointerp train" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_report_section_states_the_joint_answer_next_to_the_post_hoc_one(trained, tmp_path):
    from autointerp.report.crosscode import crosscode_plots, crosscode_section, record_files

    run, _cfg, summary, _ = trained
    plots = crosscode_plots(run.run_dir, tmp_path)
    (plot,) = plots["crosscode"]
    assert (tmp_path / plot.path).stat().st_size > 1000
    text = "\n".join(crosscode_section(run.run_dir, plots))
    shared = summary["classes"]["fractions"]["shared"]
    assert f"{100 * shared:.1f}% shared" in text
    assert "0.3 <= r <= 0.7" in text and "r < 0.1" in text and "Latent Scaling" in text
    assert "random-weights floor of the crosscoder: not measured" in text  # the synthetic run has no controls
    assert f"{100 * summary['posthoc']['posthoc_shared_in_crosscoder']:.1f}%" in text
    assert plot.path in text
    out = RunDir(run.run_dir).crosscoder(*run.slugs)
    assert record_files(run.run_dir) == [out.record, out.latent_exemplars_record, out.latent_labels_record]
    a, b = run.slugs
    per = summary["metrics"]["per_model"]
    assert f"Per model: `{a}` L0 {per[a]['l0']:.1f}" in text and f"`{b}` L0 {per[b]['l0']:.1f}" in text
    # the paged latents are listed, linked to their pages only when the pages were written
    assert "Crosscoder latents with exemplars, labels and pages" in text and f"(pages/crosscode/{a}__{b}/" not in text
    linked = "\n".join(crosscode_section(run.run_dir, plots, "pages/index.html"))
    assert all(f"[{j}](pages/crosscode/{a}__{b}/{j}.html)" in linked for j, _ in _chosen(run))


def test_report_section_is_empty_without_a_crosscoder(tmp_path):
    from autointerp.report.crosscode import crosscode_plots, crosscode_section

    assert crosscode_section(tmp_path, {}) == [] and crosscode_plots(tmp_path, tmp_path) == {}


def test_random_weights_controls_become_floor_pairs(tmp_path):
    import shutil

    from autointerp.crosscode.stage import pairs_for

    run = make_synthetic_run(tmp_path / "run", SyntheticSpec(n_docs=4, words_per_doc=(20, 30)))
    cfg = _config(run)
    assert [role for *_, role in pairs_for(cfg)] == ["pair"]
    control = RunDir(run.run_dir).controls.random_model(run.slugs[1])
    shutil.copytree(RunDir(run.run_dir).model(run.slugs[1]).root, control.root)
    (a, b, role), (fa, fb, frole) = pairs_for(cfg)
    assert (a.slug, b.slug, role) == (*run.slugs, "pair")
    assert (fa.slug, fb.slug, frole) == (run.slugs[0], f"{run.slugs[1]}@random", "floor")
    assert fb.harvest_dir == control.harvest
    cfg.crosscode.controls = False
    assert len(pairs_for(cfg)) == 1


def test_residual_pooling_removes_each_word_types_mean():
    from autointerp.compare.lexical import WordTypes
    from autointerp.crosscode.data import residual_rows

    texts = ["the", "cat", "The", "dog", "sat", "cat", "the", "mat", "dog"]  # documents [0, 4), [4, 8), [8, 9)
    types = WordTypes.from_texts(texts, np.array([0, 4, 8, 9]))
    rng = np.random.default_rng(0)
    x_a, x_b = rng.normal(size=(9, 3)).astype(np.float32), rng.normal(size=(9, 2)).astype(np.float32)
    kept, ra, rb = residual_rows(types, np.array([0, 1, 2, 3, 4, 5, 6, 7]), x_a, x_b)  # unit 8 not covered by both
    assert list(kept) == [0, 1, 2, 5, 6]  # "the" and "cat" recur across documents; "dog" only once among the units kept
    for x, r in ((x_a, ra), (x_b, rb)):
        the, cat = x[[0, 2, 6]].mean(0), x[[1, 5]].mean(0)
        np.testing.assert_allclose(r, x[[0, 1, 2, 5, 6]] - np.stack([the, cat, the, cat, the]), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="pooling"):
        CrosscodeConfig(pooling="max").validate()


def _lexical_world(n_lexical: int):
    """make_synthetic_run's world with its first ``n_lexical`` shared concepts made *lexical*: each fires on a fixed set of
    word types with a fixed value per type (the same code on every occurrence of a word), so the two
    models share them through word identity alone; the other concepts stay contextual (random per unit)."""
    state = {}

    def documents(spec, rng):
        docs, spans = synthetic_documents(spec, rng)
        state["texts"] = [d.text[s:e].casefold() for d, sp in zip(docs, spans) for s, e in sp]
        return docs, spans

    def codes(spec, n_units_per_doc, n_concepts, rng):
        out = synthetic_codes(spec, n_units_per_doc, n_concepts, rng)
        types = pd.factorize(pd.Series(state["texts"], dtype=object))[0]
        g = np.random.default_rng(1)
        table = np.where(g.random((types.max() + 1, n_lexical)) < 0.1, g.uniform(0.5, 2.0, (types.max() + 1, n_lexical)), 0.0)
        out[:, :n_lexical] = table[types]
        return out

    return documents, codes


def test_residual_pooling_keeps_contextual_sharing_and_drops_lexical_sharing(tmp_path):
    """The crosscoder's rows in a world with a known answer: on mean-pooled rows both models carry every shared
    concept, lexical or contextual (their projections on the concept's true direction correlate across the
    models); on residual rows the lexical ones are gone (word identity was all they shared) and the
    contextual ones still correlate. Checked on the rows themselves, without training (test time)."""
    from autointerp.compare.inputs import check_same_corpus
    from autointerp.crosscode.data import paired_units
    from autointerp.compare.inputs import ready_inputs as side
    from autointerp.crosscode.stage import _settings

    spec = SyntheticSpec(n_docs=60, n_shared=16, n_a_only=8, n_b_only=8, d_a=32, d_b=32, k=8)
    n_lexical = 8
    documents, codes = _lexical_world(n_lexical)
    run = make_synthetic_run(tmp_path / "run", spec, documents=documents, codes=codes)
    a, b = (side(RunDir(run.run_dir).model(s), s) for s in run.slugs)
    docs = check_same_corpus(run.run_dir, a, b)
    dirs = [load_sae(m.sae_dir).W_dec.detach().double().numpy() for m in (a, b)]
    corr = {}
    for pooling in ("mean", "residual"):
        data = paired_units(a, b, docs, 0.1, 0, progress=False, pooling=pooling)
        per_concept = []
        for concept in range(spec.n_shared):
            ja, jb = np.flatnonzero(run.concept_of_a == concept)[0], np.flatnonzero(run.concept_of_b == concept)[0]
            per_concept.append(np.corrcoef(data.x_a @ dirs[0][ja], data.x_b @ dirs[1][jb])[0, 1])
        corr[pooling] = np.array(per_concept)
        if pooling == "residual":
            assert 0 < data.n < run.n_units  # only words whose type recurs across documents
    assert (corr["mean"] > 0.9).all(), corr["mean"]  # every shared concept is shared on mean-pooled rows
    assert (np.abs(corr["residual"][:n_lexical]) < 0.2).all(), corr["residual"]  # lexical sharing removed
    assert (corr["residual"][n_lexical:] > 0.8).all(), corr["residual"]  # contextual sharing kept
    assert "pooling" not in _settings(CrosscodeConfig()) and _settings(CrosscodeConfig(pooling="residual"))["pooling"] == "residual"


def test_report_controls_read_the_per_model_floor_and_ceiling_of_calibration_json():
    """calibration.json counts sharing per model ({model: fraction}); the crosscoder section reads it so."""
    from autointerp.report.crosscode import _controls
    from autointerp.report.fmt import pct

    text = "\n".join(_controls([], {"floor_shared_fraction": {"A": 0.326}, "ceiling_shared_fraction": {"A": 0.354, "B": 0.835}}))
    assert f"`A` {pct(0.326)}" in text and f"`B` {pct(0.835)}" in text and "random-weights control" in text
    assert pct(0.5) in "\n".join(_controls([], {"floor_shared_fraction": 0.5}))  # older records: one fraction
