"""Damaged artifacts are read one way: every stage that meets a run file it cannot read (garbage JSON, a 0-byte
or truncated parquet) stops with one line naming the file and the fix, exit status 2, no traceback, and
nothing else in the run is touched."""

from __future__ import annotations

import random
import re
import shutil
import traceback
from pathlib import Path

import pytest

from autointerp.errors import DamagedArtifact, UserError
from autointerp.io import read_json, read_parquet, write_json
from helpers.cli import assert_one_line_error, cli
from helpers.report_run import make_report_run


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


# ------------------------------------------------------------------------------ the fuzz test over a finished run
FUZZ_MODELS = ("A", "B")


def _fuzz_config(root: Path, tiny: dict[str, Path], corpus: Path) -> Path:
    """A two-model run on tiny random models, small enough to finish every stage the fuzz test damages."""
    config = root / "run.toml"
    config.write_text(f"""
name = "fuzz"
run_dir = "{root / 'run'}"
[corpus]
dataset = "{corpus}"
max_tokens = 600
[harvest]
ctx_len = 32
shard_tokens = 200
layer = 1
[train]
epochs = 2
batch_size = 64
[sae]
expansion_factor = 2
k = 4
[explain]
labeller = "lexical"
select = "random"
[[models]]
model = "{tiny['gpt2']}"
name = "A"
[[models]]
model = "{tiny['bert']}"
name = "B"
layer = 0
""")
    return config


def invoke(*args) -> tuple[int, str]:
    """One command in this process (typer's runner: no interpreter start per command, ~10x faster than a
    subprocess here); (exit status, everything it printed, a traceback included when one escaped)."""
    from typer.testing import CliRunner

    from autointerp.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    out = result.output  # stdout and stderr, as printed
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        out += "".join(traceback.format_exception(result.exception))
        return 1, out
    return result.exit_code, out


@pytest.fixture(scope="module")
def finished_run(tiny_model_dirs, text_corpus, tmp_path_factory) -> Path:
    """One finished run (harvest, train, exemplars, explain, score, compare, crosscode, report) of two tiny models."""
    root = tmp_path_factory.mktemp("fuzz")
    config = _fuzz_config(root, tiny_model_dirs, text_corpus)
    for command in ("harvest", "train", "exemplars", "explain", "score", "compare", "crosscode", "report --no-pages"):
        code, out = invoke(*command.split(), "--config", config)
        assert code == 0, (command, out)
    return root / "run"


# The command that reads each artifact (first matching pattern; "A" is the first model, whose files are damaged).
# --overwrite where the stage would otherwise find its outputs up to date and not open its inputs at all.
READER = [
    (r"^(config\.toml|autointerp\.json)$", "train"),
    (r"^(cost|report)\.json$", "report --no-pages"),
    (r"^corpus/(corpus|selection)\.json$", "harvest --config {run}/config.toml"),  # (without --config: the default corpus)
    (r"^corpus/", "exemplars --overwrite"),
    (r"^A/exemplars\.json$", "report --no-pages"),
    (r"^A/harvest/", "exemplars --overwrite"),
    (r"^A/sae/(cfg\.json|sae_weights)", "exemplars --overwrite"),
    (r"^A/sae/", "report --no-pages"),
    (r"^A/(exemplars|feature_stats|lexical_profile)", "explain --overwrite"),
    (r"^A/(labels|label_candidates|text_embeddings)", "compare"),
    (r"^compare/", "compare"),
    (r"^crosscode/", "crosscode"),
]

# Exit 0 is right where the command does not need the file, or remakes it: (artifact pattern, command pattern,
# text the output must hold, other files it may rewrite) -> why.
ZERO_OK = {
    (r".", r"^report", "report unchanged", None): "not one of the report's inputs (its identity hashes every file it reads: "
                                                  "report/artifacts.py input_files), so not read",
    (r"^(compare|crosscode)/|^A/(labels\.json|label_candidates|text_embeddings)", r"^(compare|crosscode)$", "", None):
        "the stage is up to date (its record holds the sha256 of the inputs it reads, not of these): it opens none of them",
    (r"^corpus/corpus\.json$", r"^harvest", "cached", None): "harvest reuses the corpus by selection.json; corpus.json is the report's",
    (r"(calibration|crosscode|latent_exemplars|latent_labels)\.json$|^cost\.json$", r"^report", "report written", None):
        "a stage record or the cost ledger: damaged, it reads as none (StageRecord.load, load_ledger) and the report shows the rest",
    (r"^crosscode/A__B/latent_exemplars\.json$", r"^crosscode$", "", r"^crosscode/A__B/latent_"):
        "the latent pages' record: damaged, it reads as none and crosscode remakes the latent pages (their files)",
    (r"^report\.json$", r"^report", "", None): "the report's own record: damaged, the report is rebuilt",
}


def _garbage(rel: str, size: int) -> bytes:
    return random.Random(rel).randbytes(max(size, 64))


DAMAGE = {"empty": lambda rel, data: b"", "truncated": lambda rel, data: data[: len(data) // 2], "garbage": lambda rel, data: _garbage(rel, len(data))}


def _changes(run: Path, pristine: dict[str, bytes]) -> list[str]:
    """Files of ``run`` that differ from ``pristine`` (added +, removed -), each put back as it was."""
    changed = []
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run).as_posix()
        if path.is_file() and rel not in pristine:
            changed.append(f"+{rel}")
            path.unlink()
        elif path.is_file() and path.read_bytes() != pristine[rel]:
            changed.append(rel)
            path.write_bytes(pristine[rel])
    for rel, data in pristine.items():
        if not (run / rel).is_file():
            changed.append(f"-{rel}")
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / rel).write_bytes(data)
    return changed


def _verdict(rel: str, mode: str, command: str, code: int, out: str, changed: list[str]) -> str | None:
    """What is wrong with one damaged-artifact run, or None."""
    if code not in (0, 2) or "Traceback" in out:
        return f"exit {code}: {out.strip()[-600:]}"
    # The damaged file itself may be rewritten; a stage command updates the run's cost ledger (cost.json: its own
    # entry, rundir/stage_cost.py) when it succeeds; a report that succeeds rewrites its own outputs.
    own = {"cost.json"} | ({"report.json", "report.md"} if command.startswith("report") else set())
    rules = [key for key in ZERO_OK if re.search(key[0], rel) and re.search(key[1], command) and key[2] in out]
    remade = [key[3] for key in rules if key[3]]
    other = [c for c in changed if c.lstrip("+-") != rel and not (code == 0 and (c.lstrip("+-") in own or c.lstrip("+-").startswith("plots/")
                                                                                 or any(re.search(r, c.lstrip("+-")) for r in remade)))]
    if other:
        return f"exit {code} changed {other}"
    if code == 2:
        lines = [line for line in out.splitlines() if line.strip()]  # (what a stage printed before it met the file comes first)
        errors = [line for line in lines if line.startswith("error:")]
        if errors != lines[-1:] or rel.split("/")[-1] not in lines[-1]:
            return f"not one line naming the file: {out.strip()[-600:]}"
        return None
    if not rules:
        return f"exit 0 (not listed in ZERO_OK): {out.strip()[-300:]}"
    return None


def test_every_damaged_artifact_of_a_finished_run_is_one_line(finished_run):
    """Damage each artifact of a finished run in turn (0 bytes, cut to half, random bytes) and run the command
    that reads it (READER), and the report too for the random bytes: exit status 2 with one line naming the
    file, or 0 where ZERO_OK says why; never a traceback; no other file of the run changed.

    Only the first model's files (and the run's and the pair's) are damaged: the second model's are the same
    files read by the same code. The commands run in this process (typer's runner), ~10x faster than a
    subprocess each; the report runs for one damage mode only (keeps the test near a minute)."""
    run = finished_run  # damaged in place and put back after each command (a copy elsewhere is another run: paths differ)
    pristine = {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    artifacts = [rel for rel in sorted(pristine) if rel.rsplit(".", 1)[-1] in ("json", "parquet", "toml", "safetensors", "npz")
                 and not rel.startswith("B/")]
    assert len(artifacts) > 40 and any(rel.endswith(".npz") for rel in artifacts)
    problems = []
    for rel in artifacts:
        reader = next(command for pattern, command in READER if re.search(pattern, rel))
        for mode, damage in DAMAGE.items():
            for command in dict.fromkeys([reader] + (["report --no-pages"] if mode == "garbage" else [])):
                (run / rel).write_bytes(damage(rel, pristine[rel]))
                code, out = invoke(*command.format(run=run).split(), "--run-dir", run)
                if (problem := _verdict(rel, mode, command, code, out, _changes(run, pristine))) is not None:
                    problems.append(f"{rel} [{mode}] `{command}`: {problem}")
    assert not problems, "\n".join(problems)
