"""The per-class sharing table: each model's class mix, shared and beyond-words fractions in the pair, ceiling, floor."""

from __future__ import annotations

import math

import pandas as pd

from autointerp.io import write_json
from autointerp.report.class_sharing import class_section, class_sharing
from autointerp.rundir.layout import RunDir


def _pair(root, a: str, b: str, rows: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows | {"method": ["activation"] * len(rows["feature_a"])}).to_parquet(root / "matches.parquet")
    write_json(root / "stats.json", {"model_a": a, "model_b": b})


def test_sharing_per_class_in_the_pair_the_ceiling_and_the_floor(tmp_path):
    run = RunDir(tmp_path)
    model = run.model("gem")
    model.root.mkdir(parents=True)
    pd.DataFrame({"feature": range(6), "feature_class": ["token", "token", "contextual", "contextual", "other", "dead"]}).to_parquet(model.feature_stats)
    # gem is model_b of the pair: its features are in feature_b
    _pair(run.pair("mini", "gem").root, "mini", "gem",
          {"feature_a": [9, 8, 7], "feature_b": [0, 2, 4], "shared": [True, True, False], "kind": ["lexical", "contextual", "unshared"]})
    _pair(run.controls.ceiling_pair("gem").root, "gem", "gem@seed1",
          {"feature_a": [0, 1, 2, 3], "feature_b": [0, 1, 2, 3], "shared": [True, True, True, True], "kind": ["lexical", "lexical", "contextual", "contextual"]})
    frame = class_sharing(tmp_path, "gem").set_index("class")
    assert frame.loc["token", "features"] == 2 and frame.loc["token", "share_of_live"] == 0.4  # 5 live features
    assert frame.loc["token", "pair_shared"] == 0.5 and frame.loc["token", "pair_beyond"] == 0.0
    assert frame.loc["contextual", "pair_shared"] == 0.5 and frame.loc["contextual", "pair_beyond"] == 0.5
    assert frame.loc["other", "pair_shared"] == 0.0
    assert frame.loc["contextual", "ceiling_beyond"] == 1.0 and frame.loc["token", "ceiling_beyond"] == 0.0
    assert math.isnan(frame.loc["token", "floor_shared"])  # no floor comparison ran
    assert frame.loc["topical", "features"] == 0 and math.isnan(frame.loc["topical", "pair_shared"])
    text = "\n".join(class_section(tmp_path, ["gem", "mini"]))
    assert "## Feature classes" in text and "| contextual | 2 (40.0%) | 50.0% | 50.0% | 100.0% | 100.0% | n/a | n/a |" in text
    assert "**`mini`**" not in text  # no classes for mini: no table
