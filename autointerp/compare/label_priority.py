"""Which features of each model the explain stage labels first, as this comparison ranks them: ``label_priority.json``.

Why a file of its own: ``[explain] select = "contextual"`` / ``"matched"`` spend the LLM on the features the
comparison found interesting (both sides of the best shared pairs), and the explain stage sits below compare,
so it reads these rankings instead of compare's matches table (whose columns are compare's business). The
rankings are made from the matches exactly as written (``matches.parquet`` read back), so the choice is the
one the table gives. Per model:

- ``matched``: its side of the activation-matched pairs (``method`` activation or both), shared pairs first,
  then by activation correlation, highest first;
- ``contextual``: its side of the shared pairs that stay correlated beyond word identity (``kind`` contextual),
  pairs where neither side is a token detector first (a token feature's label is its word list, no LLM),
  then by the correlation beyond words (``contextual_corr``, else ``activation_corr``), highest first;
- ``shared``: its features with a shared activation partner (ascending ids).
"""

from __future__ import annotations

import pandas as pd

from autointerp.exemplars.feature_classes import read_classes
from autointerp.io import read_parquet, write_json
from autointerp.rundir.layout import ModelDir, PairDir

DEFINITIONS = {
    "matched": "the model's side of the activation-matched pairs: shared first, then by activation_corr (highest first)",
    "contextual": "its side of the shared pairs of kind contextual: pairs without a token detector first, then by contextual_corr (highest first)",
    "shared": "its features with a shared activation partner",
}


def label_priority(matches: pd.DataFrame, slugs: tuple[str, str], classes: tuple[dict[int, str], dict[int, str]]) -> dict:
    """The rankings of both models (``slugs``: model_a, model_b; ``classes``: their feature classes)."""
    m = matches[matches["method"].isin(["activation", "both"])]
    ranked = m.sort_values(["shared", "activation_corr"], ascending=False)
    order = "contextual_corr" if "contextual_corr" in m.columns else "activation_corr"
    beyond = m[m["shared"] & (m.get("kind", pd.Series("", index=m.index)) == "contextual")].copy()
    beyond["_tokens"] = sum((beyond[col].map(cl) == "token").astype(int) for col, cl in zip(("feature_a", "feature_b"), classes))
    beyond = beyond.sort_values(["_tokens", order], ascending=[True, False], kind="stable")
    return {"models": {slug: {"matched": [int(f) for f in ranked[side]], "contextual": [int(f) for f in beyond[side]],
                              "shared": sorted({int(f) for f in m.loc[m["shared"], side]})}
                       for slug, side in zip(slugs, ("feature_a", "feature_b"))},
            "definitions": DEFINITIONS}


def write_label_priority(pair: PairDir, slugs: tuple[str, str], model_dirs: tuple) -> None:
    """``label_priority.json`` of ``pair`` from its matches.parquet and the two models' feature classes."""
    classes = tuple(read_classes(ModelDir(d).feature_stats) for d in model_dirs)
    write_json(pair.label_priority, label_priority(read_parquet(pair.matches), slugs, classes))
