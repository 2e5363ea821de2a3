"""Bad input to `autointerp compare` (one-line UserError naming the fix), no-op re-runs, resume, levels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from autointerp.compare.stage import compare_models
from helpers.runs import SyntheticSpec, make_synthetic_run
from autointerp.config import ModelEntry, RunConfig
from autointerp.errors import UserError
from autointerp.provenance import save_resolved_config

SMALL = SyntheticSpec(n_docs=24, words_per_doc=(40, 80), n_shared=8, n_a_only=8, n_b_only=8, d_a=16, d_b=20, k=6)
ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", COLUMNS="200")


def make_run(tmp_path, spec=SMALL):
    run = make_synthetic_run(tmp_path / "run", spec)
    cfg = RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    save_resolved_config(cfg)
    return run, cfg


def expect_error(cfg, *needles, models=None):
    with pytest.raises(UserError) as info:
        compare_models(cfg, models or cfg.models, progress=False)
    message = info.value.message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_cli_refuses_harvests_of_different_corpora(tmp_path):
    from dataclasses import replace

    run, _cfg = make_run(tmp_path, replace(SMALL, docs_model_b=12))
    result = subprocess.run([sys.executable, "-m", "autointerp", "compare", "--run-dir", str(run.run_dir)],
                            capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "different corpora" in lines[0] and "autointerp harvest" in lines[0], result.stderr
    assert not (run.run_dir / "compare").exists()


def test_missing_sae_harvest_or_second_model(tmp_path):
    run, cfg = make_run(tmp_path)
    weights = run.run_dir / "synth-b" / "sae" / "sae_weights.safetensors"
    weights.rename(weights.with_suffix(".bak"))
    expect_error(cfg, "synth-b", "autointerp train")
    weights.with_suffix(".bak").rename(weights)
    manifest = run.run_dir / "synth-a" / "harvest" / "harvest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(data | {"complete": False}))
    expect_error(cfg, "synth-a", "incomplete", "autointerp harvest")
    manifest.unlink()
    expect_error(cfg, "synth-a", "no harvest", "autointerp harvest")
    expect_error(cfg, "at least two models", models=cfg.models[:1])


def test_corpus_file_changed_after_harvest(tmp_path):
    run, cfg = make_run(tmp_path)
    docs = pd.read_parquet(run.run_dir / "corpus" / "documents.parquet")
    docs.loc[0, "text"] = docs.loc[0, "text"] + " extra"
    docs.to_parquet(run.run_dir / "corpus" / "documents.parquet", index=False)
    expect_error(cfg, "not the corpus", "autointerp harvest")


def test_bad_compare_settings(tmp_path):
    _run, cfg = make_run(tmp_path)
    cfg.compare.unit = "char"
    expect_error(cfg, "unit", "word")
    cfg.compare.unit, cfg.compare.null_alpha = "word", 1.5
    expect_error(cfg, "null_alpha")


def test_unchanged_rerun_is_a_noop_and_overwrite_recomputes(tmp_path):
    _run, cfg = make_run(tmp_path)
    first = compare_models(cfg, cfg.models, progress=False)[0]
    assert not first.skipped
    files = sorted(p for p in first.out_dir.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in files}
    second = compare_models(cfg, cfg.models, progress=False)[0]
    assert second.skipped and second.stats == first.stats
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    third = compare_models(cfg, cfg.models, overwrite=True, progress=False)[0]
    assert not third.skipped and third.stats["n_shared"] == first.stats["n_shared"]
    assert (first.out_dir / "cache" / "word.safetensors").stat().st_mtime_ns != stamps[first.out_dir / "cache" / "word.safetensors"]


def test_interrupted_compare_resumes_from_the_level_cache(tmp_path):
    _run, cfg = make_run(tmp_path)
    first = compare_models(cfg, cfg.models, progress=False)[0]
    matches = pd.read_parquet(first.out_dir / "matches.parquet")
    # as if killed after the word level finished: document level and final outputs missing
    for name in ("compare.json", "stats.json", "matches.parquet"):
        (first.out_dir / name).unlink()
    (first.out_dir / "cache" / "document.safetensors").unlink()
    word_stamp = (first.out_dir / "cache" / "word.safetensors").stat().st_mtime_ns
    again = compare_models(cfg, cfg.models, progress=False)[0]
    assert not again.skipped and (first.out_dir / "cache" / "word.safetensors").stat().st_mtime_ns == word_stamp
    assert (first.out_dir / "cache" / "document.safetensors").is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(first.out_dir / "matches.parquet"), matches)
    # a damaged cache file is recomputed, not trusted
    (first.out_dir / "cache" / "word.safetensors").write_bytes(b"garbage")
    (first.out_dir / "compare.json").unlink()
    redone = compare_models(cfg, cfg.models, progress=False)[0]
    assert not redone.skipped and redone.stats["n_shared"] == first.stats["n_shared"]
    assert (first.out_dir / "cache" / "word.safetensors").stat().st_size > 1000
    pd.testing.assert_frame_equal(pd.read_parquet(first.out_dir / "matches.parquet"), matches)


def test_sequence_level_harvests_compare_at_document_level(tmp_path):
    run, cfg = make_run(tmp_path)
    for slug in run.slugs:
        manifest = run.run_dir / slug / "harvest" / "harvest.json"
        data = json.loads(manifest.read_text())
        data["identity"]["level"] = "sequence"
        manifest.write_text(json.dumps(data))
    out = compare_models(cfg, cfg.models, progress=False)[0]
    assert out.stats["unit"] == "document" and set(out.stats["levels"]) == {"document"}
    assert out.stats["n_units"] == SMALL.n_docs


def test_labels_of_another_sae_are_refused(tmp_path):
    from helpers.runs import write_labels

    run, cfg = make_run(tmp_path)
    write_labels(run.run_dir / "synth-a", {0: "first", 500: "beyond the dictionary"})
    write_labels(run.run_dir / "synth-b", {0: "first"})
    expect_error(cfg, "labels.parquet", "500", "autointerp explain")
