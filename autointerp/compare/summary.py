"""Console summary of one comparison (rich, on stderr): levels side by side, shared pairs, labels, findings."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from autointerp.explain.names import LEGEND, FeatureName, name_of
from autointerp.progress import console
from autointerp.rundir.layout import PairDir
from autointerp.io import read_parquet


def _fmt(x, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def print_summary(out_dir: Path, stats: dict, cached: bool, n_top: int = 10,
                  names: tuple[dict[int, FeatureName], dict[int, FeatureName]] = ({}, {})) -> None:
    """``names``: each model's feature names (``explain.names``), shown for the top shared pairs."""
    a, b = stats["model_a"], stats["model_b"]
    title = f"compare {a} vs {b}" + (" (cached)" if cached else "") + f": {out_dir}"
    levels = Table(title=title)
    for col in ("unit", "units", f"dead {a}", f"dead {b}", "matched", "null thr.", "shared", "mean corr", "median corr"):
        levels.add_column(col)
    for name, s in sorted(stats["levels"].items(), key=lambda item: item[0] != stats["unit"]):
        levels.add_row(name + (" *" if name == stats["unit"] else ""), f"{s['n_units']:,}", str(s["n_dead_a"]), str(s["n_dead_b"]),
                       str(s["n_pairs"]), _fmt(s["null_threshold"]), f"{s['n_shared']} ({s['n_shared'] / max(s['n_pairs'], 1):.0%})",
                       _fmt(s["mean_corr"]), _fmt(s["median_corr"]))
    console.print(levels)
    null = stats["null"]
    console.print(f"* primary unit; shared = matched corr above the {1 - null['alpha']:.0%} quantile of {null['n_samples']:,} "
                  f"null matched correlations (documents deranged between the models)", highlight=False)

    matches = read_parquet(PairDir(out_dir).matches)
    top = matches[matches["shared"]].sort_values("activation_corr", ascending=False).head(n_top)
    if len(top):
        t = Table(title=f"top shared pairs ({stats['unit']} level)")
        for col in (f"{a} feature", f"{b} feature", "corr", "p", "method", "name A", "name B"):
            t.add_column(col)
        for r in top.itertuples():
            t.add_row(str(r.feature_a), str(r.feature_b), f"{r.activation_corr:.3f}", f"{r.p_value:.2g}", r.method,
                      escape(name_of(names[0], r.feature_a)), escape(name_of(names[1], r.feature_b)))
        console.print(t)
        console.print(escape(LEGEND), highlight=False)

    label = stats["label"]
    if not label["available"]:
        console.print(f"[yellow]label matching:[/] {escape(label['reason'])}", highlight=False)
    else:
        ag = stats["agreement"]
        console.print(f"label matching: {label['n_pairs']} pairs, mean cosine {_fmt(label['mean_similarity'])}; "
                      f"agreement with activation matching: {ag['n_both']}/{ag['n_comparable']} "
                      f"({_fmt(ag['fraction'], '.1%')}), {ag['n_disagree']} disagreements (listed in stats.json)", highlight=False)
    _domains(stats["domains"], a, b)
    console.print(f"abstraction: {escape(stats['abstraction']['finding'])}", highlight=False)
    cal = stats.get("calibration") or {}
    if cal.get("beyond_lexical_fraction") is not None:
        console.print(f"beyond word identity: {cal['n_contextual']} of {cal['n_shared']} shared pairs are contextual "
                      f"({_fmt(cal['beyond_lexical_fraction'], '.1%')}); the rest are the same word in both models", highlight=False)
    for key, name in (("cka", "debiased CKA"), ("svcca", "SVCCA"), ("mutual_knn", "mutual kNN")):
        if cal.get(key):
            c = cal[key]
            console.print(f"raw activations, {name}: {_fmt(c['value'])} (derangement null {_fmt(c['null_mean'])}, p {_fmt(c['p_value'], '.3g')})", highlight=False)
    if "ceiling_shared_fraction" in (cal.get("not_measured") or {}):
        console.print("the same-model ceiling and the random-weights floor come next (`autointerp controls`)", highlight=False)


def _domains(doms: dict, a: str, b: str) -> None:
    """Live matchable features per domain (a side without exemplars, a control's, shows n/a)."""
    t = Table(title="concept domains (zero-shot on every live matchable feature's name + top window)")
    for col in ("domain", a, b, "shared"):
        t.add_column(col)
    cell = lambda counts, n: "n/a" if counts is None else str(counts.get(n, 0))  # noqa: E731
    for n in doms["names"]:
        t.add_row(n, cell(doms.get("counts_a"), n), cell(doms.get("counts_b"), n), cell(doms.get("counts_shared"), n))
    console.print(t)
