"""Measured scaling of ``autointerp run`` with the corpus size: each stage's time and peak-RSS exponent.

Runs the whole pipeline (``autointerp run``: every stage it runs by default, the controls' extra SAEs and
random-weight model included) at several corpus sizes (``[corpus] max_tokens``; default 30k, 90k and 240k
tokens, 8x apart), each in a fresh run directory under ``--out-dir`` (default ``/tmp/scaling/<size>``),
everything else as configured (the packaged default, or ``--config``). The LLM stages (explain, score)
label and score a fixed number of features (``[explain] n_features``), so their cost is per feature, not
per token: their exponents are reported too and should come out near 0.

Nothing is timed here: each run's ``cost.json`` (``autointerp.rundir.stage_cost``) gives every stage's wall
seconds, CPU seconds and peak RSS (the process's high-water mark, reset at each stage's start; see
``autointerp.rundir.cost`` for what it includes). The x axis is the tokens harvested with the model the
corpus budget is counted with (``selection.json``'s ``counted_with``; the budget takes whole documents, so
it overshoots max_tokens a little). For each stage, and for the run's total (summed time, largest peak),
least squares of log(wall) and log(peak RSS) against log(tokens) give the exponents (1.0: linear). Targets
(issue 24): every stage's time exponent <= 1.15; peak RSS bounded by streaming, exponent <= 0.5.
The CPU-seconds exponent is printed beside the wall one: on a shared machine the wall exponent also
measures how the load changed between the runs. The RSS columns add the affine fit's growth (KB per token)
and each stage's extrapolated peak at 2M tokens.

Memory statement: the peak RSS of a 2,000,000-token, two-model run, extrapolated per stage and the largest
taken, both with the power law fitted above and with an affine fit (base + slope x tokens; a log-log fit of a
quantity with a large constant part, e.g. the loaded models, under-predicts its growth far out); the larger
of the two is ``rss_2m_gib``. The run's measured peak at the largest size must stay within 24 GiB: if not,
the benchmark exits with status 1 (``--strict`` also fails it when an exponent misses its target).

    .venv/bin/python benchmarks/scaling.py                         # ~35 min on 2 shared cores
    .venv/bin/python benchmarks/scaling.py --sizes 20000,60000,160000
    .venv/bin/python benchmarks/scaling.py --reuse                 # refit: keep runs that already finished
    .venv/bin/python benchmarks/scaling.py --snapshot              # run the committed code (git archive HEAD)

Writes ``<out-dir>/scaling.json`` (the measurements and fits) and the plot ``<out-dir>/scaling.png`` (time and
peak RSS per stage against tokens, log-log, with the fitted lines), and prints both paths.

Ends with: RESULT worst_time_exponent=... worst_stage=... worst_rss_exponent=... worst_rss_stage=...
worst_cpu_exponent=... worst_cpu_stage=... total_time_exponent=... total_rss_exponent=... rss_2m_gib=... largest_tokens=... largest_peak_gib=...
largest_within_24gib=true|false time_target_met=true|false rss_target_met=true|false
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TIME_TARGET, RSS_TARGET = 1.15, 0.5
LIMIT_GIB, TARGET_TOKENS = 24.0, 2_000_000
MB_PER_GIB = 1024.0


def log(msg: str) -> None:
    print(msg, flush=True)


# --- fitting (pure; tests/test_scaling_fit.py) --------------------------------------------------------------

def fit_power(x, y) -> tuple[float, float]:
    """(exponent, coefficient) of y = coefficient * x ** exponent, least squares in log-log."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power needs >= 2 points, all positive")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(math.exp(intercept))


def fit_affine(x, y) -> tuple[float, float]:
    """(slope, base) of y = base + slope * x, least squares."""
    slope, base = np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)
    return float(slope), float(base)


def predict_power(fit: tuple[float, float], x: float) -> float:
    exponent, coefficient = fit
    return coefficient * x**exponent


def predict_affine(fit: tuple[float, float], x: float) -> float:
    slope, base = fit
    return base + slope * x


def fit_stages(points: list[dict]) -> dict[str, dict]:
    """Per stage (and "total"): exponents of wall, CPU and peak RSS against tokens.

    ``points``: one per run, ``{"tokens": n, "stages": {stage: {"wall_s", "cpu_s", "peak_rss_mb"}}}``; a stage
    is fitted over the runs that have it (at least two). The total is the summed time and the largest peak."""
    names: list[str] = []
    for p in points:
        names += [s for s in p["stages"] if s not in names]
    fits = {}
    for name in names + ["total"]:
        rows = []
        for p in points:
            if name == "total":
                stages = p["stages"].values()
                rows.append((p["tokens"], sum(s["wall_s"] for s in stages), sum(s["cpu_s"] for s in stages), max(s["peak_rss_mb"] for s in stages)))
            elif name in p["stages"]:
                s = p["stages"][name]
                rows.append((p["tokens"], s["wall_s"], s["cpu_s"], s["peak_rss_mb"]))
        if len({r[0] for r in rows}) < 2:
            continue
        tokens, wall, cpu, rss = (np.array(c, dtype=float) for c in zip(*rows))
        fits[name] = {
            "tokens": tokens.tolist(), "wall_s": wall.tolist(), "cpu_s": cpu.tolist(), "peak_rss_mb": rss.tolist(),
            "time_exponent": fit_power(tokens, wall)[0],
            "cpu_exponent": fit_power(tokens, np.maximum(cpu, 1e-3))[0],
            "rss_exponent": fit_power(tokens, rss)[0],
            "rss_power": fit_power(tokens, rss),
            "rss_affine": fit_affine(tokens, rss),
            "time_power": fit_power(tokens, wall),
        }
    return fits


def rss_at(fits: dict[str, dict], tokens: float) -> tuple[float, str, float, str]:
    """Extrapolated run peak (MB) at ``tokens``: (power-law peak, its stage, affine peak, its stage); each the
    largest over the stages (the run's peak is its largest stage's)."""
    stages = {k: v for k, v in fits.items() if k != "total"} or fits
    power = {k: predict_power(v["rss_power"], tokens) for k, v in stages.items()}
    affine = {k: predict_affine(v["rss_affine"], tokens) for k, v in stages.items()}
    p, a = max(power, key=power.get), max(affine, key=affine.get)
    return power[p], p, affine[a], a


# --- running ------------------------------------------------------------------------------------------------

def run_dir_complete(run_dir: Path) -> bool:
    """A finished run: report.json written and every stage in cost.json ran (not reused from before)."""
    try:
        ledger = json.loads((run_dir / "cost.json").read_text())
    except (OSError, ValueError):
        return False
    return (run_dir / "report.json").exists() and bool(ledger.get("stages")) and all(s.get("ran") for s in ledger["stages"])


def snapshot(dest: Path) -> Path:
    """The committed code (``git archive HEAD``) unpacked into ``dest``; read-only on the repository."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    log(f"running the committed code ({commit}) from {dest}")
    return dest


def run_pipeline(size: int, run_dir: Path, config: str | None, reuse: bool, source: Path | None = None) -> float | None:
    """``autointerp run`` at max_tokens = size into a fresh ``run_dir``; its wall seconds (None: reused).
    ``source``: a directory whose ``autointerp`` package is run instead of the installed one."""
    if reuse and run_dir_complete(run_dir):
        log(f"[{size:,}] reusing the finished run in {run_dir}")
        return None
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "autointerp", "run", "--run-dir", str(run_dir), "--name", f"scaling-{size}", "--max-tokens", str(size)]
    if config:
        cmd += ["--config", str(Path(config).resolve())]
    log_path = run_dir.parent / f"{run_dir.name}.log"
    log(f"[{size:,}] {' '.join(cmd)}  (log: {log_path})")
    env = os.environ | {"AUTOINTERP_PROGRESS": "0"}
    if source is not None:  # ahead of the editable install (its finder comes after sys.path)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    with open(log_path, "w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=run_dir.parent).returncode
    seconds = time.perf_counter() - started
    if rc != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"[{size:,}] autointerp run failed (exit {rc}):\n" + "\n".join(tail))
    log(f"[{size:,}] done in {seconds / 60:.1f} min")
    return seconds


def harvested_tokens(run_dir: Path, fallback: int) -> int:
    """Tokens harvested with the model the corpus budget was counted with (its manifest's shard rows)."""
    try:
        counted_with = json.loads((run_dir / "corpus" / "selection.json").read_text()).get("counted_with")
    except (OSError, ValueError):
        counted_with = None
    manifests = sorted(run_dir.glob("*/harvest/harvest.json"))
    for path in sorted(manifests, key=lambda p: p.parts[-3] != counted_with):  # the counting model first
        try:
            manifest = json.loads(path.read_text())
            rows = sum(int(s["rows"]) for s in manifest["shards"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if rows > 0:
            return rows
    return fallback


def measurements(size: int, run_dir: Path) -> dict:
    ledger = json.loads((run_dir / "cost.json").read_text())
    stages = {}
    for s in ledger["stages"]:
        if not s.get("ran"):
            log(f"[{size:,}] warning: stage {s['stage']} did not run (reused); left out of the fit")
            continue
        stages[s["stage"]] = {k: float(s.get(k) or 0.0) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
        stages[s["stage"]]["parts"] = {k: {m: v.get(m) for m in ("wall_s", "cpu_s", "peak_rss_mb")} for k, v in (s.get("parts") or {}).items()}
    return {"max_tokens": size, "tokens": harvested_tokens(run_dir, size), "run_dir": str(run_dir), "stages": stages,
            "total": {k: ledger.get("total", {}).get(k) for k in ("wall_s", "cpu_s", "peak_rss_mb")}}


# --- plotting -----------------------------------------------------------------------------------------------

def plot(fits: dict[str, dict], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot")
        return None
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5.5))
    cmap = plt.get_cmap("tab10")
    for i, (name, f) in enumerate(fits.items()):
        colour = "black" if name == "total" else cmap(i % 10)
        style = dict(color=colour, lw=2.2 if name == "total" else 1.2)
        x = np.array(f["tokens"])
        grid = np.geomspace(x.min(), x.max(), 20)
        ax_t.loglog(x, f["wall_s"], "o", color=colour)
        ax_t.loglog(grid, [predict_power(f["time_power"], g) for g in grid], label=f"{name} ({f['time_exponent']:.2f})", **style)
        ax_m.loglog(x, np.array(f["peak_rss_mb"]) / MB_PER_GIB, "o", color=colour)
        ax_m.loglog(grid, [predict_power(f["rss_power"], g) / MB_PER_GIB for g in grid], label=f"{name} ({f['rss_exponent']:.2f})", **style)
    ax_t.set(xlabel="tokens", ylabel="wall seconds", title=f"time per stage (exponent; target <= {TIME_TARGET})")
    ax_m.set(xlabel="tokens", ylabel="peak RSS (GiB)", title=f"peak RSS per stage (exponent; target <= {RSS_TARGET})")
    from matplotlib.ticker import FormatStrFormatter

    ax_m.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
    ax_m.yaxis.set_minor_formatter(FormatStrFormatter("%.1f"))
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- main ---------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="30000,90000,240000", help="comma-separated max_tokens, >= 3 sizes spanning >= 8x (default 30000,90000,240000)")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/scaling"), help="run directories <out-dir>/<size>, the plot and scaling.json (default /tmp/scaling)")
    ap.add_argument("--config", default=None, help="TOML run config (default: the packaged default); max_tokens, name and run_dir are set per size")
    ap.add_argument("--reuse", action="store_true", help="keep a size's run directory when it holds a finished run (refit without rerunning)")
    ap.add_argument("--plot", type=Path, default=None, help="plot path (default <out-dir>/scaling.png)")
    ap.add_argument("--snapshot", action="store_true", help="run the committed code (git archive HEAD into <out-dir>/src), "
                    "not the working tree: others' edits in progress then cannot change or break the code mid-benchmark")
    ap.add_argument("--strict", action="store_true", help="exit 1 also when an exponent misses its target")
    args = ap.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    if len(sizes) < 3 or sizes[-1] < 8 * sizes[0]:
        log(f"note: issue 24 asks for >= 3 sizes spanning >= 8x; got {sizes}")
    out = args.out_dir.resolve()
    if out == ROOT or ROOT / "runs" in [out, *out.parents]:
        raise SystemExit(f"--out-dir {out}: write the runs outside the repository's runs/ (e.g. /tmp/scaling)")

    started = time.perf_counter()
    source = snapshot(out / "src") if args.snapshot else None
    points = []
    for size in sizes:
        run_dir = out / str(size)
        run_pipeline(size, run_dir, args.config, args.reuse, source)
        points.append(measurements(size, run_dir))
    fits = fit_stages(points)
    span = points[-1]["tokens"] / points[0]["tokens"]  # harvested tokens (a budget takes whole documents: the smallest overshoots)
    if span < 8:
        log(f"note: the harvested tokens span {span:.1f}x ({points[0]['tokens']:,} to {points[-1]['tokens']:,}); issue 24 asks for >= 8x")

    log(f"\n{'':<11}" + "".join(f"{p['tokens']:>19,}" for p in points) + "   exponents vs tokens      RSS growth")
    log(f"{'stage':<11}" + "".join(f"{'wall s/CPU s/GiB':>19}" for _ in points) + "   wall   CPU    RSS    KB/token  GiB@2M")
    for name, f in fits.items():
        cells = "".join(f"{w:>7.0f}/{c:>5.0f}/{r / MB_PER_GIB:>5.2f}" for w, c, r in zip(f["wall_s"], f["cpu_s"], f["peak_rss_mb"]))
        flags = (" TIME>" + str(TIME_TARGET) if f["time_exponent"] > TIME_TARGET else "") + (" RSS>" + str(RSS_TARGET) if f["rss_exponent"] > RSS_TARGET else "")
        at_2m = max(predict_power(f["rss_power"], TARGET_TOKENS), predict_affine(f["rss_affine"], TARGET_TOKENS)) / MB_PER_GIB
        log(f"{name:<11}{cells}  {f['time_exponent']:5.2f} {f['cpu_exponent']:5.2f}  {f['rss_exponent']:5.2f}  {f['rss_affine'][0] * 1024:9.2f}  {at_2m:6.2f}{flags}")

    stages = {k: v for k, v in fits.items() if k != "total"}
    worst_stage = max(stages, key=lambda k: stages[k]["time_exponent"])
    worst_rss_stage = max(stages, key=lambda k: stages[k]["rss_exponent"])
    worst_cpu_stage = max(stages, key=lambda k: stages[k]["cpu_exponent"])
    power_mb, power_stage, affine_mb, affine_stage = rss_at(fits, TARGET_TOKENS)
    rss_2m = max(power_mb, affine_mb) / MB_PER_GIB
    largest = points[-1]
    largest_peak = max(s["peak_rss_mb"] for s in largest["stages"].values()) / MB_PER_GIB
    within = largest_peak <= LIMIT_GIB
    time_ok = all(f["time_exponent"] <= TIME_TARGET for f in stages.values())
    rss_ok = all(f["rss_exponent"] <= RSS_TARGET for f in stages.values())
    log(f"\npeak RSS at {TARGET_TOKENS:,} tokens (two models): power law {power_mb / MB_PER_GIB:.2f} GiB ({power_stage}), "
        f"affine {affine_mb / MB_PER_GIB:.2f} GiB ({affine_stage}); stated: {rss_2m:.2f} GiB")
    log(f"largest size {largest['tokens']:,} tokens: measured peak {largest_peak:.2f} GiB, within {LIMIT_GIB:.0f} GiB: {within}")
    over = [f"{k} time {v['time_exponent']:.2f}" for k, v in stages.items() if v["time_exponent"] > TIME_TARGET]
    over += [f"{k} RSS {v['rss_exponent']:.2f}" for k, v in stages.items() if v["rss_exponent"] > RSS_TARGET]
    log("over target: " + (", ".join(over) if over else "none"))

    png = plot(fits, args.plot or out / "scaling.png")
    if png:
        log(f"plot: {png}")
    summary = {"sizes": sizes, "points": points, "fits": fits, "rss_2m_gib": rss_2m, "rss_2m_power_gib": power_mb / MB_PER_GIB,
               "rss_2m_affine_gib": affine_mb / MB_PER_GIB, "largest_peak_gib": largest_peak, "largest_within_24gib": within}
    (out / "scaling.json").write_text(json.dumps(summary, indent=2))
    log(f"data: {out / 'scaling.json'}  (benchmark wall {(time.perf_counter() - started) / 60:.1f} min)")

    b = lambda v: str(v).lower()  # noqa: E731
    log(f"RESULT worst_time_exponent={stages[worst_stage]['time_exponent']:.2f} worst_stage={worst_stage} "
        f"worst_rss_exponent={stages[worst_rss_stage]['rss_exponent']:.2f} worst_rss_stage={worst_rss_stage} "
        f"worst_cpu_exponent={stages[worst_cpu_stage]['cpu_exponent']:.2f} worst_cpu_stage={worst_cpu_stage} "
        f"total_time_exponent={fits['total']['time_exponent']:.2f} total_rss_exponent={fits['total']['rss_exponent']:.2f} "
        f"rss_2m_gib={rss_2m:.1f} largest_tokens={largest['tokens']} token_span={span:.1f} largest_peak_gib={largest_peak:.2f} "
        f"largest_within_24gib={b(within)} time_target_met={b(time_ok)} rss_target_met={b(rss_ok)}")
    if not within or (args.strict and not (time_ok and rss_ok)):
        sys.exit(1)


if __name__ == "__main__":
    main()
