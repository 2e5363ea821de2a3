"""Are the labels worth reading? LLM, lexical and final labels against shuffled ones, on held-out windows.

Reads a finished run (default ``runs/default``; the report's inputs: every model directory with a scored
``labels.parquet``). With ``--relabel`` it first re-runs the explain and score stages there (``--overwrite``:
best-of-n LLM candidates, lexical labels, final-label selection on training windows, three label kinds per
scorer); do that on a COPY of the run, e.g.::

    mkdir -p /tmp/h13_run && (cd runs/default && tar --exclude='./*/harvest' -cf - .) | (cd /tmp/h13_run && tar xf -)
    .venv/bin/python benchmarks/labels.py --run-dir /tmp/h13_run --relabel

Prints, per model and scorer, the mean held-out score minus the shuffled-label baseline for LLM, lexical and
final labels, the share of features where the LLM label beats the lexical one, the Wilcoxon p and the
rank-biserial effect size. Ends with ``RESULT llm_minus_shuffled=... lexical_minus_shuffled=...
final_minus_shuffled=... llm_beats_lexical=...``: the first three are means over the models of the
embedding-scorer margin; the last is the share of features (pooled over models) where the LLM label's
embedding score is higher than the lexical label's (ties count half).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd


def relabel(run_dir: Path) -> float:
    from autointerp.cli_common import load_run_config
    from autointerp.eval.stage import score_all
    from autointerp.explain.stage import explain_all

    cfg = load_run_config(None, run_dir, None)
    started = time.perf_counter()
    explain_all(cfg, overwrite=True)
    explain_s = time.perf_counter() - started
    score_all(cfg, overwrite=True)
    print(f"explain {explain_s:.0f} s, score {time.perf_counter() - started - explain_s:.0f} s")
    return explain_s


def main() -> None:
    from autointerp.eval.paired import compare_kinds, scorers_in
    from autointerp.rundir.layout import ModelDir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    parser.add_argument("--relabel", action="store_true", help="re-run explain + score (--overwrite) first; use a copy of the run")
    args = parser.parse_args()
    if args.relabel:
        relabel(args.run_dir)
    margins: dict[str, list[float]] = {"llm": [], "lexical": [], "final": []}
    wins: list[float] = []
    for labels_path in sorted(args.run_dir.glob("*/labels.parquet")):
        model = ModelDir(labels_path.parent)
        table = pd.read_parquet(model.labels)
        table = table[table["status"] == "ok"]
        print(f"== {model.slug}: {len(table)} labelled features")
        for scorer in scorers_in(table):
            c = compare_kinds(table, scorer)
            shuffled = c.means["shuffled"]
            parts = " ".join(f"{k}-shuffled={c.means[k] - shuffled:+.3f}" for k in ("llm", "lexical", "final"))
            print(f"  {scorer:<11} llm={c.means['llm']:.3f} lexical={c.means['lexical']:.3f} shuffled={shuffled:.3f} final={c.means['final']:.3f} "
                  f"{parts} llm>lexical={c.llm_beats_lexical:.2f} (n={c.n}, Wilcoxon p={c.p_value:.3g}, r={c.effect_size:+.2f})")
            if scorer == "embedding":
                for k in margins:
                    margins[k].append(c.means[k] - shuffled)
                both = table[["score_embedding", "lexical_embedding"]].apply(pd.to_numeric, errors="coerce").dropna()
                diff = (both["score_embedding"] - both["lexical_embedding"]).to_numpy()
                wins += list((diff > 0) + 0.5 * (diff == 0))
        if "label_source" in table.columns:
            print(f"  final label source: {table['label_source'].value_counts().to_dict()}")

    def mean(values: list[float]) -> float:
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    print(f"RESULT llm_minus_shuffled={mean(margins['llm']):.3f} lexical_minus_shuffled={mean(margins['lexical']):.3f} "
          f"final_minus_shuffled={mean(margins['final']):.3f} llm_beats_lexical={mean(wins):.3f}")


if __name__ == "__main__":
    main()
