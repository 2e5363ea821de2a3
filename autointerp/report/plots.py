"""PNG figures for the report (matplotlib, Agg backend: no display needed).

Each function draws one figure from artifacts already loaded and returns a ``Plot`` (title and path
relative to the report) or None when its input is missing; files are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from autointerp.io import atomic_path
from autointerp.report.artifacts import PairInputs, RunInputs
from autointerp.report.label_quality import scorer_summaries
from autointerp.rundir.layout import PLOTS_DIR



class Plot(NamedTuple):
    title: str
    path: str  # relative to the report directory, e.g. plots/density.png


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str, title: str) -> Plot:
    plt = _pyplot()
    with atomic_path(out_dir / PLOTS_DIR / name) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Plot(title, f"{PLOTS_DIR}/{name}")


def density_plot(run: RunInputs, out_dir: Path) -> Plot | None:
    models = [m for m in run.models if m.stats is not None]
    if not models:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.2), squeeze=False)
    for ax, m in zip(axes[0], models):
        live = m.stats.loc[~m.stats["dead"].astype(bool) & (m.stats["density"] > 0), "density"].to_numpy(float)
        if live.size:
            ax.hist(np.log10(live), bins=40, color="#3b75af")
        ax.set_title(f"{m.slug}: {live.size:,} live, {int(m.stats['dead'].sum()):,} dead")
        ax.set_xlabel("log10 feature density (fraction of tokens)")
        ax.set_ylabel("features")
    fig.tight_layout()
    return _save(fig, out_dir, "density.png", "Feature density per model")


def null_plot(p: PairInputs, out_dir: Path) -> Plot | None:
    if p.matches is None or p.null is None:
        return None
    act = p.matches[p.matches["method"].isin(["activation", "both"])]["activation_corr"].to_numpy(float)
    act = act[np.isfinite(act)]
    null = p.null["corr"].to_numpy(float)
    null = null[np.isfinite(null)]
    if not act.size and not null.size:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    lo = min(act.min() if act.size else 0, null.min() if null.size else 0)
    hi = max(act.max() if act.size else 1, null.max() if null.size else 1)
    bins = np.linspace(lo, hi, 50)
    if null.size:
        ax.hist(null, bins=bins, density=True, alpha=0.6, color="#999999", label=f"null ({null.size:,} samples)")
    if act.size:
        ax.hist(act, bins=bins, density=True, alpha=0.6, color="#d9541e", label=f"matched pairs ({act.size:,})")
    threshold = ((p.stats or {}).get("null") or {}).get("threshold")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(float(threshold), color="black", linestyle="--", label=f"threshold {float(threshold):.3f}")
    ax.set_xlabel("activation correlation of a matched pair")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(f"Matched correlations vs null: {p.a} vs {p.b}")
    return _save(fig, out_dir, f"null_{p.key}.png", f"Matched correlations vs null ({p.a} vs {p.b})")


def similarity_scatter(p: PairInputs, out_dir: Path) -> Plot | None:
    if p.matches is None:
        return None
    m = p.matches[np.isfinite(p.matches["label_similarity"].astype(float)) & np.isfinite(p.matches["activation_corr"].astype(float))]
    if m.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    colours = {"activation": "#d9541e", "label": "#3b75af", "both": "#2a9d3a"}
    for method, group in m.groupby("method"):
        ax.scatter(group["label_similarity"], group["activation_corr"], s=12, alpha=0.7, color=colours.get(method, "#777777"),
                   label=f"{method} ({len(group)})")
    threshold = ((p.stats or {}).get("null") or {}).get("threshold")
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(float(threshold), color="black", linestyle="--", linewidth=0.8, label="shared threshold")
    ax.set_xlabel("label similarity (cosine of label embeddings)")
    ax.set_ylabel("activation correlation")
    ax.legend(fontsize=8, title="chosen by")
    ax.set_title(f"Label similarity vs activation correlation\n{p.a} vs {p.b}", fontsize=10)
    return _save(fig, out_dir, f"similarity_{p.key}.png", f"Label similarity vs activation correlation ({p.a} vs {p.b})")


def domain_plot(p: PairInputs, out_dir: Path) -> Plot | None:
    d = (p.stats or {}).get("domains") or {}
    names = list(d.get("names") or [])
    if not names or not any((d.get(k) or {}).get(n, 0) for k in ("counts_a", "counts_b", "counts_shared") for n in names):
        return None
    plt = _pyplot()
    series = [(f"{p.a} features", d.get("counts_a") or {}), (f"{p.b} features", d.get("counts_b") or {}), ("shared pairs", d.get("counts_shared") or {})]
    x = np.arange(len(names))
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(5.5, 0.8 * len(names) + 2), 3.8))
    for i, (label, counts) in enumerate(series):
        ax.bar(x + (i - 1) * width, [counts.get(n, 0) for n in names], width, label=label)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    ax.set_title(f"Concept domains: {p.a} vs {p.b}")
    return _save(fig, out_dir, f"domains_{p.key}.png", f"Concept domains ({p.a} vs {p.b})")


def score_plot(run: RunInputs, out_dir: Path) -> Plot | None:
    bars = [(m.slug, s) for m in run.models for s in scorer_summaries(m.labels, m.scorers)]
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(bars) + 2), 3.6))
    x = np.arange(len(bars))
    finite = lambda v: 0.0 if v is None or np.isnan(v) else float(v)  # noqa: E731 - a scorer whose every call failed has no mean
    ax.bar(x - 0.2, [finite(s.mean_score) for _, s in bars], 0.4, label="label", color="#3b75af")
    ax.bar(x + 0.2, [finite(s.mean_baseline) for _, s in bars], 0.4, label="shuffled-label baseline", color="#bbbbbb")
    ax.set_xticks(x, [f"{slug}\n{s.scorer}" for slug, s in bars], fontsize=8)
    ax.set_ylabel("mean score")
    tallest = max([finite(s.mean_score) for _, s in bars] + [finite(s.mean_baseline) for _, s in bars] + [0.0])
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), max(tallest, 0.0) * 1.3 + 1e-6)
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    ax.set_title("Label scores vs shuffled-label baseline")
    return _save(fig, out_dir, "label_scores.png", "Label scores vs shuffled-label baseline")


def all_plots(run: RunInputs, out_dir: Path) -> dict[str, list[Plot]]:
    """Every figure, grouped by where the report shows it: 'run' or a pair key."""
    out: dict[str, list[Plot]] = {"run": [x for x in (density_plot(run, out_dir), score_plot(run, out_dir)) if x]}
    for p in run.pairs:
        out[p.key] = [x for x in (null_plot(p, out_dir), similarity_scatter(p, out_dir), domain_plot(p, out_dir)) if x]
    return out
