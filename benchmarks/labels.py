"""Are the labels worth reading? Final, LLM, lexical and word-only labels against shuffled ones and hard negatives, on two corpora.

With no arguments (in a checkout where ``make demo`` has run) it reads the factbook run ``runs/default`` and a
prose run ``runs/prose-labels`` on the Python standard library's docstrings (``benchmarks/prose_corpus.py``),
building the corpus (``runs/prose-corpus/stdlib_docs.jsonl``, ~1 s) and the run when they are missing:
``autointerp run`` with the default settings but ``max_tokens = 80000``, each document's title as its entity
and no controls (``prose_config``); about 19 CPU-minutes, 56 min wall on a 2-core machine shared at load 10-15.
A complete prose run is only read (~20 s; a no-op ``autointerp run`` would take ~2 min, its report is redone);
an incomplete one is resumed (``autointerp run`` skips finished stages). ``--prose FILE`` takes
another prose corpus (any file the corpus loader reads; a missing or empty one is a one-line error naming it).

Every model directory with a scored ``labels.parquet`` counts. With ``--relabel`` the explain and score stages of
``--run-dir`` are re-run first (``--overwrite``); do that on a COPY of the run, e.g.::

    mkdir -p /tmp/h13_run && (cd runs/default && tar --exclude='./*/harvest' -cf - .) | (cd /tmp/h13_run && tar xf -)
    .venv/bin/python benchmarks/labels.py --run-dir /tmp/h13_run --relabel

Prints, per run, model and scorer, the mean held-out score of each label kind (LLM, lexical, word-only, shuffled,
final) against random windows and, in the ``<scorer>_hard`` rows, against hard negatives (windows holding the
feature's words where it is silent), with the LLM-vs-lexical Wilcoxon test; then, per feature class (token /
contextual / topical / other), final, word-only and shuffled labels against random windows and hard negatives
with the paired final-vs-word test against hard negatives. Ends with::

    RESULT llm_minus_shuffled= lexical_minus_shuffled= final_minus_shuffled= llm_beats_lexical=
           final_minus_shuffled_prose= hard_negative_final_minus_word= hard_negative_p= hard_negative_r=
           hard_negative_n= restated_window_share= hard_negative_final_minus_word_prose= restated_window_share_prose=

(one line). ``*_minus_shuffled``: the mean over the run's models of the embedding-scorer margin (mean held-out
AUROC of the kind minus that of shuffled labels; the first four keys are on the factbook run).
``llm_beats_lexical``: the share of features (pooled over models) whose LLM label's embedding score beats the
lexical label's (ties count half). ``hard_negative_*``: final minus word-only label, embedding AUROC against hard
negatives, on the contextual features of both models pooled into one table (one two-sided Wilcoxon signed-rank
test over all those features; ``_r`` the matched-pairs rank-biserial correlation, positive: final better; ``_n``
the features with both scores). ``restated_window_share``: the share of kept LLM labels (pooled over models) that
restate a window shown to the explainer (labels.json copy_checks.restating_rate, pooled). A key whose inputs are
absent (a run made before those columns existed) reads ``n/a``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PROSE_CORPUS = Path("runs/prose-corpus/stdlib_docs.jsonl")
PROSE_RUN = Path("runs/prose-labels")
PROSE_MAX_TOKENS = 80_000
SCORER = "embedding"  # the scorer of the RESULT keys
CLASSES = ("contextual", "topical", "token", "other")
TARGETS = {"final_minus_shuffled": 0.15, "restated_window_share": 0.10, "hard_negative_p": 0.05}


class BenchError(Exception):
    """A one-line error for the user (printed as ``error: ...``, exit 2)."""


# ---------------------------------------------------------------- summaries of labels tables (no I/O)


def _num(table: pd.DataFrame, column: str) -> pd.Series:
    if column not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=float)
    return pd.to_numeric(table[column], errors="coerce")


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


@dataclass
class RunSummary:
    """The RESULT quantities of one run (NaN where the inputs are absent)."""

    margins: dict = field(default_factory=dict)  # kind -> the embedding margin over shuffled, mean over models
    llm_beats_lexical: float = math.nan
    hard: object = None  # PairedDifference: final vs word-only against hard negatives, contextual features, pooled
    restated_share: float = math.nan
    n_restate: int = 0  # kept LLM labels with a restating flag

    @property
    def hard_difference(self) -> float:
        return self.hard.difference if self.hard is not None and self.hard.n else math.nan


def summarize(tables: dict[str, pd.DataFrame]) -> RunSummary:
    """The RESULT quantities of one run from its models' labels tables (all rows; ``status == "ok"`` kept here)."""
    from autointerp.eval.paired import compare_kinds, paired_difference

    per_kind: dict[str, list[float]] = {"llm": [], "lexical": [], "final": [], "word": []}
    wins: list[float] = []
    restates: list[float] = []
    pooled = []
    for table in tables.values():
        restates += list(_num(table, "restates_window").dropna())
        ok = table[table["status"] == "ok"] if "status" in table.columns else table
        if f"score_{SCORER}" in ok.columns:
            c = compare_kinds(ok, SCORER)
            for kind in per_kind:
                per_kind[kind].append(c.means[kind] - c.means["shuffled"])
            diff = (_num(ok, f"score_{SCORER}") - _num(ok, f"lexical_{SCORER}")).dropna().to_numpy()
            wins += list((diff > 0) + 0.5 * (diff == 0))
        pooled.append(ok)
    summary = RunSummary(margins={k: _mean(v) for k, v in per_kind.items()}, llm_beats_lexical=_mean(wins),
                         restated_share=float(np.mean(restates)) if restates else math.nan, n_restate=len(restates))
    if pooled:
        table = pd.concat(pooled, ignore_index=True)
        if "feature_class" in table.columns and f"word_{SCORER}_hard" in table.columns and f"final_{SCORER}_hard" in table.columns:
            summary.hard = paired_difference(table, f"{SCORER}_hard", "final", "word", table["feature_class"].astype(str) == "contextual")
    return summary


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def result_line(factbook: RunSummary, prose: RunSummary | None) -> str:
    """The one RESULT line (``n/a`` for a key whose inputs are absent)."""
    hard = factbook.hard
    p = hard.p_value if hard is not None and hard.n else math.nan
    r = hard.effect_size if hard is not None and hard.n else math.nan
    keys = {
        "llm_minus_shuffled": _fmt(factbook.margins.get("llm", math.nan)),
        "lexical_minus_shuffled": _fmt(factbook.margins.get("lexical", math.nan)),
        "final_minus_shuffled": _fmt(factbook.margins.get("final", math.nan)),
        "llm_beats_lexical": _fmt(factbook.llm_beats_lexical),
        "final_minus_shuffled_prose": _fmt(prose.margins.get("final", math.nan) if prose else math.nan),
        "hard_negative_final_minus_word": _fmt(factbook.hard_difference),
        "hard_negative_p": "n/a" if math.isnan(p) else f"{p:.3g}",
        "hard_negative_r": "n/a" if math.isnan(r) else f"{r:+.2f}",
        "hard_negative_n": str(hard.n) if hard is not None else "n/a",
        "restated_window_share": _fmt(factbook.restated_share),
        "hard_negative_final_minus_word_prose": _fmt(prose.hard_difference if prose else math.nan),
        "restated_window_share_prose": _fmt(prose.restated_share if prose else math.nan),
    }
    return "RESULT " + " ".join(f"{k}={v}" for k, v in keys.items())


def targets(factbook: RunSummary, prose: RunSummary | None) -> list[str]:
    """Each target of issue 23 item 6: met, or missed by how much (n/a without its inputs)."""
    out = []
    floor = TARGETS["final_minus_shuffled"]
    for name, summary in (("factbook", factbook), ("prose", prose)):
        value = summary.margins.get("final", math.nan) if summary else math.nan
        verdict = "" if math.isnan(value) else " (met)" if value >= floor else f" (MISSED by {floor - value:.3f})"
        out.append(f"  final - shuffled >= {floor} on {name}: {_fmt(value)}{verdict}")
    for name, summary in (("factbook", factbook), ("prose", prose)):
        hard = summary.hard if summary else None
        if hard is None or not hard.n:
            out.append(f"  final > word-only against hard negatives, contextual features, {name}: n/a")
            continue
        met = hard.difference > 0 and not math.isnan(hard.p_value) and hard.p_value < TARGETS["hard_negative_p"]
        verdict = "met" if met else ("MISSED: final is not better" if hard.difference <= 0 else f"MISSED: p = {hard.p_value:.3g} >= 0.05")
        out.append(f"  final > word-only against hard negatives, contextual features, {name}: {hard.mean_a:.3f} vs {hard.mean_b:.3f}, "
                   f"difference {hard.difference:+.3f}, Wilcoxon p = {hard.p_value:.3g}, rank-biserial r = {hard.effect_size:+.2f}, "
                   f"n = {hard.n} ({verdict})")
    ceiling = TARGETS["restated_window_share"]
    for name, summary in (("factbook", factbook), ("prose", prose)):
        value = summary.restated_share if summary else math.nan
        if math.isnan(value):
            out.append(f"  kept LLM labels restating a window < {ceiling:.0%} on {name}: n/a")
            continue
        verdict = "met" if value < ceiling else f"MISSED by {value - ceiling:.3f}"
        out.append(f"  kept LLM labels restating a window < {ceiling:.0%} on {name}: {value:.3f} "
                   f"({round(value * summary.n_restate)} of {summary.n_restate}; {verdict})")
    return out


# ---------------------------------------------------------------- printing one run


def read_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """model directory name -> its labels table, for every model directory with a labels.parquet."""
    return {path.parent.name: pd.read_parquet(path) for path in sorted(run_dir.glob("*/labels.parquet"))}


def print_run(title: str, tables: dict[str, pd.DataFrame]) -> None:
    from autointerp.eval.paired import compare_kinds, paired_difference, scorers_in

    print(f"==== {title}")
    for slug, table in tables.items():
        ok = table[table["status"] == "ok"] if "status" in table.columns else table
        print(f"== {slug}: {len(ok)} labelled features")
        for scorer in scorers_in(ok):
            for column in (scorer, f"{scorer}_hard"):
                if f"score_{column}" not in ok.columns:
                    continue
                c = compare_kinds(ok, column)
                shuffled = c.means["shuffled"]
                kinds = " ".join(f"{k}={_fmt(c.means[k])}" for k in ("llm", "lexical", "word", "shuffled", "final"))
                parts = " ".join(f"{k}-shuffled={c.means[k] - shuffled:+.3f}" for k in ("llm", "lexical", "word", "final")
                                 if not math.isnan(c.means[k] - shuffled))
                print(f"  {column:<16} {kinds} {parts} llm>lexical={_fmt(c.llm_beats_lexical, 2)} "
                      f"(n={c.n}, Wilcoxon p={c.p_value:.3g}, r={c.effect_size:+.2f})")
        if "label_source" in ok.columns:
            print(f"  final label source: {ok['label_source'].value_counts().to_dict()}"
                  + (f"; LLM skipped (token features): {int(_num(ok, 'llm_skipped').fillna(0).sum())}" if "llm_skipped" in ok.columns else ""))
        restates = _num(table, "restates_window").dropna()
        if len(restates):
            print(f"  kept LLM labels restating a window: {int(restates.sum())} of {len(restates)}")
        if "feature_class" not in ok.columns:
            print("  per class: n/a (labels.parquet has no feature_class column: made before issue 23)")
            continue
        for cls in CLASSES:
            mask = ok["feature_class"].astype(str) == cls
            if not mask.any():
                continue
            frame = ok[mask]
            mean = lambda c: _fmt(float(_num(frame, c).mean()))  # noqa: E731
            row = " ".join(f"{k}={mean(f'{p}_{SCORER}')}/{mean(f'{p}_{SCORER}_hard')}"
                           for k, p in (("final", "final"), ("word", "word"), ("shuffled", "baseline")))
            d = paired_difference(ok, f"{SCORER}_hard", "final", "word", mask)
            test = (f"final-word (hard)={d.difference:+.3f} (Wilcoxon p={d.p_value:.3g}, r={d.effect_size:+.2f}, n={d.n})" if d.n
                    else "final-word (hard)=n/a")
            print(f"  class {cls:<10} n={int(mask.sum()):<3} {SCORER} random/hard: {row} {test}")


# ---------------------------------------------------------------- the prose run


def check_corpus(path: Path) -> None:
    """A one-line error when the prose corpus is missing or empty."""
    if not path.exists():
        raise BenchError(f"prose corpus '{path}' does not exist; pass an existing corpus file with --prose, or leave --prose out to build the default")
    if path.is_dir():
        if not any(p.is_file() and p.stat().st_size for p in path.rglob("*")):
            raise BenchError(f"prose corpus '{path}' is an empty directory; pass a corpus file with text in it")
        return
    try:
        with path.open("rb") as fh:
            empty = not fh.read(1 << 16).strip()
    except OSError as exc:
        raise BenchError(f"prose corpus '{path}' cannot be read: {exc.strerror or exc}") from None
    if empty:
        raise BenchError(f"prose corpus '{path}' is empty; pass a corpus file with text in it")


def build_corpus(path: Path) -> float:
    """The standard-library docstring corpus at ``path`` (in a child process: importing the stdlib stays out of
    this one); returns its seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / "prose_corpus.py"), str(path)], capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"building the prose corpus '{path}' failed: {tail[0]}")
    print(done.stdout.strip())
    return time.perf_counter() - started


def prose_config(corpus: Path, run_dir: Path) -> str:
    """The prose run's TOML: the defaults (``autointerp run`` fills every key not written here) on ``corpus``,
    with each document's ``title`` as its entity (the factbook's is its country: lexical labels then say "mostly in
    argparse", not "mostly in stdlib_docs.jsonl:12") and without the controls (the same-model ceiling and the
    random-weights floor: a third of the run's time, and no label depends on them)."""
    return (f"# benchmarks/labels.py's prose run: the default settings on another corpus, without the controls.\n"
            f"name = {json.dumps(run_dir.name)}\nrun_dir = {json.dumps(str(run_dir))}\n\n"
            f"[corpus]\ndataset = {json.dumps(str(corpus))}\nmax_tokens = {PROSE_MAX_TOKENS}\nentity_field = \"title\"\n\n"
            f"[controls]\nceiling = false\nfloor = \"none\"\n")


def run_complete(run_dir: Path) -> bool:
    """Every stage of ``autointerp run`` has finished there (the report is its last stage)."""
    from autointerp.config import load_config

    config = run_dir / "config.toml"
    if not (run_dir / "report.json").is_file() or not config.is_file():
        return False
    cfg = load_config(config)
    return all((run_dir / m.slug / "labels.parquet").is_file() for m in cfg.models) and \
        (run_dir / "report.json").stat().st_mtime >= max((run_dir / m.slug / "labels.parquet").stat().st_mtime for m in cfg.models)




def ensure_prose_run(corpus: Path, run_dir: Path) -> None:
    """Run (or resume) ``autointerp run`` on the prose corpus unless that run is complete; prints what it cost."""
    if run_complete(run_dir):
        from autointerp.config import load_config

        saved = load_config(run_dir / "config.toml").corpus.dataset
        if Path(saved).resolve() != corpus.resolve():
            raise BenchError(f"prose run '{run_dir}' was made on '{saved}', not '{corpus}'; pass --prose-run-dir with a new directory")
        print(f"prose run: reusing the complete run {run_dir} (delete it to rebuild: ~20 CPU-min)")
        return
    config = run_dir.parent / f"{run_dir.name}.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(prose_config(corpus, run_dir), encoding="utf-8")
    log = run_dir.parent / f"{run_dir.name}.log"
    print(f"prose run: autointerp run --config {config} (log: {log}; ~20 CPU-min) ...", flush=True)
    started = time.perf_counter()
    env = dict(os.environ, AUTOINTERP_PROGRESS=os.environ.get("AUTOINTERP_PROGRESS", "0"))
    with log.open("w", encoding="utf-8") as fh:
        done = subprocess.run([sys.executable, "-m", "autointerp", "run", "--config", str(config)], stdout=fh, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        raise BenchError(f"the prose run failed (exit {done.returncode}): {lines[-1].strip() if lines else 'no output'} (log: {log})")
    print(f"prose run: done in {time.perf_counter() - started:.0f} s")


# ---------------------------------------------------------------- main


def relabel(run_dir: Path) -> float:
    from autointerp.cli_common import load_run_config
    from autointerp.cli import stage

    cfg = load_run_config(None, run_dir, None)
    started = time.perf_counter()
    stage("explain").run(cfg, overwrite=True)
    explain_s = time.perf_counter() - started
    stage("score").run(cfg, overwrite=True)
    print(f"explain {explain_s:.0f} s, score {time.perf_counter() - started - explain_s:.0f} s")
    return explain_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/default"), help="the factbook run (default runs/default: `make demo`)")
    parser.add_argument("--relabel", action="store_true", help="re-run explain + score (--overwrite) on --run-dir first; use a copy of the run")
    parser.add_argument("--prose", type=Path, default=None,
                        help=f"the prose corpus (default: {PROSE_CORPUS}, the standard library's docstrings, built when missing)")
    parser.add_argument("--prose-run-dir", type=Path, default=PROSE_RUN, help=f"the prose run, built or resumed when incomplete (default {PROSE_RUN})")
    parser.add_argument("--no-prose", action="store_true", help="the factbook run only (the prose keys read n/a)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.prose is not None:
        check_corpus(args.prose)  # before anything else: a wrong path is the cheapest thing to find
    if not any(args.run_dir.glob("*/labels.parquet")):
        hint = "run `make demo` first" if args.run_dir == Path("runs/default") else "pass a finished run"
        raise BenchError(f"run directory '{args.run_dir}' has no */labels.parquet; {hint}")
    if args.relabel:
        relabel(args.run_dir)
    prose_tables = None
    if not args.no_prose:
        corpus = args.prose
        if corpus is None:
            corpus = PROSE_CORPUS
            if not corpus.is_file() or not corpus.stat().st_size:
                print(f"prose corpus: built in {build_corpus(corpus):.1f} s")
            check_corpus(corpus)
        ensure_prose_run(corpus, args.prose_run_dir)
        prose_tables = read_tables(args.prose_run_dir)
        if not prose_tables:
            raise BenchError(f"prose run '{args.prose_run_dir}' has no */labels.parquet after running")
    factbook_tables = read_tables(args.run_dir)
    print_run(f"factbook: {args.run_dir}", factbook_tables)
    if prose_tables is not None:
        print_run(f"prose: {args.prose_run_dir}", prose_tables)
    factbook = summarize(factbook_tables)
    prose = summarize(prose_tables) if prose_tables is not None else None
    print("targets (issue 23 item 6; embedding scorer):")
    print("\n".join(targets(factbook, prose)))
    print(f"wall {time.perf_counter() - started:.0f} s")
    print(result_line(factbook, prose))


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
