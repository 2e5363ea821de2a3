"""Builders for the explain/score tests: a tiny run directory with real exemplar files of known features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autointerp.exemplars.mine import EXEMPLAR_SCHEMA

# feature -> (words it fires on, sentences where they occur, sentences without them)
FEATURES = {
    0: ({"volcano", "lava", "eruption", "magma"}, [
        "the volcano erupted and lava flowed into the sea", "a violent eruption sent magma down the slopes",
        "the old volcano near the town is still active", "hot lava and ash covered the village",
        "scientists measured magma below the volcano", "the eruption lasted three days",
        "lava fields stretch across the island", "the volcano last erupted in 1902",
    ], ["the bank raised interest rates again", "farmers grow wheat and barley here", "the parliament passed a new budget law",
        "the national football team won the cup", "exports of coffee rose last year", "the railway links the two largest cities"]),
    1: ({"coffee", "tea", "cocoa"}, [
        "exports of coffee and tea rose sharply", "the country grows cocoa for export", "coffee is the main cash crop",
        "tea plantations cover the hills", "cocoa prices fell in the spring", "coffee and cocoa make up most exports",
        "local tea is sold at the market", "the coffee harvest was poor",
    ], ["the volcano erupted last year", "the navy has four frigates", "the constitution was amended in 2010",
        "the river floods every spring", "the capital has two universities", "the president serves a five year term"]),
    2: ({"navy", "army", "frigates", "soldiers"}, [
        "the navy operates six frigates", "the army has about 5000 soldiers", "soldiers patrol the northern border",
        "the navy and army held joint drills", "new frigates were bought from abroad", "the army was founded in 1950",
        "two frigates guard the coast", "the navy recruits young soldiers",
    ], ["tea plantations cover the hills", "the bank cut interest rates", "tourism brings many visitors each summer",
        "the lake is the largest in the region", "rice is the staple food", "the census counted two million people"]),
}


def _window(feature: int, split: str, kind: str, rank: int, context_id: int, text: str, words: set[str], scale: float) -> dict:
    tokens, starts, ends, acts = [], [], [], []
    pos = 0
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        tokens.append(piece)
        starts.append(pos)
        ends.append(pos + len(piece))
        acts.append(scale if word in words else 0.0)
        pos += len(piece)
    acts_arr = np.asarray(acts, dtype=np.float32)
    max_index = int(np.argmax(acts_arr)) if acts_arr.max() > 0 else len(tokens) // 2
    return {
        "feature": feature, "split": split, "kind": kind, "rank_or_quantile": rank, "context_id": context_id,
        "doc_id": f"doc{context_id}", "max_act": float(acts_arr.max()), "max_index": max_index, "tokens": tokens,
        "token_ids": list(range(len(tokens))), "acts": acts_arr.tolist(), "char_start": starts, "char_end": ends, "text": text,
    }


def make_run(root: Path, models: tuple[str, ...] = ("gemma-3-270m",)) -> Path:
    """A run directory whose models each have exemplars.parquet + feature_stats.parquet for FEATURES (no SAE)."""
    for slug in models:
        rows, ctx = [], 0
        for feature, (words, active, inactive) in FEATURES.items():
            for i, text in enumerate(active):
                split, kind = ("train", "top") if i < 4 else ("test", "quantile")
                rows.append(_window(feature, split, kind, i, ctx, text, words, 1.0 + 0.1 * (i % 3)))
                ctx += 1
            for i, text in enumerate(inactive):
                rows.append(_window(feature, "train" if i % 2 == 0 else "test", "random", i, ctx, text, set(), 0.0))
                ctx += 1
        folder = root / slug
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=EXEMPLAR_SCHEMA), folder / "exemplars.parquet")
        stats = pd.DataFrame({"feature": [0, 1, 2, 3], "n_active_tokens": [10, 10, 10, 0], "density": [0.01, 0.02, 0.03, 0.0],
                              "max_act": [1.2, 1.2, 1.2, 0.0], "mean_act": [1.0, 1.0, 1.0, 0.0], "n_contexts_active": [8, 8, 8, 0],
                              "dead": [False, False, False, True]})
        stats.to_parquet(folder / "feature_stats.parquet")
    return root
