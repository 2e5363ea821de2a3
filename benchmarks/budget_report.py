"""The printing and plotting half of ``benchmarks/budget.py`` (the power study): the verdict columns as one
line per budget and as a markdown table, and the figure (pair / ceiling / floor against the budget, the
same-model ceiling against the width beside Paulo & Belrose's trend). Pure functions of the points the runs
gave; nothing here runs or reads a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = ("shared_a", "shared_b", "beyond_words_a", "beyond_words_b")
PB_TREND = {"small": 0.8, 32768: 0.4, 131072: 0.3}  # Paulo & Belrose: share of latents shared by two seeds, by width
SHORT = {"gemma-3-270m": "gemma", "minilm-l6": "minilm"}


def log(msg: str) -> None:
    print(msg, flush=True)


def budget_label(x: float) -> str:
    return f"{x:g}"



def pct(cell: dict | None) -> str:
    if not cell or cell.get("value") is None:
        return "n/a"
    ci = cell.get("ci")
    return f"{100 * cell['value']:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def count(cell: dict | None) -> str:
    if not cell or cell.get("value") is None:
        return "n/a"
    ci = cell.get("ci")
    return f"{cell['value']:,}" + (f" [{ci[0]:,.0f}, {ci[1]:,.0f}]" if ci else "")


def summary_line(point: dict) -> str:
    c = point["columns"]
    return "; ".join(f"{name} {c[name]['model']}: pair {pct(c[name]['pair'])} ceiling {pct(c[name]['ceiling'])} floor {pct(c[name]['floor'])} -> {c[name]['call']}"
                     for name in COLUMNS)


def table(points: list[dict]) -> str:
    rows = ["| budget | tokens (Gemma) | column | pair | ceiling | floor | call | pairs: pair / ceiling / floor |", "|---|---|---|---|---|---|---|---|"]
    for p in points:
        tok = p["harvested_tokens"].get("gemma-3-270m") or next(iter(p["harvested_tokens"].values()), None)
        for name in COLUMNS:
            c = p["columns"][name]
            counts = f"{count(c['count'])} / {count(c['ceiling_count'])} / {count(c['floor_count'])}" if name.startswith("beyond") else ""
            rows.append(f"| {budget_label(p['budget'])}x | {tok:,} | {name.replace('_a', '').replace('_b', '')} {SHORT.get(c['model'], c['model'])} | "
                        f"{pct(c['pair'])} | {pct(c['ceiling'])} | {pct(c['floor'])} | {c['call']} | {counts} |")
    return "\n".join(rows)


def plot(points: list[dict], widths: list[dict], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot")
        return None
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    xs = [p["budget"] for p in points]
    styles = {"pair": ("tab:blue", "o", "pair"), "ceiling": ("tab:green", "^", "ceiling (2nd SAE seed)"), "floor": ("tab:red", "v", "floor (random weights)")}

    def errorbars(ax, col_name, scale=100.0):
        for j, (key, (colour, marker, label)) in enumerate(styles.items()):
            vals, lo, hi, xx = [], [], [], []
            for p, x in zip(points, xs):
                cell = p["columns"][col_name][key]
                if not cell or cell.get("value") is None:
                    continue
                v = cell["value"] * scale
                ci = cell.get("ci") or [cell["value"], cell["value"]]
                xx.append(x * (1 + 0.04 * (j - 1)))
                vals.append(v)
                lo.append(v - ci[0] * scale)
                hi.append(ci[1] * scale - v)
            ax.errorbar(xx, vals, yerr=[lo, hi], color=colour, marker=marker, capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{budget_label(x)}x" for x in xs])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)

    for i, name in enumerate(COLUMNS):
        ax = axes[i // 2][i % 2]
        errorbars(ax, name)
        model = points[0]["columns"][name]["model"]
        kind = "shared (partner above the null)" if name.startswith("shared") else "beyond words (contextual pairs)"
        ax.set(title=f"{kind}, % of {model}'s features", xlabel="training-token budget (x default)", ylabel="%")
        ax.legend(fontsize=8)
    ax = axes[0][2]  # beyond-words pair counts
    for key, (colour, marker, label) in styles.items():
        field = {"pair": "count", "ceiling": "ceiling_count", "floor": "floor_count"}[key]
        for name, ls in (("beyond_words_a", "-"), ("beyond_words_b", "--")):
            if key == "pair" and name == "beyond_words_b":
                continue  # one pair count (the same for both columns)
            vals = [(x, p["columns"][name][field]) for x, p in zip(xs, points) if p["columns"][name][field]]
            if not vals:
                continue
            v = np.array([c["value"] for _, c in vals], float)
            ci = np.array([c.get("ci") or [c["value"]] * 2 for _, c in vals], float)
            tag = "" if key == "pair" else f" {SHORT.get(points[0]['columns'][name]['model'], '')}"
            ax.errorbar([x for x, _ in vals], v, yerr=[v - ci[:, 0], ci[:, 1] - v], color=colour, marker=marker, ls=ls, capsize=3, label=label + tag)
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{budget_label(x)}x" for x in xs])
    ax.minorticks_off()
    ax.set(title="beyond-words pairs (count)", xlabel="training-token budget (x default)", ylabel="pairs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1][2]  # ceiling against width
    if widths:
        colours = {"gemma-3-270m": "tab:purple", "minilm-l6": "tab:orange"}
        slugs = sorted({s for w in widths for s in w["models"]})
        for slug in slugs:
            pts = sorted((w["models"][slug]["d_sae"], w["models"][slug]) for w in widths if slug in w["models"])
            d = np.array([p[0] for p in pts], float)
            v = np.array([p[1]["shared"]["value"] for p in pts], float)
            ci = np.array([p[1]["shared"]["ci"] or [p[1]["shared"]["value"]] * 2 for p in pts], float)
            c = colours.get(slug, None)
            ax.errorbar(d, v, yerr=[v - ci[:, 0], ci[:, 1] - v], marker="o", color=c, capsize=3, label=f"{SHORT.get(slug, slug)}: ceiling, activation correlation")
            if all(p[1].get("weights") for p in pts):
                ax.plot(d, [p[1]["weights"]["dec"] for p in pts], marker="s", ls="--", color=c, label=f"{SHORT.get(slug, slug)}: decoder cos >= 0.7 (P&B criterion)")
        ax.plot([32768, 131072], [PB_TREND[32768], PB_TREND[131072]], "k*-", ms=11, label="Paulo & Belrose (2025): 0.4 at 32k, 0.3 at 131k")
        ax.axhline(PB_TREND["small"], color="k", ls=":", lw=1, label="P&B: ~0.8 at very small widths")
        ax.set_xscale("log", base=2)
        ax.set(title="same-model ceiling against dictionary width", xlabel="d_sae (latents)", ylabel="fraction shared between two seeds", ylim=(0, 1))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    else:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
