"""A control added through the registry, as CONTRIBUTING.md describes: one class registered with
``register_control`` runs in the controls stage, lands in controls.json, reaches each pair's calibration and
the verdict (the highest floor wins), and names itself in the report's verdict table. No other file changes."""

from __future__ import annotations

import dataclasses

import pytest

from autointerp.cli import stage
from autointerp.config import ModelEntry, RunConfig
from autointerp.controls.calibration import pair_calibration
from autointerp.controls.config import CONTROL_REGISTRY, ControlsConfig
from autointerp.controls.floor import RandomWeightsFloor
from autointerp.controls.registry import register_control
from autointerp.io import read_json
from autointerp.report.verdict import rows
from autointerp.rundir.layout import RunDir
from autointerp.sae.config import SAEConfig, TrainConfig


class OtherInitFloor(RandomWeightsFloor):
    """A second random-weights floor: the same control with another initialisation seed, in its own directory."""

    name = "floor_init1"
    title = "random weights, init seed 1"

    def init_seed(self, cfg):
        return cfg.controls.floor_seed + 1

    def dirs(self, run):
        return run.controls.of(self.name)


@pytest.fixture(scope="module")
def two_floors(tiny_model_dirs, text_corpus, tmp_path_factory):
    cfg = RunConfig(run_dir=str(tmp_path_factory.mktemp("registry") / "run"), max_tokens=600,
                    models=[ModelEntry(str(tiny_model_dirs["gpt2"]), name="A", layer=1), ModelEntry(str(tiny_model_dirs["bert"]), name="B", layer=0)],
                    sae=SAEConfig(expansion_factor=2, k=4), train=TrainConfig(epochs=1, batch_size=64, ce_contexts=0),
                    controls=ControlsConfig(ceiling=False, floor="last", floor_epochs=0.5, floor_representation=False))
    cfg.corpus.dataset = str(text_corpus)
    cfg.harvest.ctx_len = 32
    cfg.harvest.shard_tokens = 200
    cfg.compare = dataclasses.replace(cfg.compare, min_support=1, representation=False, document_level=False)
    for name in ("harvest", "train", "compare"):
        stage(name).run(cfg)
    register_control(OtherInitFloor)
    try:
        record = stage("controls").run(cfg).detail
    finally:
        CONTROL_REGISTRY.pop(OtherInitFloor.name)
    return cfg, record


def test_a_registered_control_runs_in_the_stage_and_reaches_the_verdict(two_floors):
    cfg, record = two_floors
    run = RunDir(cfg.run_path)
    assert list(record["controls"]) == ["ceiling", "floor", "floor_init1"] and record["controls"]["ceiling"] == []
    [builtin], [toy] = record["controls"]["floor"], record["controls"]["floor_init1"]
    assert builtin["label"] == toy["label"] == "A vs B@random" and toy["role"] == "floor" and toy["init_seed"] == 1
    assert toy["seconds"] > 0 and 0 <= toy["shared_fraction"] <= 1
    # its own harvest (another random init) in its own directory; the built-in floor's files are untouched
    own = read_json(run.controls.of("floor_init1").random_model("B").manifest)
    assert own["identity"]["model"].endswith("(random weights, seed 1)")
    assert read_json(run.controls.random_model("B").manifest)["identity"]["model"].endswith("(random weights, seed 0)")
    assert read_json(run.controls.record)["controls"]["floor_init1"][0]["shared_fraction"] == toy["shared_fraction"]

    cal = pair_calibration(run.root, run.pair("A", "B"))
    assert [f["control"] for f in cal["floors"]] == ["floor", "floor_init1"]
    cols = cal["verdict"]["columns"]
    for key, side in (("shared_a", "A"), ("shared_b", "B@random")):  # A's own share, and the random copy's for B
        values = [f["shared_fraction_of"][side] for f in (builtin, toy)]
        assert cols[key]["floor"]["value"] == max(values)  # the conservative floor: the higher of the two
        winner = (builtin, toy)[values.index(max(values))]
        assert cols[key]["floor_title"] == winner["title"]
    [floor_row] = [r for r in rows(cal["verdict"], "A", "B") if r.label.startswith("floor: ")]
    assert floor_row.label == "floor: " + " / ".join(dict.fromkeys(cols[k]["floor_title"] for k in ("shared_a", "shared_b", "beyond_words_a", "beyond_words_b") if cols[k]["floor"]))


def test_the_registry_refuses_a_control_without_a_role():
    class NoRole(RandomWeightsFloor):
        name, role = "broken", "middle"

    with pytest.raises(ValueError, match="role must be one of ceiling, floor"):
        register_control(NoRole)
    assert "broken" not in CONTROL_REGISTRY


def test_a_controls_json_of_the_earlier_layout_reads_as_the_two_built_in_controls(two_floors):
    """Runs made before the registry keep their calibration: {"ceiling": {...}, "floor": [...]} is read as before."""
    cfg, record = two_floors
    run = RunDir(cfg.run_path)
    [builtin] = record["controls"]["floor"]
    legacy = {k: v for k, v in builtin.items() if k not in ("control", "role", "title", "label", "stands_for")}
    from autointerp.controls.calibration import with_controls

    stats = read_json(run.pair("A", "B").stats)
    new = with_controls(stats["calibration"], {"controls": {"floor": [builtin]}, "off": {}}, stats)
    old = with_controls(stats["calibration"], {"ceiling": {}, "floor": [legacy], "off": {}}, stats)
    assert old["verdict"] == new["verdict"] and old["floor_shared_fraction"] == new["floor_shared_fraction"] == {"A": builtin["shared_fraction_of"]["A"]}
