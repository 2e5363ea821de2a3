"""The crosscoder across two tokenizers: ground truth from a synthetic pair, save/load, the classes, the CLI.

The synthetic pair (tests/synthetic_run.py) is built from a shared part and two exclusive parts of a known
dictionary, written into each model's space through its own random rotation, with different
tokenizations (B splits every word in two); the crosscoder must find each part in the right class with
decoder directions at cosine > 0.9 to the truth in the right model's space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from autointerp.cli import app
from autointerp.config import ModelEntry, RunConfig
from autointerp.crosscode.analysis import class_summary
from autointerp.crosscode.config import CrosscodeConfig
from autointerp.crosscode.model import CrossCoder, load_crosscoder, save_crosscoder
from autointerp.crosscode.posthoc import agreement
from autointerp.crosscode.stage import crosscode_all, crosscode_stage
from autointerp.errors import UserError
from autointerp.rundir.layout import RunDir
from autointerp.sae.saelens import load_sae
from synthetic_run import SyntheticSpec, make_synthetic_run

SPEC = SyntheticSpec(n_docs=60)


def _config(run) -> RunConfig:
    cfg = RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    cfg.crosscode = CrosscodeConfig(d_sae=192, k=6, epochs=12, batch_size=256)
    return cfg


def _write_matches(run, extra_unshared: int = 5) -> None:
    """matches.parquet in compare's contract: the true shared pairs shared, a few wrong pairs unshared."""
    truth = sorted(run.truth)
    wrong = [(a, (b + 1) % len(run.concept_of_b)) for a, b in truth[:extra_unshared]]
    pairs = truth + wrong
    frame = pd.DataFrame({"feature_a": [p[0] for p in pairs], "feature_b": [p[1] for p in pairs], "method": "activation",
                          "shared": [True] * len(truth) + [False] * len(wrong),
                          "kind": ["contextual"] * len(truth) + ["unshared"] * len(wrong)})
    dest = RunDir(run.run_dir).pair(*run.slugs).matches
    dest.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(dest)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = make_synthetic_run(tmp_path_factory.mktemp("cc") / "run", SPEC)
    _write_matches(run)
    cfg = _config(run)
    (summary, reused), = crosscode_stage(cfg, progress=False)
    return run, cfg, summary, reused


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
def test_rerun_reuses_and_changed_settings_are_refused(trained):
    run, cfg, summary, _ = trained
    (again, reused), = crosscode_stage(cfg, progress=False)
    assert reused and again["classes"] == summary["classes"]
    cfg.crosscode = CrosscodeConfig(d_sae=128, k=6, epochs=12, batch_size=256)
    with pytest.raises(UserError, match="d_sae"):
        crosscode_stage(cfg, progress=False)


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
    # disabled: `autointerp run`'s stage is a no-op (no harvest needed, nothing written)
    cfg = RunConfig(run_dir=str(tmp_path / "run"))
    crosscode_all(cfg)
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
    assert record_files(run.run_dir) == [RunDir(run.run_dir).crosscoder(*run.slugs).record]


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
