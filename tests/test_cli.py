"""The installed `autointerp` command: stages listed, bad input gives one line + non-zero exit and no
traceback, a TOML config drives several models over the same documents, flags override it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from autointerp.config import load_config, parse_config
from autointerp.errors import UserError
from helpers.cli import ENV, assert_one_line_error, cli

def test_help_lists_every_stage():
    result = cli("--help")
    assert result.returncode == 0
    for stage in ("harvest", "train", "exemplars", "explain", "score", "compare", "report", "run"):
        assert stage in result.stdout
    # --help builds every command's flags from the config dataclasses without importing torch
    probe = subprocess.run([sys.executable, "-c", "import sys\nimport autointerp.cli as c\nsys.argv = ['autointerp', 'compare', '--help']\n"
                            "try:\n    c.app()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"],
                           capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1], env={**os.environ, "COLUMNS": "200"})
    assert probe.stdout.strip().endswith("False"), probe.stdout[-500:] + probe.stderr[-2000:]
    assert "--null-alpha" in probe.stdout and "--lexical-min-excess" in probe.stdout  # derived from [compare]


def test_bad_inputs_are_one_line_errors(tiny_model_dirs, text_corpus, tmp_path):
    gpt2 = tiny_model_dirs["gpt2"]
    run = ["--run-dir", tmp_path / "run"]
    assert_one_line_error(cli("harvest", "--model", gpt2, "--layer", "3", "--dataset", text_corpus, *run), "0..2")
    assert_one_line_error(cli("harvest", "--model", gpt2, "--layer", "0", "--dataset", tmp_path / "missing.jsonl", *run), "missing.jsonl")
    assert_one_line_error(cli("harvest", "--model", gpt2, "--layer", "0", "--dataset", text_corpus, "--ctx-len", "100000", *run), "maximum context")
    assert_one_line_error(cli("harvest", "--model", gpt2, "--layer", "0", "--dataset", text_corpus, "--min-chars", "10000000", *run), "min_chars")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("harvest", "--model", gpt2, "--layer", "0", "--dataset", tmp_path / "empty", *run), "empty")
    assert_one_line_error(cli("harvest", "--model", gpt2, "--level", "paragraph", "--dataset", text_corpus, *run), "level")
    assert_one_line_error(cli("harvest", "--model", tmp_path / "nope", *run), "nope")
    assert not (tmp_path / "run" / "gpt2").exists()


def test_unknown_model_offline(tmp_path):
    from autointerp.hub import hub_reachable

    if hub_reachable():
        pytest.skip("only meaningful without network access")
    assert_one_line_error(cli("harvest", "--model", "org/not-a-model", "--run-dir", tmp_path), "offline", "gemma-3-270m", "minilm-l6")


def test_non_utf8_bytes_are_replaced_counted_and_warned(tiny_model_dirs, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("The harbour city trades coffee and tin along the coast. " * 5, encoding="utf-8")
    (corpus / "bad.txt").write_bytes(b"Coffee \xff\xfe exports grew along the river delta and the coast. " * 4)
    result = cli("harvest", "--model", tiny_model_dirs["gpt2"], "--layer", "0", "--dataset", corpus, "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "non-UTF-8" in result.stderr or "undecodable" in result.stderr
    docs = pd.read_parquet(tmp_path / "run" / "corpus" / "documents.parquet")
    assert docs["text"].str.contains("\ufffd").sum() == 1


def test_config_drives_two_models_over_the_same_documents(tiny_model_dirs, text_corpus, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        f"""
name = "pair"
run_dir = "{tmp_path / 'pair'}"
[corpus]
dataset = "{text_corpus}"
max_tokens = 400
[harvest]
ctx_len = 32
layer = 1
[[models]]
model = "{tiny_model_dirs['gemma3']}"
name = "A"
[[models]]
model = "{tiny_model_dirs['bert']}"
name = "B"
layer = 0
"""
    )
    result = cli("harvest", "--config", config)
    assert result.returncode == 0, result.stderr
    index = {m: pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "pair" / m / "harvest").glob("shard_*.parquet"))) for m in "AB"}
    saved = pd.read_parquet(tmp_path / "pair" / "corpus" / "documents.parquet")
    assert set(index["A"]["doc_id"]) == set(index["B"]["doc_id"]) == set(saved["doc_id"])
    assert len(saved) < 12  # the token budget cut the corpus
    resolved = load_config(tmp_path / "pair" / "config.toml")
    assert [m.layer for m in resolved.models] == [None, 0] and resolved.harvest.layer == 1
    # A flag overrides the config; the changed ctx_len conflicts with the existing harvest: refused, nothing lost.
    before = sorted(p.name for p in (tmp_path / "pair" / "A" / "harvest").iterdir())
    assert_one_line_error(cli("harvest", "--config", config, "--ctx-len", "16"), "ctx_len: 32 -> 16")
    assert sorted(p.name for p in (tmp_path / "pair" / "A" / "harvest").iterdir()) == before


def test_config_unknown_keys_are_named(tmp_path):
    with pytest.raises(UserError, match="ctx_lenn"):
        parse_config({"harvest": {"ctx_lenn": 3}})
    with pytest.raises(UserError, match="modles"):
        parse_config({"modles": []})
    with pytest.raises(UserError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("[corpus\n")
        load_config(tmp_path / "bad.toml")
    with pytest.raises(UserError, match="distinct"):
        parse_config({"models": [{"model": "a/x"}, {"model": "b/x"}]})
    cfg = parse_config({"corpus": {"max_tokens": 123, "seed": 5}, "models": [{"model": "m", "layer": -1}]})
    assert cfg.max_tokens == 123 and cfg.corpus.seed == 5 and cfg.harvest_for(cfg.models[0]).layer == -1


def test_with_flags_sets_only_the_flags_given():
    from autointerp.cli_common import set_flags, with_flags
    from autointerp.config import RunConfig

    train = RunConfig().train
    kept = with_flags(train, epochs=None, lr=None)
    assert kept == train and kept is not train
    changed = with_flags(train, ce_contexts=0, lr=None, device="cpu")
    assert (changed.ce_contexts, changed.lr, changed.device) == (0, train.lr, "cpu")
    assert set_flags(a=None, b=0, c=False, d="") == {"b": 0, "c": False, "d": ""}
    report = RunConfig().report
    assert report.pages is True and with_flags(report, pages=False).pages is False


def _limit_file_size(limit_bytes: int):
    """preexec_fn: files this process writes may not grow past limit_bytes (EFBIG, like a full disk)."""

    def apply() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def test_disk_full_stops_cleanly_and_resumes(tiny_model_dirs, text_corpus, tmp_path):
    """Running out of space mid-harvest: one line, exit 2, only complete files left; the next run finishes."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "autointerp", "harvest", "--model", str(tiny_model_dirs["gpt2"]), "--layer", "1",
            "--dataset", str(text_corpus), "--min-chars", "1", "--ctx-len", "32", "--shard-tokens", "1024", "--run-dir", str(run_dir)]
    full = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=_limit_file_size(60_000))  # a shard is ~130 kB
    assert_one_line_error(full, "out of disk space", "run the same command again")
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    harvest_dir = run_dir / Path(tiny_model_dirs["gpt2"]).name / "harvest"
    if (harvest_dir / "harvest.json").is_file():  # whatever was recorded is whole and readable
        from autointerp.harvest.harvester import load_manifest
        from autointerp.harvest.shards import ShardPaths, read_shard

        for shard in load_manifest(harvest_dir)["shards"]:
            assert ShardPaths.of(harvest_dir, shard["index"]).activations.is_file()
            read_shard(harvest_dir, shard["index"])
    done = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    from autointerp.harvest.harvester import load_manifest

    assert load_manifest(harvest_dir)["complete"]


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parents[1] / "autointerp" / "configs").glob("*.toml")))
def test_packaged_configs_parse_and_round_trip(name):
    """Every config shipped with the package loads by name, and its saved form reads back identically."""
    import tomllib

    from autointerp.config import to_toml

    cfg = load_config(name)
    again = parse_config(tomllib.loads(to_toml(cfg)))
    assert again.to_dict() == cfg.to_dict()


def test_error_text_with_brackets_is_printed_verbatim(tmp_path):
    """Messages naming TOML tables ([[models]], [compare]) must not be eaten as console markup."""
    bad = tmp_path / "bad.toml"
    bad.write_text("models = []\n", encoding="utf-8")
    assert_one_line_error(cli("run", "--config", bad), "[[models]]")


def test_run_directory_differences_are_named(tmp_path):
    """A run directory made with other settings or by another version: the differences are spelled out."""
    import dataclasses

    from autointerp.config import RunConfig
    from autointerp.io import write_json
    from autointerp.provenance import run_dir_differences, save_resolved_config
    from autointerp.rundir.layout import VERSION_FILE

    cfg = RunConfig(run_dir=str(tmp_path / "run"))
    save_resolved_config(cfg)
    cfg.train = dataclasses.replace(cfg.train, epochs=7.0)
    assert run_dir_differences(cfg) == []  # nothing was produced with the old settings yet
    cfg.train = dataclasses.replace(cfg.train, epochs=2.0)
    (tmp_path / "run" / "m" / "harvest").mkdir(parents=True)
    write_json(tmp_path / "run" / "m" / "harvest" / "harvest.json", {})
    assert run_dir_differences(cfg) == []
    cfg.train = dataclasses.replace(cfg.train, epochs=7.0)
    cfg.models[1].layer = 4
    (line,) = run_dir_differences(cfg)
    assert "train.epochs: 2.0 -> 7.0" in line and "models[1].layer: 3 -> 4" in line
    save_resolved_config(cfg)
    write_json(tmp_path / "run" / VERSION_FILE, {"version": "0.0.1"})
    (line,) = run_dir_differences(cfg)
    assert "written by autointerp 0.0.1" in line and "--overwrite" in line


def test_harvesting_a_second_model_adds_it_to_the_run(tiny_model_dirs, text_corpus, tmp_path):
    """`harvest --model A` then `harvest --model B` on one run directory: the run has both models (A pinned to the
    layer it was harvested at), its corpus settings come from the run, and a later stage finds both."""
    run = tmp_path / "run"
    a, b = str(tiny_model_dirs["gpt2"]), str(tiny_model_dirs["bert"])
    first = cli("harvest", "--model", a, "--layer", "1", "--dataset", text_corpus, "--max-tokens", "300", "--run-dir", run)
    assert first.returncode == 0, first.stderr
    second = cli("harvest", "--model", b, "--layer", "0", "--run-dir", run)  # no --dataset: the run's corpus
    assert second.returncode == 0, second.stderr
    saved = load_config(run / "config.toml")
    layers = {m.model: saved.harvest_for(m).layer for m in saved.models}
    assert layers == {a: 1, b: 0}, layers
    assert saved.corpus.dataset == str(text_corpus)
    assert all((run / m.slug / "harvest" / "harvest.json").is_file() for m in saved.models)
    import json

    sizes = [json.loads((run / m.slug / "harvest" / "harvest.json").read_text())["model"]["n_params"] for m in saved.models]
    assert all(n > 0 for n in sizes) and len(set(sizes)) == 2  # the report orders models by it (issue 27)
    # the first model's harvest is untouched and still the run's: asking for it again at another layer is refused
    slug_a = next(m.slug for m in saved.models if m.model == a)
    before = (run / slug_a / "harvest" / "harvest.json").read_bytes()
    assert_one_line_error(cli("harvest", "--model", a, "--layer", "0", "--run-dir", run), "layer")
    assert (run / slug_a / "harvest" / "harvest.json").read_bytes() == before
    after = load_config(run / "config.toml")
    assert {m.model: after.harvest_for(m).layer for m in after.models} == {a: 1, b: 0}  # the refused command changed nothing
