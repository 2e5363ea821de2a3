"""The controls a sharing fraction is read against: same-model ceiling (other SAE seed) and random-weights floor,
through the real stages (trainer, harvest, compare) on a synthetic run with a known answer and on tiny models."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from autointerp.cli import stage
from autointerp.config import ModelEntry, RunConfig
from autointerp.controls.calibration import pair_calibration
from autointerp.controls.config import ControlsConfig
from autointerp.errors import UserError
from autointerp.io import read_json
from autointerp.models.load import load_model
from autointerp.rundir.layout import RunDir
from autointerp.sae.config import SAEConfig, TrainConfig
from helpers.runs import SyntheticSpec, controls_config, make_synthetic_run


@pytest.fixture(scope="module")
def synthetic_controls(tmp_path_factory):
    """Both synthetic models get SAEs from the real trainer (seed 0), are compared, then the ceiling (seed 1)."""
    run_dir = tmp_path_factory.mktemp("controls")
    spec = SyntheticSpec(n_docs=50)
    make_synthetic_run(run_dir, spec)
    cfg = controls_config(run_dir, spec, epochs=4)
    stage("train").run(cfg, overwrite=True)
    stage("compare").run(cfg)
    record = stage("controls").run(cfg).detail
    return cfg, record


def test_ceiling_is_at_or_above_the_cross_model_fraction(synthetic_controls):
    cfg, record = synthetic_controls
    run = RunDir(cfg.run_path)
    cal = pair_calibration(run.root, run.pair("synth-a", "synth-b"))
    ceiling, cross = cal["ceiling_shared_fraction"], cal["shared_fraction_of"]
    assert set(ceiling) == set(cross) == {"synth-a", "synth-b"}
    # half of A's concepts (32 of 64) and a third of B's (32 of 96) are shared; a model against itself near 1
    assert 0.3 < cross["synth-a"] < 0.75 and 0.2 < cross["synth-b"] < 0.5, cross
    for slug, value in ceiling.items():
        assert value >= cross[slug] and value > 0.8, (slug, value, cross)
        assert cal["shared_over_ceiling"][slug] == pytest.approx(cross[slug] / value)
    # the second SAE really is another seed: trained, recorded, and not the same weights
    first, second = run.model("synth-a").sae, run.controls.ceiling_sae("synth-a")
    assert read_json(second.record)["settings"]["train"]["seed"] == cfg.train.seed + cfg.controls.ceiling_seed
    assert first.weights.read_bytes() != second.weights.read_bytes()
    # the floor was switched off: said so, with the setting that switched it off
    assert "floor = \"none\"" in cal["not_measured"]["floor_shared_fraction"]
    assert record["seconds"] > 0 and all(c["seconds"] > 0 for c in record["controls"]["ceiling"])
    assert [c["label"] for c in record["controls"]["ceiling"]] == ["synth-a vs synth-a@seed1", "synth-b vs synth-b@seed1"]


def test_controls_rerun_is_a_no_op_that_keeps_the_cost(synthetic_controls):
    cfg, record = synthetic_controls
    sae = RunDir(cfg.run_path).controls.ceiling_sae("synth-a").weights
    before = sae.stat().st_mtime_ns
    again = stage("controls").run(cfg).detail
    assert sae.stat().st_mtime_ns == before
    first, then = record["controls"]["ceiling"][0], again["controls"]["ceiling"][0]
    assert then["seconds"] == first["seconds"] and then["shared_fraction"] == first["shared_fraction"]


def test_random_weights_are_seeded_and_differ_from_the_trained_ones(tiny_model_dirs):
    path = str(tiny_model_dirs["gpt2"])
    real, r0, r0_again, r1 = (load_model(path, device="cpu", random_init=s) for s in (None, 0, 0, 1))
    params = lambda lm: torch.cat([p.detach().flatten() for p in lm.model.parameters()])  # noqa: E731
    assert torch.equal(params(r0), params(r0_again))
    assert not torch.equal(params(r0), params(r1)) and not torch.equal(params(r1), params(real))  # (the tiny model is itself a seed-0 init)
    assert r0.spec.endswith("(random weights, seed 0)") and real.spec == path
    assert r0.tokenizer.vocab_size == real.tokenizer.vocab_size and r0.n_layers == real.n_layers


def test_floor_runs_end_to_end_on_tiny_models(tiny_model_dirs, text_corpus, tmp_path, monkeypatch):
    import autointerp.compare.activation as activation

    encoded = []  # harvests encoded by compare: A's codes are shared by the pair and the floor (one encode)
    real_pool = activation.pool_harvest
    monkeypatch.setattr(activation, "pool_harvest", lambda sae, harvest_dir, *args: encoded.append(harvest_dir) or real_pool(sae, harvest_dir, *args))
    activation._POOLED.clear()
    cfg = RunConfig(run_dir=str(tmp_path / "run"), max_tokens=600,
                    models=[ModelEntry(str(tiny_model_dirs["gpt2"]), name="A", layer=1), ModelEntry(str(tiny_model_dirs["bert"]), name="B", layer=0)],
                    sae=SAEConfig(expansion_factor=2, k=4), train=TrainConfig(epochs=1, batch_size=64, ce_contexts=0),
                    controls=ControlsConfig(ceiling=False, floor="last", floor_epochs=0.5))
    cfg.corpus.dataset = str(text_corpus)
    cfg.harvest.ctx_len = 32
    cfg.harvest.shard_tokens = 200
    cfg.compare = dataclasses.replace(cfg.compare, min_support=1, representation_permutations=3, document_level=False, representation_units=200)
    stage("harvest").run(cfg)
    stage("train").run(cfg)
    stage("compare").run(cfg)
    record = stage("controls").run(cfg).detail
    assert len(encoded) == len(set(encoded)) == 3  # A, B and B's random control: A encoded once for the pair and the floor
    sub = read_json(RunDir(cfg.run_path).pair("A", "B").calibration)["representation_subsample"]
    assert 200 <= sub["units"] < sub["of_units"] and sub["documents"] < sub["of_documents"]  # whole documents, seeded
    run = RunDir(cfg.run_path)
    manifest = read_json(run.controls.random_model("B").manifest)
    assert manifest["complete"] and manifest["identity"]["model"].endswith("(random weights, seed 0)")
    assert manifest["identity"]["corpus"] == read_json(run.model("B").manifest)["identity"]["corpus"]
    [floor] = record["controls"]["floor"]
    assert (floor["random"], floor["against"]) == ("B", "A") and 0.0 <= floor["shared_fraction"] <= 1.0
    cal = pair_calibration(run.root, run.pair("A", "B"))
    assert cal["floor_shared_fraction"] == {"A": floor["shared_fraction_of"]["A"]} and cal["floors"][0]["cka"]["value"] is not None
    assert "ceiling = false" in cal["not_measured"]["ceiling_shared_fraction"]
    # the controls wrote only controls.json: compare's calibration (and stats.json's copy) hold what compare computed
    own = read_json(run.pair("A", "B").calibration)
    assert read_json(run.pair("A", "B").stats)["calibration"] == own and own["floor_shared_fraction"] is None and "floors" not in own
    real_tokens = read_json(run.model("B").sae.metrics)["train_tokens"]
    floor_tokens = read_json(run.controls.random_model("B").sae.metrics)["train_tokens"]
    assert abs(floor_tokens - real_tokens / 2) <= 64  # floor_epochs = 0.5 against [train] epochs = 1 (one batch of slack)
    assert not (run.root / "B-random").exists()  # controls live under controls/, never beside the real models


def test_floor_names_an_unknown_model():
    with pytest.raises(UserError, match="not a model of this run"):
        ControlsConfig(floor="gpt9").floor_models(["A", "B"])
    assert ControlsConfig(floor="first").floor_models(["A", "B"]) == ["A"]
    assert ControlsConfig(floor="all").floor_models(["A", "B"]) == ["A", "B"]


def test_verdict_reads_ceiling_and_floor_per_model_from_the_merged_calibration():
    from autointerp.compare.calibration import calibration_record
    from autointerp.controls.calibration import control_summary, with_controls

    def stats(a, b, shared, n_a, n_b, contextual, ci_shared, ci_ctx):
        out = {"model_a": a, "model_b": b, "n_shared": shared, "n_features_a": n_a + 10, "n_dead_a": 4, "n_rare_a": 6,
               "n_features_b": n_b, "n_dead_b": 0, "n_rare_b": 0, "lexical": {"n_contextual": contextual},
               "intervals": {"n_shared": ci_shared, "n_contextual": ci_ctx}}
        return out | {"calibration": calibration_record(out, None)}  # as compare writes it

    pair = stats("A", "B", 50, 200, 100, 20, [44, 56], [15, 25])  # 25% of A's features [22, 28], 50% of B's [44, 56]
    base = {"shared_fraction": 0.5, "n_shared": 50, "n_pairs": 100, "null_threshold": 0.3, "n_contextual": 20,
            "intervals": {"n_shared": [44, 56], "n_contextual": [15, 25]},
            "cka": {"value": 0.3, "ci": [0.28, 0.32]}, "not_measured": {"ceiling_shared_fraction": "x", "floor_shared_fraction": "y"}}
    controls = {"ceiling": {"A": control_summary(stats("A", "A@seed1", 100, 200, 200, 60, [90, 110], [50, 70]), 10.0),  # 50% of A
                            "B": control_summary(stats("B", "B@seed1", 54, 100, 100, 30, [48, 60], [25, 35]), 5.0)},  # 54% of B
                "floor": [control_summary(stats("A", "B@random", 48, 200, 100, 2, [42, 54], [0, 4]), 7.0)
                          | {"random": "B", "against": "A", "cka": {"value": 0.05, "ci": [0.04, 0.06]}}],
                "seconds": 123.0}
    cal = with_controls(base, controls, pair)
    assert cal["shared_fraction_of"] == {"A": 0.25, "B": 0.5} and cal["n_matchable"] == {"A": 200, "B": 100}
    assert cal["ci"]["shared_fraction_of"] == {"A": [0.22, 0.28], "B": [0.44, 0.56]}
    cols = cal["verdict"]["columns"]
    # A: 25% [22, 28] vs its floor 24% [21, 27] (A's features against random B): not above the floor
    assert cols["shared_a"]["floor"] == {"value": 0.24, "ci": [0.21, 0.27]} and cols["shared_a"]["call"] == "not_above_floor"
    # B: its floor is the random copy's own fraction (48 of random B's 100): 48% [42, 54] overlaps the pair's, the ceiling 54% too
    assert cols["shared_b"]["floor"] == {"value": 0.48, "ci": [0.42, 0.54]} and cols["shared_b"]["ceiling"]["B"]["value"] == 0.54
    assert cols["shared_b"]["call"] == "between"
    # beyond words: 20 [15, 25] vs the floor's 2 [0, 4], short of A's ceiling 60 [50, 70]
    assert cols["beyond_words_a"]["call"] == "above_floor" and cols["beyond_words_a"]["floor_count"] == {"value": 2, "ci": [0, 4]}
    assert cols["cka"]["call"] == "above_floor" and cols["cka"]["ceiling"] == {}
    text = " ".join(cal["verdict"]["sentences"])
    assert "Word-level sharing is no more than a random network's (for `B`: between)" in text
    assert "Beyond word identity the models share 20 features (10.0% [7.5%, 12.5%] of `A`'s), 10 times the floor's 2 and 0.33 of the same-model ceiling (60 features): above the floor." in text
    assert "debiased CKA 0.300 [0.280, 0.320] vs 0.050 [0.040, 0.060]" in text
    off = with_controls(base, {"ceiling": {}, "floor": [], "off": {"floor_shared_fraction": "not measured: [controls] floor = \"none\""}}, pair)
    assert all(c["call"] is None for c in off["verdict"]["columns"].values())
    assert 'No claim about word-level sharing: the random-weights floor or an interval is missing (not measured: [controls] floor = "none")' in off["verdict"]["sentences"][0]


def test_report_names_the_best_aligned_layers_from_the_sweep():
    from autointerp.report.headline import sweep_line

    assert "not measured" in sweep_line(None, {})
    sweep = {"complete": True, "summary": {
        "model_a": {"slug": "A"}, "model_b": {"slug": "B"}, "n_units": 2000,
        "metrics": {"cka": {"best": {"layer_a": 3, "layer_b": 2, "value": 0.55}}, "svcca": {"best": {"layer_a": 0, "layer_b": 0, "value": 0.72}}},
        "null": [{"best_for": ["cka"], "cka": {"null_mean": 0.001}}]}}
    line = sweep_line(sweep, {"A": 6, "B": 3})
    assert "debiased linear CKA at blocks 3 / 2 (0.550, null 0.001)" in line and "SVCCA at blocks 0 / 0 (0.720)" in line
    assert "this run compares blocks 6 / 3" in line and "2,000 words" in line
