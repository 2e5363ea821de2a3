"""Explain chooses features from compare's label_priority.json, never from its matches table: the choice is the
one the matches table gave (``select`` contextual and matched, every size), and a comparison made before the
file existed is refused with the command that adds it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autointerp.compare.config import CompareConfig
from autointerp.compare.inputs import model_inputs
from autointerp.compare.stage import compare_pair
from autointerp.config import ModelEntry
from autointerp.errors import UserError
from autointerp.explain.config import ExplainConfig
from autointerp.explain.stage import contextual_features, select_features
from autointerp.io import read_json
from autointerp.rundir.layout import ModelDir, RunDir
from helpers.runs import SyntheticSpec, make_synthetic_run

CLASSES = ("token", "contextual", "topical", "other", "dead")


def _feature_stats(model_dir, d: int, rng: np.random.Generator) -> None:
    """A feature_stats.parquet with random densities, liveness and classes (exemplars' columns select reads)."""
    dead = rng.random(d) < 0.1
    pd.DataFrame({"feature": np.arange(d, dtype=np.int32), "density": rng.random(d).round(2),  # ties on purpose
                  "dead": dead, "n_contexts_active": np.where(rng.random(d) < 0.1, 1, 5),
                  "feature_class": [("dead" if x else CLASSES[i]) for x, i in zip(dead, rng.integers(0, 4, d))]
                  }).to_parquet(ModelDir(model_dir).feature_stats)


def _classes(model_dir) -> dict[int, str]:
    stats = pd.read_parquet(ModelDir(model_dir).feature_stats)
    return {int(f): str(c) for f, c in zip(stats["feature"], stats["feature_class"])}


def _selection_from_matches(run_dir, slug: str, cfg: ExplainConfig) -> list[int]:
    """What explain chose before label_priority.json existed, read straight from matches.parquet (its old code)."""
    pair = next(p for p in RunDir(run_dir).pairs() if slug in p.names and p.matches.is_file())
    a, b = pair.names
    m = pd.read_parquet(pair.matches)
    m = m[m["method"].isin(["activation", "both"])]
    side, other = ("feature_a", b) if slug == a else ("feature_b", a)
    stats = pd.read_parquet(ModelDir(run_dir / slug).feature_stats)
    live = stats[(~stats["dead"]) & (stats["n_contexts_active"] >= 2)]
    classes, n = _classes(run_dir / slug), cfg.n_features
    if cfg.select == "matched":
        chosen = [int(f) for f in m.sort_values(["shared", "activation_corr"], ascending=False).head(n)[side]]
        return sorted(set(chosen) & {int(f) for f in live["feature"]})
    order = "contextual_corr" if "contextual_corr" in m.columns else "activation_corr"
    beyond = m[m["shared"] & (m.get("kind", pd.Series("", index=m.index)) == "contextual")].copy()
    others = _classes(run_dir / other)
    classes_of = {"feature_a": classes if side == "feature_a" else others, "feature_b": classes if side == "feature_b" else others}
    beyond["_tokens"] = sum((beyond[col].map(cl) == "token").astype(int) for col, cl in classes_of.items())
    beyond = beyond.sort_values(["_tokens", order], ascending=[True, False], kind="stable")
    # the rankings as the old code made them from the table, merged with the model's own features by explain's code
    ranked = {"contextual": [int(f) for f in beyond[side]], "shared": sorted({int(f) for f in m.loc[m["shared"], side]})}
    chosen = contextual_features(ranked, n, live, classes, cfg.seed)
    return sorted(set(chosen) & {int(f) for f in live["feature"]})


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A synthetic pair with feature classes, compared for real (word level, as `autointerp run` does before explain)."""
    run_dir = tmp_path_factory.mktemp("priority")
    spec = SyntheticSpec(n_docs=40, n_shared=24, n_a_only=16, n_b_only=24, d_a=48, d_b=64, k=8)
    make_synthetic_run(run_dir, spec)
    rng = np.random.default_rng(3)
    for slug, d in (("synth-a", spec.d_a), ("synth-b", spec.d_b)):
        _feature_stats(run_dir / slug, d, rng)
    cfg = CompareConfig(document_level=False, representation=False, bootstrap=0, seed=0)
    compare_pair(run_dir, model_inputs(run_dir, ModelEntry("synth-a")), model_inputs(run_dir, ModelEntry("synth-b")), cfg)
    return run_dir


@pytest.mark.parametrize("select", ["contextual", "matched"])
def test_selection_from_label_priority_equals_the_one_from_the_matches(compared, select):
    pair = RunDir(compared).pair("synth-a", "synth-b")
    matches = pd.read_parquet(pair.matches)
    assert (matches["shared"] & (matches["kind"] == "contextual")).sum() > 4  # the contextual ranking has pairs to order
    for slug in ("synth-a", "synth-b"):
        for n in (0, 1, 3, 8, 17, 40, 200):
            for seed in (0, 1):
                cfg = ExplainConfig(n_features=n, select=select, seed=seed)
                assert select_features(compared / slug, cfg) == _selection_from_matches(compared, slug, cfg), (slug, n, seed)


def test_a_comparison_without_label_priority_is_refused_then_reused_compare_adds_it(compared):
    pair = RunDir(compared).pair("synth-a", "synth-b")
    saved = read_json(pair.label_priority)
    assert set(saved["models"]) == {"synth-a", "synth-b"}
    pair.label_priority.unlink()  # as a comparison made before the file existed
    with pytest.raises(UserError, match="rerun `autointerp compare`") as err:
        select_features(compared / "synth-a", ExplainConfig(n_features=4))
    assert "\n" not in str(err.value)
    cfg = CompareConfig(document_level=False, representation=False, bootstrap=0, seed=0)
    outcome = compare_pair(compared, model_inputs(compared, ModelEntry("synth-a")), model_inputs(compared, ModelEntry("synth-b")), cfg)
    assert outcome.skipped and read_json(pair.label_priority) == saved  # the finished comparison is reused; only the file is added
