"""``--sae`` on every stage where the SAE matters, and the SAE's own config deciding an unset layer/site in every
entry point (not only ``autointerp run``): a standalone ``autointerp harvest`` then ``autointerp train`` works
without the user setting the layer; an explicit conflicting layer is one line naming both; a stage given
another SAE than the run holds says so in one line instead of mixing outputs. Tiny GPT-2 (d_model 32, 3
blocks), so the [harvest] default layer 6 is out of range: only the SAE can have chosen the layer."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autointerp.cli import app
from autointerp.rundir.layout import EXEMPLARS_FILE
from helpers.pretrained_formats import random_weights, write_gemma_scope, write_saelens, write_sparsify

CONFIG = """run_dir = "{run}"
[corpus]
dataset = "{corpus}"
[harvest]
ctx_len = 32
shard_tokens = 200
[train]
ce_contexts = 0
[[models]]
model = "{gpt2}"
{extra}
"""


def cli(*args) -> "object":
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", "AUTOINTERP_PROGRESS": "0"})


def one_line_error(res, *needles: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def saes(tmp_path_factory) -> dict[str, Path]:
    """Two sparsify SAEs at layers.2 of a 32-wide model (different weights), a SAELens one at block 1."""
    root = tmp_path_factory.mktemp("saes")
    rng = np.random.default_rng(11)
    return {"a": write_sparsify(root / "a", random_weights(rng, 32, 48), k=4, hookpoint_name="layers.2"),
            "b": write_sparsify(root / "b", random_weights(rng, 32, 48), k=4, hookpoint_name="layers.2"),
            "lens1": write_saelens(root / "lens", random_weights(rng, 32, 48), "standard", hook="blocks.1.hook_resid_post")}


def _config(tmp_path: Path, name: str, tiny_model_dirs, text_corpus, extra: str = "", run: Path | None = None) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(CONFIG.format(run=run or tmp_path / name, corpus=text_corpus, gpt2=tiny_model_dirs["gpt2"], extra=extra))
    return path


def _manifest_layer(run: Path) -> int:
    return json.loads((run / "gpt2" / "harvest" / "harvest.json").read_text())["identity"]["layer"]


def test_standalone_harvest_then_train_take_the_layer_from_the_sae(saes, tiny_model_dirs, text_corpus, tmp_path):
    from autointerp.config import load_config

    config = _config(tmp_path, "own", tiny_model_dirs, text_corpus, f'sae = "{saes["a"]}"')
    res = cli("harvest", "--config", config)
    assert res.exit_code == 0, res.output
    run = tmp_path / "own"
    assert _manifest_layer(run) == 2  # layers.2, not [harvest] layer = 6 (out of range for this model)
    assert [(m.layer, m.site) for m in load_config(run / "config.toml").models] == [(2, "resid")]
    res = cli("train", "--run-dir", run)  # from the saved config
    assert res.exit_code == 0, res.output
    metrics = json.loads((run / "gpt2" / "sae" / "metrics.json").read_text())
    assert metrics["sae_format"] == "sparsify" and metrics["train_tokens"] == 0
    assert not (run / "gpt2" / "sae" / "checkpoints").exists()
    res = cli("train", "--config", config)  # the config file again (no layer in it): the same SAE, nothing to do
    assert res.exit_code == 0 and "(cached)" in res.output, res.output
    # an explicit layer that disagrees: one line naming both, before anything is written
    clash = _config(tmp_path, "clash", tiny_model_dirs, text_corpus, f'layer = 1\nsae = "{saes["a"]}"')
    for command in ("harvest", "run"):
        one_line_error(cli(command, "--config", clash), "reads layer 2", "is set to layer = 1", str(saes["a"]))
    one_line_error(cli("harvest", "--config", config, "--layer", "1", "--run-dir", tmp_path / "flag"),
                   "reads layer 2", "is set to layer = 1")
    one_line_error(cli("harvest", "--config", config, "--site", "mlp", "--run-dir", tmp_path / "flag"),
                   "reads site 'resid'", 'is set to site = "mlp"')
    assert not (tmp_path / "clash").exists() and not (tmp_path / "flag").exists()
    # a SAELens SAE says its hook in cfg.json: block 1
    lens = _config(tmp_path, "lens", tiny_model_dirs, text_corpus, f'sae = "{saes["lens1"]}"')
    assert cli("harvest", "--config", lens).exit_code == 0 and _manifest_layer(tmp_path / "lens") == 1


@pytest.fixture(scope="module")
def flag_run(saes, tiny_model_dirs, text_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(config without sae = ..., its run) harvested with `--sae gpt2=<a>` and trained from the saved config."""
    root = tmp_path_factory.mktemp("flag")
    config = _config(root, "plain", tiny_model_dirs, text_corpus)
    res = cli("harvest", "--config", config, "--sae", f"gpt2={saes['a']}")
    assert res.exit_code == 0, res.output
    run = root / "plain"
    assert _manifest_layer(run) == 2
    res = cli("train", "--run-dir", run)
    assert res.exit_code == 0, res.output
    assert json.loads((run / "gpt2" / "sae" / "metrics.json").read_text())["sae_source"] == str(saes["a"])
    return config, run


STAGES_AFTER_TRAIN = ("exemplars", "explain", "score", "compare", "controls", "report")


def test_every_stage_refuses_another_sae_than_the_runs(saes, flag_run, tmp_path):
    config, run = flag_run
    a, b = str(saes["a"]), str(saes["b"])
    for stage in STAGES_AFTER_TRAIN:
        line = one_line_error(cli(stage, "--run-dir", run, "--sae", f"gpt2={b}"), f"is {a}", f"not {b}", "--overwrite")
        assert f"autointerp train --model gpt2 --sae {b} --overwrite" in line, (stage, line)
    for stage in ("harvest", "train", "run"):  # these may replace it, with --overwrite
        one_line_error(cli(stage, "--config", config, "--run-dir", run, "--sae", b), f"is {a}", f"not {b}", "--overwrite")
    # the run's own SAE, however spelled (bare PATH with one model, a relative path): accepted
    res = cli("exemplars", "--run-dir", run, "--sae", os.path.relpath(a))
    assert res.exit_code == 0, res.output
    assert (run / "gpt2" / EXEMPLARS_FILE).is_file()
    res = cli("train", "--run-dir", run, "--sae", f"gpt2={os.path.relpath(a)}")
    assert res.exit_code == 0 and "(cached)" in res.output, res.output
    # a config without sae = ... over a run holding a pretrained SAE: train would replace it, so it says so
    one_line_error(cli("train", "--config", config, "--run-dir", run), f"is the pretrained {a}", "--sae gpt2=")
    assert json.loads((run / "gpt2" / "sae" / "metrics.json").read_text())["sae_source"] == a


def test_the_run_without_an_sae_or_with_a_trained_one(saes, flag_run, tmp_path):
    from autointerp.config import load_config
    from autointerp.rundir.record import StageRecord
    from autointerp.rundir.sae_source import check_run_saes

    config, run = flag_run
    a = str(saes["a"])
    trained = tmp_path / "trained"
    shutil.copytree(run, trained)
    record = StageRecord.load(trained / "gpt2" / "sae" / "train.json")
    StageRecord("train", {"sae": {"k": 4}, "train": {}}, record.inputs, summary=record.summary).save(trained / "gpt2" / "sae" / "train.json")
    one_line_error(cli("exemplars", "--run-dir", trained, "--sae", f"gpt2={a}"), "was trained here", f"not {a}")
    one_line_error(cli("train", "--run-dir", trained, "--sae", a), "was trained here", "--overwrite")
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    shutil.rmtree(bare / "gpt2" / "sae")
    one_line_error(cli("report", "--run-dir", bare, "--sae", a), "gpt2 has no SAE", f"autointerp train --model gpt2 --sae {a}")
    # a stage after train whose config names no SAE adopts the run's (the controls then know it is pretrained)
    cfg = load_config(config)
    check_run_saes(run, cfg.models, "use")
    assert cfg.models[0].sae == a


def test_sae_flag_values_name_their_model_in_one_line(saes, tiny_model_dirs, text_corpus, tmp_path):
    a, b = str(saes["a"]), str(saes["b"])
    two = _config(tmp_path, "two", tiny_model_dirs, text_corpus, f'[[models]]\nmodel = "{tiny_model_dirs["bert"]}"')
    one_line_error(cli("harvest", "--config", two, "--sae", a), "does not say which model", "2 are selected",
                   "gpt2, bert", f"--sae gpt2={a}")
    one_line_error(cli("harvest", "--config", two, "--sae", f"gtp2={a}"), "'gtp2' is not a configured model", "gpt2, bert")
    one_line_error(cli("harvest", "--config", two, "--sae", f"gpt2={a}", "--sae", f"gpt2={b}"), "given twice for gpt2")
    one_line_error(cli("harvest", "--config", two, "--sae", "gpt2="), "no path after '='")
    one_line_error(cli("train", "--config", two, "--model", "gpt2", "--sae", f"bert={a}"), "bert is not among the models selected")
    one_line_error(cli("harvest", "--config", two, "--sae", f"gpt2={tmp_path / 'missing'}"), "does not exist")
    control = _config(tmp_path, "control", tiny_model_dirs, text_corpus, f'[[models]]\nmodel = "{tiny_model_dirs["gpt2"]}"\nname = "noise"\nweights = "random"')
    one_line_error(cli("harvest", "--config", control, "--sae", f"noise={a}"), 'noise has weights = "random"')
    assert not (tmp_path / "two").exists() and not (tmp_path / "control").exists()


def test_the_default_pair_takes_the_layer_of_an_sae_given_by_flag(tmp_path):
    """`autointerp run --sae gemma-3-270m=...` with no config: the built-in layer 6 gives way to the SAE's; a
    config file that sets layer = 6 does not."""
    from autointerp.cli_common import apply_overrides
    from autointerp.config import RunConfig
    from autointerp.errors import UserError

    npz = write_gemma_scope(tmp_path, random_weights(np.random.default_rng(0), 640, 64), np.zeros(64), layer=5)
    cfg = apply_overrides(RunConfig(), {}, {}, {}, sae=[f"gemma-3-270m={npz}"], builtin=True, check_layers=True)
    assert [(m.slug, m.layer, m.sae) for m in cfg.models] == [("gemma-3-270m", 5, str(npz)), ("minilm-l6", 3, None)]
    with pytest.raises(UserError, match="reads layer 5 .*is set to layer = 6"):
        apply_overrides(RunConfig(), {}, {}, {}, sae=[f"gemma-3-270m={npz}"], check_layers=True)


def test_every_stage_where_the_sae_matters_takes_sae():
    for stage in ("run", "harvest", "train", *STAGES_AFTER_TRAIN):
        res = cli(stage, "--help")
        assert res.exit_code == 0 and "--sae" in res.output and "MODEL=PATH" in res.output, stage
