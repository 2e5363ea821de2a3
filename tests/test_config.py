"""The run config: each TOML table maps straight onto its stage's dataclass (one set of defaults), values are
type-checked and range-checked where the TOML is read (and after CLI flags), and every mistake is a
one-line error naming the key, from `load_config` and from the installed CLI, before anything is written."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from autointerp.config import RunConfig, load_config, parse_config, section_settings, to_toml, toml_fields
from autointerp.errors import UserError
from autointerp.sae.config import SAEConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "autointerp"
ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", COLUMNS="200")
MODELS = '\n[[models]]\nmodel = "gemma-3-270m"\n\n[[models]]\nmodel = "minilm-l6"\n'

# (TOML text, what the one-line message must contain)
BAD = {
    "models_layer_string": ('[[models]]\nmodel = "gemma-3-270m"\nlayer = "three"\n\n[[models]]\nmodel = "minilm-l6"\n',
                            ['[[models]] layer = "three"', "expected an integer", "the string 'three'"]),
    "harvest_layer_string": ('[harvest]\nlayer = "six"\n' + MODELS, ['[harvest] layer = "six"', "expected an integer"]),
    "negative_token_budget": ("[corpus]\nmax_tokens = -5\n" + MODELS, ["[corpus] max_tokens = -5", "positive"]),
    "k_not_below_d_sae": ("[sae]\nd_sae = 1024\nk = 4096\n" + MODELS, ["[sae] k = 4096", "d_sae=1024"]),
    "unknown_architecture": ('[sae]\narchitecture = "foo"\n' + MODELS, ["[sae] architecture = 'foo'", "topk"]),
    "unknown_backend": ('[llm]\nbackend = "nope"\n' + MODELS, ["[llm] backend = 'nope'", "local, openai"]),
    "unknown_scorer": ('[score]\nscorers = ["nope"]\n' + MODELS, ["[score] scorers", "'nope'", "simulation"]),
    "bool_given_as_int": ("[harvest]\nkeep_special = 1\n" + MODELS, ["[harvest] keep_special = 1", "expected true or false"]),
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_are_named_by_load_config(case, tmp_path):
    text, needles = BAD[case]
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_config(path)
    message = info.value.message
    assert "\n" not in message and str(path) in message
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_are_one_line_cli_errors_before_any_work(case, tmp_path):
    text, needles = BAD[case]
    run = tmp_path / "run"
    result = subprocess.run([str(CLI), "harvest", "--config", str(_write(tmp_path, text)), "--run-dir", str(run)],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not run.exists() or not any(run.iterdir())


@pytest.mark.parametrize(("table", "message"), [
    ({"harvest": {"layer": True}}, "[harvest] layer = true in config: expected an integer, got the boolean true"),
    ({"train": {"epochs": "2"}}, "[train] epochs = \"2\" in config: expected a number, got the string '2'"),
    ({"train": {"adam_betas": [0.9]}}, "expected a list of 2 numbers"),
    ({"train": {"lr": False}}, "[train] lr = false in config: expected a number"),
    ({"compare": {"domains": {"geo": 1}}}, "[compare] domains.geo = 1 in config: expected a string"),
    ({"score": {"scorers": "embedding"}}, "expected a list of strings"),
    ({"name": 5}, "name = 5 in config: expected a string"),
    ({"harvest": 3}, "[harvest] in config must be a table"),
    ({"sae": {"d_in": 64}}, "unknown key(s) in [sae]"),  # set from the data, not a setting
    ({"sae": {"k": 0}}, "[sae] k = 0"),
    ({"sae": {"architecture": "relu", "d_sae": 0}}, "d_sae=0"),
    ({"train": {"total_tokens": 0}}, "[train] total_tokens = 0"),
    ({"train": {"b_dec_init": "zeros"}}, "[train] b_dec_init = 'zeros'"),
    ({"harvest": {"level": "paragraph"}}, "[harvest] level = 'paragraph'"),
    ({"explain": {"select": "best"}}, "[explain] select = 'best'"),
    ({"corpus": {"max_tokens": 0}}, "[corpus] max_tokens = 0"),
    ({"models": [{"model": ""}, {"model": "x"}]}, "[[models]] model"),
])
def test_types_and_ranges_are_checked_where_the_toml_is_read(table, message):
    with pytest.raises(UserError) as info:
        parse_config(table)
    assert message in info.value.message and "\n" not in info.value.message


def test_integers_are_accepted_for_floats_and_become_floats():
    cfg = parse_config({"train": {"epochs": 3, "adam_betas": [0, 0.5]}, "compare": {"null_alpha": 0.05}})
    assert cfg.train.epochs == 3.0 and isinstance(cfg.train.epochs, float)
    assert cfg.train.adam_betas == (0.0, 0.5) and isinstance(cfg.train.adam_betas, tuple)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "autointerp" / "configs").glob("*.toml")))
def test_packaged_configs_round_trip_unchanged(name):
    cfg = load_config(name)
    again = parse_config(tomllib.loads(to_toml(cfg)))
    assert again.to_dict() == cfg.to_dict() and to_toml(again) == to_toml(cfg)


def test_defaults_round_trip_and_keep_the_default_runs_numbers():
    cfg = RunConfig()
    again = parse_config(tomllib.loads(to_toml(cfg)))
    assert again.to_dict() == cfg.to_dict() and parse_config({}).to_dict() == cfg.to_dict()
    sae, train = cfg.sae, cfg.train
    assert (sae.architecture, sae.expansion_factor, sae.d_sae, sae.k, sae.l1_coefficient, sae.normalize_activations) == \
        ("topk", 8, None, 32, None, False)
    assert (train.epochs, train.total_tokens, train.batch_size, train.lr, train.warmup_steps, train.b_dec_init) == \
        (2.0, None, 1024, None, None, "geometric_median")
    assert (train.auxk_alpha, train.dead_tokens_threshold, train.checkpoint_every, train.seed, train.device) == \
        (1 / 32, None, 200, 0, "auto")
    assert (train.n_eval_shards, train.ce_contexts, train.decay_fraction, train.adam_betas) == (1, 16, 0.2, (0.8, 0.99))
    assert TrainConfig() == train and SAEConfig() == sae  # one set of defaults


def test_code_set_fields_are_not_toml_keys():
    keys = {f.name for f in toml_fields(SAEConfig)}
    assert not keys & {"d_in", "metadata", "apply_b_dec_to_input", "dtype"}
    saved = tomllib.loads(to_toml(RunConfig()))
    assert set(saved["sae"]) <= keys and "d_in" not in saved["sae"]
    assert set(section_settings(RunConfig().train)) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_sae_config_resolves_from_the_input_width():
    resolved = SAEConfig(k=16).for_input(64, {"model_name": "m"})
    assert (resolved.d_in, resolved.d_sae, resolved.metadata) == (64, 512, {"model_name": "m"})
    assert SAEConfig(d_sae=100, k=8).for_input(64).d_sae == 100
    with pytest.raises(UserError, match="k = 32 must be in"):
        SAEConfig(expansion_factor=1).for_input(16)  # k=32 >= d_sae=16 once the width is known
    assert SAEConfig(architecture="relu", k=10**6).for_input(8).d_sae == 64  # k is unused by relu


def test_train_config_resolves_total_tokens_from_the_rows():
    assert TrainConfig(epochs=2.0, batch_size=100).for_rows(1234).total_tokens == 2400  # whole batches
    assert TrainConfig(total_tokens=550, batch_size=100).for_rows(10**6).total_tokens == 500
    assert TrainConfig(epochs=0.01, batch_size=100).for_rows(50).total_tokens == 100  # at least one batch
    with pytest.raises(ValueError, match="for_rows"):
        TrainConfig().total_steps


def test_flags_are_validated_like_the_toml():
    from autointerp.cli_common import apply_overrides, with_flags

    cfg = RunConfig()
    with pytest.raises(UserError, match=r"\[sae\] k = 4096"):
        with_flags(cfg.sae, d_sae=1024, k=4096)
    with pytest.raises(UserError, match=r"\[harvest\] pool = 'first'"):
        apply_overrides(cfg, {}, {"pool": "first"}, {})
    with pytest.raises(UserError, match=r"\[corpus\] max_tokens = -1"):
        apply_overrides(RunConfig(), {}, {}, {"max_tokens": -1})


def test_train_settings_record_holds_what_changes_the_sae():
    """The train stage's record: every [sae]/[train] setting that changes the SAE (not device, checkpoint or
    log spacing), so changing any of them is refused instead of silently mixing SAEs."""
    from autointerp.sae.stage import _settings

    settings = _settings(RunConfig())
    assert set(settings["sae"]) == {"architecture", "expansion_factor", "d_sae", "k", "l1_coefficient", "normalize_activations"}
    assert set(settings["train"]) == {"epochs", "total_tokens", "batch_size", "lr", "warmup_steps", "b_dec_init", "auxk_alpha",
                                      "dead_tokens_threshold", "seed", "n_eval_shards", "ce_contexts", "decay_fraction", "adam_betas"}
    changed = RunConfig(train=TrainConfig(adam_betas=(0.9, 0.999)))
    assert _settings(changed)["train"]["adam_betas"] == [0.9, 0.999]


def test_name_lists_match_the_implementations():
    from autointerp.eval.config import SCORER_REGISTRY
    from autointerp.eval.scorers import SCORERS
    from autointerp.llm.config import BACKENDS
    from autointerp.llm.factory import BACKENDS as BUILT
    from autointerp.harvest.config import SITES
    from autointerp.models.load import SITES as LOADED

    assert all(SCORERS[name].name == name for name in SCORER_REGISTRY) and set(BACKENDS) == set(BUILT) and set(SITES) == set(LOADED)


def test_readme_listing_is_generated_from_the_dataclasses():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_config.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    listing = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_config.py")], capture_output=True, text=True,
                             timeout=120).stdout
    assert "d_in" not in listing.replace("sqrt(d_in)", "").replace("expansion_factor * d_in", "") and "metadata" not in listing
    assert tomllib.loads(listing.replace("{ ... }", "{}"))["train"]["batch_size"] == 1024
