"""The cost ledger (``autointerp.rundir.stage_cost``) as table rows, for the console table that ends
``autointerp run`` and the report's "Run cost" section (``autointerp.report.cost``): one row per stage, its
parts (per model / pair) under it when it has several, and the total."""

from __future__ import annotations

from rich.table import Table

_CPU_COLUMNS = (("wall (s)", "wall_s"), ("CPU (s)", "cpu_s"), ("peak RSS (MB)", "peak_rss_mb"))
_GPU_COLUMNS = (("CUDA (s)", "cuda_s"), ("peak GPU (MB)", "peak_gpu_mb"))


def _columns(ledger: dict) -> tuple[tuple[str, str], ...]:
    gpu = any("cuda_s" in s or "peak_gpu_mb" in s for s in ledger["stages"])
    return _CPU_COLUMNS + (_GPU_COLUMNS if gpu else ())


def _number(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _ran(entry: dict) -> str:
    return "ran" if entry.get("ran") else "reused"


def cost_rows(ledger: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): stage or "↳ part", ran / reused, then wall, CPU, peak RSS (and CUDA, peak GPU)."""
    columns = _columns(ledger)
    header = ["stage", "this run"] + [title for title, _ in columns]
    rows = []
    for stage in ledger["stages"]:
        rows.append([stage["stage"], _ran(stage)] + [_number(stage.get(key)) for _, key in columns])
        parts = stage.get("parts") or {}
        if len(parts) > 1:
            rows += [[f"↳ {name}", _ran(part)] + [_number(part.get(key)) for _, key in columns] for name, part in sorted(parts.items())]
    n_ran = sum(bool(s.get("ran")) for s in ledger["stages"])
    rows.append(["total", f"{n_ran} of {len(ledger['stages'])} ran"] + [_number(ledger["total"].get(key)) for _, key in columns])
    return header, rows


def cost_table(ledger: dict, title: str = "run cost (reused stages: their cost when they ran)") -> Table:
    table = Table(title=title)
    header, rows = cost_rows(ledger)
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i > 1 else "left")
    for row in rows:
        table.add_row(*row, style="bold" if row[0] == "total" else None)
    return table
