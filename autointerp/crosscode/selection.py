"""Which crosscoder latents get exemplars, labels and a page: a bounded, seeded selection in named groups.

Groups, in this order; each takes up to ``per_group`` latents that fire on at least ``MIN_UNITS`` word
units and are not in an earlier group (so a latent is listed once, under its first group):

1. ``exclusive_posthoc_shared``: exclusive here (A-only / B-only) but its best SAE features form a pair the
   post-hoc view calls shared; most-used first (the disagreements of ``posthoc.disagreements``);
2. ``shared_posthoc_unshared``: shared here, on a pair the post-hoc view calls unshared; most-used first;
3. ``a_only`` / 4. ``b_only`` / 5. ``norm_only``: the most-used latents of each exclusive class;
6. ``leaning``: the most one-sided leaning latents (largest |r - 0.5|, then most-used);
7. ``random_shared``: shared latents drawn at random (``seed``).

Ties are broken by latent id, so the selection is a function of latents.parquet, ``per_group`` and ``seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_UNITS = 2  # a latent needs activating windows to be shown and labelled
GROUPS = {
    "exclusive_posthoc_shared": "crosscoder exclusive, post-hoc shared",
    "shared_posthoc_unshared": "crosscoder shared, post-hoc unshared",
    "a_only": "exclusive to A (most-used)",
    "b_only": "exclusive to B (most-used)",
    "norm_only": "exclusive by decoder norm only (most-used)",
    "leaning": "leaning (most one-sided)",
    "random_shared": "shared (random draw)",
}


def _group_frames(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    post = table["posthoc"] if "posthoc" in table.columns else pd.Series("unmapped", index=table.index)
    cls = table["class"]
    used = lambda frame: frame.sort_values(["n_units", "latent"], ascending=[False, True])  # noqa: E731
    leaning = table[cls == "leaning"]
    leaning = leaning.assign(_side=(leaning["relative_norm"] - 0.5).abs())
    return {
        "exclusive_posthoc_shared": used(table[cls.isin(["a_only", "b_only"]) & (post == "shared pair")]),
        "shared_posthoc_unshared": used(table[(cls == "shared") & (post == "unshared pair")]),
        "a_only": used(table[cls == "a_only"]),
        "b_only": used(table[cls == "b_only"]),
        "norm_only": used(table[cls == "norm_only"]),
        "leaning": leaning.sort_values(["_side", "n_units", "latent"], ascending=[False, False, True]),
        "random_shared": table[cls == "shared"].sort_values("latent"),
    }


def select_latents(table: pd.DataFrame, per_group: int, seed: int) -> pd.DataFrame:
    """Columns ``latent`` and ``group`` (a key of GROUPS), in group order; empty when ``per_group`` is 0."""
    chosen: list[tuple[int, str]] = []
    if per_group <= 0:
        return pd.DataFrame({"latent": np.zeros(0, np.int64), "group": np.zeros(0, object)})
    taken: set[int] = set()
    table = table[table["n_units"] >= MIN_UNITS]
    for group, frame in _group_frames(table).items():
        pool = [int(j) for j in frame["latent"] if int(j) not in taken]
        if group == "random_shared" and pool:
            rng = np.random.default_rng([seed, 7])
            pool = sorted(int(j) for j in rng.choice(pool, size=min(per_group, len(pool)), replace=False))
        for j in pool[:per_group]:
            chosen.append((j, group))
            taken.add(j)
    return pd.DataFrame({"latent": np.array([j for j, _ in chosen], np.int64), "group": np.array([g for _, g in chosen], object)})
