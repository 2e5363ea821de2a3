"""One heatmap per metric: layers of model A (rows) x layers of model B (columns), best cell marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autointerp.io import atomic_path

TITLES = {"cka": "debiased linear CKA", "svcca": "SVCCA (mean canonical corr.)", "mutual_knn": "mutual kNN alignment"}


def heatmap(grid: np.ndarray, metric: str, name_a: str, name_b: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n_a, n_b = grid.shape
    fig, ax = plt.subplots(figsize=(min(2.0 + 0.45 * n_b, 12), min(1.6 + 0.32 * n_a, 10)))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label=metric)
    if np.isfinite(grid).any():
        i, j = np.unravel_index(np.nanargmax(grid), grid.shape)
        ax.plot(j, i, marker="*", color="#d9541e", markersize=14, label=f"best: A{i} x B{j} = {grid[i, j]:.3f}")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_xticks(range(n_b))
    ax.set_yticks(range(n_a))
    ax.tick_params(labelsize=7)
    ax.set_xlabel(f"{name_b}: block")
    ax.set_ylabel(f"{name_a}: block")
    ax.set_title(f"{TITLES.get(metric, metric)} per layer pair")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
