"""Activation histograms: the stored table (``<model>/activation_histogram.parquet``) and its static SVG.

The SVG is inline markup, no script and no external resource, so the pages' Content-Security-Policy
(``default-src 'none'``) stays as strict as before. Each bar carries its bin range and count in a
``<title>`` child (a hover tooltip) and the axes are labelled with the bin edges and the largest count.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from autointerp.io import read_stamped_parquet, write_stamped_parquet
from autointerp.report.html_render import esc

SCHEMA = pa.schema([("feature", pa.int64()), ("max_act", pa.float32()), ("counts", pa.list_(pa.int64()))])
_META = b"autointerp.histogram_identity"


def write_histograms(path: Path, counts: np.ndarray, max_act: np.ndarray, identity: dict) -> None:
    frame = pd.DataFrame({"feature": np.arange(len(counts), dtype=np.int64), "max_act": max_act.astype(np.float32),
                          "counts": [row.tolist() for row in counts]})
    write_stamped_parquet(path, pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), _META, _stamp(identity))


def _stamp(identity: dict) -> str:
    return json.dumps(identity, sort_keys=True, default=str)


def read_histograms(path: Path, identity: dict) -> dict[int, tuple[np.ndarray, float]] | None:
    """feature -> (counts, max_act) when the file was made from the same SAE and harvest; else None."""
    table = read_stamped_parquet(path, _META, _stamp(identity))
    if table is None:
        return None
    features = table["feature"].to_pylist()
    maxes = table["max_act"].to_pylist()
    counts = table["counts"].to_pylist()
    return {int(f): (np.asarray(c, dtype=np.int64), float(m)) for f, m, c in zip(features, maxes, counts)}


def histogram_svg(counts: np.ndarray, max_act: float, title: str, width: int = 560, height: int = 170) -> str:
    """Bars of token counts per activation bin, with axis labels; empty histograms say so in text."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0 or max_act <= 0:
        return "<p class=\"meta\">No activations in the harvest (dead feature).</p>"
    left, bottom, top_pad = 48, 28, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    peak = int(counts.max())
    bar_w = plot_w / len(counts)
    step = max_act / len(counts)
    bars = []
    for i, c in enumerate(counts.tolist()):
        h = 0.0 if c == 0 else max(1.0, plot_h * c / peak)
        x, y = left + i * bar_w, top_pad + plot_h - h
        tip = f"{i * step:.3g} – {(i + 1) * step:.3g}: {c:,} tokens"
        bars.append(f"<rect class=\"bar\" x=\"{x:.1f}\" y=\"{y:.1f}\" width=\"{max(bar_w - 1, 1):.1f}\" height=\"{h:.1f}\" "
                    f"data-count=\"{c}\"><title>{esc(tip)}</title></rect>")
    axis_y = top_pad + plot_h
    labels = [
        f"<text x=\"{left}\" y=\"{axis_y + 16}\" text-anchor=\"start\">0</text>",
        f"<text x=\"{left + plot_w / 2:.1f}\" y=\"{axis_y + 16}\" text-anchor=\"middle\">{max_act / 2:.3g}</text>",
        f"<text x=\"{left + plot_w:.1f}\" y=\"{axis_y + 16}\" text-anchor=\"end\">{max_act:.3g}</text>",
        f"<text x=\"{left - 4}\" y=\"{top_pad + 8}\" text-anchor=\"end\">{peak:,}</text>",
        f"<text x=\"{left - 4}\" y=\"{axis_y}\" text-anchor=\"end\">0</text>",
    ]
    return (f"<svg class=\"histogram\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" "
            f"viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{esc(title)}\">"
            f"<title>{esc(title)}</title>"
            f"<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{left + plot_w}\" y2=\"{axis_y}\" stroke=\"#888\"/>"
            + "".join(bars) + "".join(labels) + "</svg>"
            f"<p class=\"meta\">{total:,} activating tokens in {len(counts)} equal bins from 0 to the max activation {max_act:.3g} "
            "(hover a bar for its range and count).</p>")
