"""The power-study benchmark's pure parts (benchmarks/budget.py): config rewriting, the verdict read-out, the
separation rule, the width slope and the Paulo & Belrose weight criterion, on synthetic inputs."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "budget.py"
_spec = importlib.util.spec_from_file_location("budget_benchmark", _PATH)
budget = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budget)

BASE = """name = "default"
run_dir = "runs/default"

[corpus]
dataset = "factbook"
max_tokens = 120000

[sae]
expansion_factor = 8
k = 32

[explain]
max_tokens = 12

[compare]
domains = { "a" = "x: y, z" }

[controls]
floor = "last"

[[models]]
model = "gemma-3-270m"
layer = 6
"""


def test_config_rewrite_is_section_aware():
    text = budget.run_config(BASE, Path("/r/budget-4"), "budget-4", 480000, sae={"expansion_factor": "2"}, controls={"floor": '"none"'})
    data = tomllib.loads(text)
    assert data["name"] == "budget-4" and data["run_dir"] == "/r/budget-4"
    assert data["corpus"]["max_tokens"] == 480000
    assert data["explain"]["max_tokens"] == 12  # the other section's key of the same name is untouched
    assert data["sae"] == {"expansion_factor": 2, "k": 32}
    assert data["controls"]["floor"] == "none"
    assert data["compare"]["domains"] == {"a": "x: y, z"} and data["models"][0]["layer"] == 6


def test_set_key_appends_missing_keys_and_sections():
    text = budget.set_key(BASE, "sae", "d_sae", "4096")
    assert tomllib.loads(text)["sae"]["d_sae"] == 4096
    text = budget.set_key(text, "train", "epochs", "1.0")
    assert tomllib.loads(text)["train"]["epochs"] == 1.0


def test_verdict_settings_ignore_name_and_run_dir():
    a = budget.run_config(BASE, Path("runs/default"), "default", 120000)
    b = budget.run_config(BASE, Path("/elsewhere"), "other", 120000)
    assert budget.verdict_settings(a) == budget.verdict_settings(b)
    assert budget.verdict_settings(a) != budget.verdict_settings(budget.run_config(BASE, Path("x"), "x", 480000))


def _col(model, value, ci, floor_ci, ceiling_ci, call):
    cell = lambda ci: {"value": sum(ci) / 2, "ci": ci}  # noqa: E731
    return {"model": model, "value": value, "ci": ci, "floor": cell(floor_ci), "ceiling": {model: cell(ceiling_ci)}, "call": call,
            "count": {"value": 10, "ci": [8, 12]}, "floor_count": {"value": 1, "ci": [0, 3]}, "ceiling_count": {model: {"value": 20, "ci": [18, 22]}}}


def test_verdict_point_and_separation(tmp_path):
    pair = tmp_path / "compare" / "a__b"
    pair.mkdir(parents=True)
    cols = {"shared_a": _col("a", 0.33, [0.32, 0.34], [0.31, 0.335], [0.35, 0.36], "not_above_floor"),
            "shared_b": _col("b", 0.51, [0.50, 0.52], [0.47, 0.49], [0.82, 0.84], "above_floor"),
            "beyond_words_a": _col("a", 0.05, [0.05, 0.06], [0.0, 0.002], [0.10, 0.12], "above_floor"),
            "beyond_words_b": _col("b", 0.08, [0.07, 0.09], [0.0, 0.003], [0.17, 0.19], "above_floor"),
            "cka": {"value": 0.3, "ci": [0.28, 0.36], "floor": {"value": 0.08, "ci": [0.07, 0.09]}, "ceiling": {}, "call": "above_floor"}}
    cal = {"verdict": {"columns": cols}, "floors": [{}], "n_matchable": {"a": 100, "b": 50}}
    (pair / "stats.json").write_text(json.dumps({"calibration": cal}))  # compare's; no controls.json: read as it is
    p = budget.verdict_point(tmp_path)
    assert p["columns"]["shared_a"]["ceiling"]["ci"] == [0.35, 0.36]
    assert p["columns"]["beyond_words_b"]["ceiling_count"]["value"] == 20
    assert not budget.separated(p["columns"]["shared_a"])  # 0.32 < floor's upper 0.335
    assert budget.separated(p["columns"]["shared_b"]) and budget.separated(p["columns"]["beyond_words_a"])
    assert p["columns"]["svcca"]["pair"] is None  # a missing column reads as no value
    assert "a__b" == p["pair"]


def test_width_slope_per_doubling():
    widths = [{"models": {"m": {"d_sae": d, "shared": {"value": v}}}} for d, v in ((1024, 0.8), (4096, 0.6), (16384, 0.4))]
    assert budget.width_slope(widths, "m") == pytest.approx(-0.1)
    assert budget.width_slope(widths[:1], "m") is None


def test_weight_sharing_recovers_a_permuted_copy(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    d_in, d_sae = 16, 32
    dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    perm = rng.permutation(d_sae)
    other = dec[perm].copy()
    other[: d_sae // 2] = rng.normal(size=(d_sae // 2, d_in))  # half the latents replaced: not shared
    for name, w in (("a", dec), ("b", other)):
        (tmp_path / name).mkdir()
        save_file({"W_dec": w, "W_enc": w.T.copy(), "b_dec": np.zeros(d_in, np.float32), "b_enc": np.zeros(d_sae, np.float32)},
                  str(tmp_path / name / "sae_weights.safetensors"))
    out = budget.weight_sharing(tmp_path / "a", tmp_path / "b")
    assert out["d_sae"] == d_sae
    assert out["dec"] == pytest.approx(0.5, abs=1 / d_sae) and out["enc_dec"] == out["dec"]
