"""Damaged artifacts are read one way: every stage that meets a run file it cannot read (garbage JSON, a 0-byte
or truncated parquet) stops with one line naming the file and the fix, exit status 2, no traceback, and
nothing else in the run is touched."""

from __future__ import annotations

import shutil

import pytest

from autointerp.errors import DamagedArtifact, UserError
from autointerp.io import read_json, read_parquet, write_json
from helpers.cli import assert_one_line_error, cli
from helpers.runs import make_report_run


def test_readers_name_the_file_and_stay_value_errors(tmp_path):
    bad = tmp_path / "stats.json"
    bad.write_text("{garbage")
    with pytest.raises(DamagedArtifact) as exc:
        read_json(bad)
    assert str(bad) in exc.value.message and "--overwrite" in exc.value.message
    assert isinstance(exc.value, UserError) and isinstance(exc.value, ValueError)  # optional readers treat it as absent
    empty = tmp_path / "matches.parquet"
    empty.write_bytes(b"")
    with pytest.raises(DamagedArtifact, match="matches.parquet"):
        read_parquet(empty)
    with pytest.raises(FileNotFoundError):  # missing is not damaged: callers say which stage makes it
        read_parquet(tmp_path / "absent.parquet")
    write_json(bad, {"ok": 1})
    assert read_json(bad) == {"ok": 1}


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    make_report_run(root)
    return root / "run"


@pytest.mark.parametrize("relative, content", [
    ("alpha/exemplars.parquet", b""),
    ("alpha/lexical_profile.parquet", b""),
    ("beta/labels.parquet", b"PAR1"),
    ("compare/alpha__beta/matches.parquet", b""),
    ("compare/alpha__beta/stats.json", b"{garbage"),
    ("alpha/exemplars.json", b"\xff\xfe not utf-8"),
])
def test_report_on_a_damaged_artifact_is_one_line(fixture_run, tmp_path, relative, content):
    run = tmp_path / "run"
    shutil.copytree(fixture_run, run)
    (run / relative).write_bytes(content)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert_one_line_error(cli("report", "--run-dir", run, "--no-pages"), relative.split("/")[-1], "--overwrite")
    assert {p: p.read_bytes() for p in before} == before  # nothing already written is lost or changed


def test_garbage_harvest_record_stops_train_and_harvest_in_one_line(tiny_model_dirs, text_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["--model", tiny_model_dirs["gpt2"], "--layer", "1", "--dataset", text_corpus, "--max-tokens", "300", "--run-dir", run]
    assert cli("harvest", *args).returncode == 0
    manifest = next(run.glob("*/harvest/harvest.json"))
    manifest.write_text("{not json")
    shards = sorted(p.name for p in manifest.parent.iterdir())
    assert_one_line_error(cli("train", "--run-dir", run), "harvest.json", "--overwrite")
    assert_one_line_error(cli("harvest", *args), "harvest.json", "--overwrite")
    assert sorted(p.name for p in manifest.parent.iterdir()) == shards and manifest.read_text() == "{not json"
