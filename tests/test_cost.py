"""Per-stage cost: the measurement itself (CPU, wall, peak RSS), every stage record of a small real pipeline
carrying its cost, the ledger's ``ran`` flags on a re-run, and the report's "Run cost" section and
report.json ``cost``."""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import pytest
from helpers.report_run import make_report_run

from autointerp.cli import stage
from autointerp.config import ModelEntry, RunConfig
from autointerp.explain.labels import read_meta, write_meta
from autointerp.io import read_json, write_json
from autointerp.rundir.cost import measure
from autointerp.rundir.cost_table import cost_rows
from autointerp.rundir.layout import RunDir
from autointerp.rundir.stage_cost import RunCost, load_ledger
from helpers.runs import SyntheticSpec, controls_config, make_synthetic_run

LINUX = sys.platform.startswith("linux")


def _busy(seconds: float) -> int:
    end, n = time.process_time() + seconds, 0
    while time.process_time() < end:
        n += 1
    return n


def test_measure_counts_cpu_and_wall_of_a_busy_loop_and_a_sleep():
    with measure() as cost:
        _busy(0.2)
        time.sleep(0.3)
    assert 0.15 < cost["cpu_s"] < cost["wall_s"]
    assert cost["wall_s"] >= 0.5
    assert cost["peak_rss_mb"] > 0 and "cuda_s" not in cost  # no CUDA on this machine: nothing recorded


@pytest.mark.skipif(not LINUX, reason="the resettable high-water mark is Linux's")
def test_peak_rss_is_the_blocks_own_and_nests():
    with measure() as quiet:
        pass
    with measure() as outer:
        with measure() as inner:
            big = np.ones(300 * 2**20 // 8)  # 300 MB, touched
            del big
        with measure() as after:  # the mark was reset: the freed array no longer counts
            pass
    assert "rss_scope" not in inner  # the stage's own peak, not the process's
    assert inner["peak_rss_mb"] > quiet["peak_rss_mb"] + 250
    assert outer["peak_rss_mb"] >= inner["peak_rss_mb"]  # folded into the enclosing measurement before the reset
    assert after["peak_rss_mb"] < inner["peak_rss_mb"] - 250


class _FakeCuda:
    """torch.cuda's few calls the measurement makes, on a fake device (no GPU here): what it records."""

    def __init__(self) -> None:
        self.allocated = self.peak = 0

    def alloc(self, n_bytes: int) -> None:
        self.allocated += n_bytes
        self.peak = max(self.peak, self.allocated)

    def is_available(self) -> bool:
        return True

    def current_device(self) -> int:
        return 0

    def current_stream(self, device=None):
        return None

    def max_memory_allocated(self, device=None) -> int:
        return self.peak

    def reset_peak_memory_stats(self, device=None) -> None:
        self.peak = self.allocated

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            self.at = None

        def record(self, stream=None) -> None:
            self.at = time.perf_counter()

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end) -> float:
            return (end.at - self.at) * 1000


def test_cuda_time_and_peak_gpu_memory_are_recorded_where_cuda_is_used(monkeypatch):
    cuda = _FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", type("torch", (), {"cuda": cuda}))
    cuda.alloc(100 * 2**20)  # held before: part of every later peak, as max_memory_allocated counts it
    with measure() as outer:
        with measure() as inner:
            cuda.alloc(400 * 2**20)
            time.sleep(0.05)
            cuda.alloc(-400 * 2**20)
        with measure() as after:
            pass
    assert inner["peak_gpu_mb"] == 500 and inner["cuda_s"] >= 0.05
    assert outer["peak_gpu_mb"] == 500 and outer["cuda_s"] >= inner["cuda_s"]  # folded in before the inner reset
    assert after["peak_gpu_mb"] == 100


def _synthetic_cfg(run_dir) -> RunConfig:
    spec = SyntheticSpec(n_docs=40)
    make_synthetic_run(run_dir, spec)
    return controls_config(run_dir, spec, epochs=2)


def _run(cfg: RunConfig, overwrite: bool) -> dict:
    """The three stages as `autointerp run` measures them."""
    costs = RunCost(cfg.run_path)
    for name, overwrite_it in (("train", overwrite), ("compare", False), ("controls", False)):
        with costs.stage(name):
            stage(name).run(cfg, overwrite=overwrite_it)
    return costs.ledger()


def test_every_stage_record_carries_its_cost_and_a_rerun_keeps_it(tmp_path):
    cfg = _synthetic_cfg(tmp_path / "run")
    run = RunDir(cfg.run_path)
    ledger = _run(cfg, overwrite=True)
    records = {"train": {f"{m}/sae": run.model(m).sae.record for m in ("synth-a", "synth-b")},
               "compare": {"compare/synth-a__synth-b": run.pair("synth-a", "synth-b").record},
               "controls": {f"controls/ceiling/{m}/{d}": p for m in ("synth-a", "synth-b")
                            for d, p in (("sae", run.controls.ceiling_sae(m).record), ("pair", run.controls.ceiling_pair(m).record))}}
    stages = {s["stage"]: s for s in ledger["stages"]}
    assert list(stages) == ["train", "compare", "controls"]
    for name, parts in records.items():
        stage = stages[name]
        assert stage["ran"] and stage["wall_s"] > 0 and stage["cpu_s"] > 0 and stage["peak_rss_mb"] > 0
        assert set(stage["parts"]) == set(parts)  # one part per model / pair, from the records the stage wrote
        for key, path in parts.items():
            cost = read_json(path)["cost"]
            assert cost["wall_s"] > 0 and cost["cpu_s"] > 0 and cost["peak_rss_mb"] > 0
            assert stage["parts"][key] == cost | {"ran": True}  # the record holds exactly its part of the ledger
        assert stage["wall_s"] >= sum(p["wall_s"] for p in stage["parts"].values()) - 0.01
    controls = read_json(run.controls.record)
    for control in controls["controls"]["ceiling"]:  # each control's own cost, with its seconds (wall)
        assert control["seconds"] == control["cost"]["wall_s"] > 0 and control["cost"]["cpu_s"] > 0
    assert read_json(run.cost) == ledger
    assert ledger["total"]["wall_s"] == pytest.approx(sum(s["wall_s"] for s in ledger["stages"]), abs=0.01)
    assert ledger["total"]["peak_rss_mb"] == max(s["peak_rss_mb"] for s in ledger["stages"])

    before = {p: p.read_bytes() for parts in records.values() for p in parts.values()} | {run.controls.record: run.controls.record.read_bytes()}
    again = _run(cfg, overwrite=False)  # everything reused
    for old, new in zip(ledger["stages"], again["stages"]):
        assert new["ran"] is False and all(p["ran"] is False for p in new["parts"].values())
        assert {k: v for k, v in new.items() if k not in ("ran", "parts")} == {k: v for k, v in old.items() if k not in ("ran", "parts")}
        assert {k: v | {"ran": True} for k, v in new["parts"].items()} == old["parts"]
    assert again["total"] == ledger["total"]
    assert {p: p.read_bytes() for p in before} == before  # records (and controls.json) untouched: costs kept as they were


def test_a_harvest_records_its_cost_in_its_manifest(tiny_model_dirs, text_corpus, tmp_path):
    """harvest.json is written after every shard (from the writer thread too): the segments add up to the
    model's part, which the finished manifest holds."""
    cfg = RunConfig(run_dir=str(tmp_path / "run"), max_tokens=600, models=[ModelEntry(str(tiny_model_dirs["gpt2"]), name="A", layer=1)])
    cfg.corpus.dataset = str(text_corpus)
    cfg.harvest.ctx_len, cfg.harvest.shard_tokens = 32, 200
    costs = RunCost(cfg.run_path)
    with costs.stage("harvest"):
        stage("harvest").run(cfg)
    manifest = read_json(RunDir(cfg.run_path).model("A").manifest)
    [measured] = costs.ledger()["stages"]
    assert manifest["n_shards"] > 1 and manifest["cost"]["wall_s"] > 0 and manifest["cost"]["cpu_s"] > 0
    assert measured["parts"] == {"A/harvest": manifest["cost"] | {"ran": True}} and measured["ran"]


def test_report_shows_the_run_cost_and_report_json_has_it(tmp_path):
    cfg = make_report_run(tmp_path)
    cfg = dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, pages=False, plots=False))
    run = RunDir(cfg.run_path)

    def score(work: bool) -> None:  # stands in for a stage that writes labels.json per model, as explain and score do
        for slug in ("alpha", "beta"):
            if work:
                _busy(0.05)
                write_meta(run.model(slug).root, read_meta(run.model(slug).root) | {"note": "scored"})

    def run_once(work: bool) -> dict:
        costs = RunCost(cfg.run_path)
        with costs.stage("score"):
            score(work)
        with costs.stage("report"):
            stage("report").run(cfg)
        return costs.ledger()

    ledger = run_once(work=True)
    md, record = run.report.markdown.read_text(encoding="utf-8"), read_json(run.report.record)
    cost = record["cost"]
    assert [s["stage"] for s in cost["stages"]] == ["score", "report"] and all(s["ran"] for s in cost["stages"])
    assert cost["stages"][0] == ledger["stages"][0]  # read from cost.json
    assert set(cost["stages"][0]["parts"]) == {"alpha", "beta"} and cost["stages"][0]["cpu_s"] >= 0.09
    assert cost["stages"][1]["wall_s"] > 0 and cost["total"]["wall_s"] > cost["stages"][0]["wall_s"]
    section = md.split("## Run cost", 1)[1].split("## Caveats", 1)[0]
    assert md.index("## Run cost") < md.index("## Caveats")
    header, rows = cost_rows(cost)
    assert "| " + " | ".join(header) + " |" in section
    for row in rows:  # every stage, part and the total, with the numbers of report.json
        assert row[0].lstrip("↳ ") in section and " | ".join(row[1:]) in section
    assert f"{cost['stages'][0]['wall_s']:,.1f}" in section and all(row[1] == "ran" for row in rows[:-1])

    again = run_once(work=False)  # nothing to do: both stages reused, costs kept
    assert [s["ran"] for s in again["stages"]] == [False, False]
    assert again["stages"][0]["wall_s"] == ledger["stages"][0]["wall_s"]
    assert load_ledger(run.root) == again
    assert read_json(run.report.record) == record  # the report was up to date: not rewritten


def test_a_stage_command_records_its_cost_and_keeps_the_other_stages(tiny_model_dirs, text_corpus, tmp_path):
    """`autointerp harvest` on its own is measured like a stage of `autointerp run`: cost.json gets its entry (the
    report's, written before, stays), the manifest its part; a reused harvest keeps the ledger as it was."""
    from helpers.cli import cli

    run = tmp_path / "run"
    args = ["--model", tiny_model_dirs["gpt2"], "--layer", "1", "--dataset", text_corpus, "--max-tokens", "300", "--run-dir", run]
    run.mkdir()
    write_json(RunDir(run).cost, {"stages": [{"stage": "report", "ran": True, "wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mb": 10.0}], "total": {}})
    assert cli("harvest", *args).returncode == 0
    ledger = read_json(RunDir(run).cost)
    stages = {s["stage"]: s for s in ledger["stages"]}
    assert set(stages) == {"report", "harvest"} and stages["report"]["wall_s"] == 1.0
    harvest = stages["harvest"]
    assert harvest["ran"] and harvest["wall_s"] > 0 and harvest["peak_rss_mb"] > 0
    [(part, cost)] = harvest["parts"].items()
    manifest = read_json(next(run.glob("*/harvest/harvest.json")))
    assert part.endswith("/harvest") and cost["wall_s"] == manifest["cost"]["wall_s"]
    assert ledger["total"]["wall_s"] == pytest.approx(harvest["wall_s"] + 1.0, abs=0.011)  # totals are rounded to 0.01 s
    assert cli("harvest", *args).returncode == 0  # nothing to do: the ledger is left as it was
    assert read_json(RunDir(run).cost) == ledger
