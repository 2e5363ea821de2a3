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
from autointerp.report.matrix import sharing_matrix
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


SCORE_KINDS = (("llm", "LLM labels", "#3b75af", None), ("lexical", "lexical labels", "#e08a2c", None),
               ("shuffled", "shuffled labels", "#bbbbbb", None), ("final", "final (LLM or lexical, kept per feature)", "white", "//"))


def score_plot_data(run: RunInputs) -> list[dict]:
    """What the label-score plot draws: per model, scorer and label kind (llm, lexical, shuffled, final) the mean
    held-out score and how many features it averages (NaN / 0 where that kind was not scored), in plot order."""
    from autointerp.eval.paired import compare_kinds

    out = []
    for m in run.models:
        for scorer in (m.scorers if m.labels is not None else []):
            c = compare_kinds(m.labels, scorer)
            out += [{"model": m.slug, "scorer": scorer, "kind": kind, "mean": float(c.means[kind]), "n": int(c.counts[kind])}
                    for kind, *_ in SCORE_KINDS]
    return out


def score_plot(run: RunInputs, out_dir: Path) -> Plot | None:
    """Grouped bars per model and scorer: LLM, lexical and shuffled labels, and the final label (hatched). A scorer
    whose every call failed keeps its place on the axis, marked "no scores"."""
    everything = score_plot_data(run)
    groups = list(dict.fromkeys((d["model"], d["scorer"]) for d in everything))
    if not groups:
        return None
    data = [d for d in everything if d["n"] and np.isfinite(d["mean"])]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(groups) + 2), 3.8))
    value = {(d["model"], d["scorer"], d["kind"]): d["mean"] for d in data}
    width = 0.8 / len(SCORE_KINDS)
    for k, (kind, name, colour, hatch) in enumerate(SCORE_KINDS):
        points = [(g, value[key + (kind,)]) for g, key in enumerate(groups) if key + (kind,) in value]
        if points:
            offset = (k - (len(SCORE_KINDS) - 1) / 2) * width
            ax.bar([g + offset for g, _ in points], [v for _, v in points], width, label=name, color=colour, hatch=hatch,
                   edgecolor="#333333" if hatch else colour)
    for g, key in enumerate(groups):
        if not any(k[:2] == key for k in value):
            ax.text(g, 0.05, "no scores", ha="center", va="bottom", fontsize=8, color="#777777")
    ax.set_xticks(np.arange(len(groups)), [f"{slug}\n{scorer}" for slug, scorer in groups], fontsize=8)
    ax.set_ylabel("mean held-out score")
    means = [d["mean"] for d in data] or [1.0]
    ax.set_ylim(min(0.0, min(means) * 1.2), max(max(means), 0.0) * 1.35 + 1e-6)
    if data:
        ax.legend(fontsize=7, loc="upper right", ncols=2)
    ax.set_title("Label scores: LLM vs lexical vs shuffled labels")
    return _save(fig, out_dir, "label_scores.png", "Label scores: LLM vs lexical vs shuffled labels (and the final label)")


def matrix_plot(matrix: dict | None, out_dir: Path) -> Plot | None:
    """Heatmaps of the shared and beyond-words shares (diagonal: ceiling), the values written in the cells."""
    if not matrix:
        return None
    plt = _pyplot()
    slugs = matrix["models"]
    n = len(slugs)
    fig, axes = plt.subplots(1, 2, figsize=(4.2 * 2 + 1.5, 0.7 * n + 2.2))
    for ax, measure in zip(axes, ("shared", "beyond_words")):
        values = np.array([[c["value"] if c else np.nan for c in row] for row in matrix["cells"][measure]], float)
        image = ax.imshow(values * 100, cmap="viridis", vmin=0)
        for i in range(n):
            for j in range(n):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{100 * values[i, j]:.1f}", ha="center", va="center", color="white" if values[i, j] < np.nanmax(values) / 2 else "black", fontsize=8)
        ax.set_xticks(range(n), slugs, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(n), slugs, fontsize=8)
        ax.set_title(f"{measure.replace('_', ' ')} (% of row model; diagonal: ceiling)", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return _save(fig, out_dir, "sharing_matrix.png", "Sharing matrix")



def all_plots(run: RunInputs, out_dir: Path) -> dict[str, list[Plot]]:
    """Every figure, grouped by where the report shows it: 'run' or a pair key."""
    out: dict[str, list[Plot]] = {"run": [x for x in (density_plot(run, out_dir), score_plot(run, out_dir),
                                                      matrix_plot(sharing_matrix(run), out_dir)) if x]}
    for p in run.pairs:
        out[p.key] = [x for x in (null_plot(p, out_dir), similarity_scatter(p, out_dir), domain_plot(p, out_dir)) if x]
    return out
