"""Power study (issue 24): the verdict table at several training-token budgets, and the same-model ceiling at
several dictionary widths set beside Paulo & Belrose's published trend.

**Budget axis.** For each budget (a multiple of the base config's ``[corpus] max_tokens``; default 0.25, 1
and 4, i.e. 16x end to end; a GPU machine can run ``--budgets 1,4,16``), one run directory
``<out-dir>/budget-<x>`` with the base config and only ``max_tokens`` scaled. The SAEs train ``[train]
epochs`` passes over the harvest, so the training tokens scale with the budget too. Only the stages the
verdict needs run, one command each, in order: ``harvest``, ``train``, ``compare`` (activation matching;
no labels: the verdict does not use them), ``controls`` (same-model ceiling per model, random-weights floor).
From the pair's calibration (``controls.calibration.pair_calibration``: compare's with the controls) we read, for the shared and beyond-words columns
of each model, the pair's value, the same-model ceiling and the random-weights floor with their 95%
document-bootstrap intervals and the call; plus the pair counts and the raw-activation columns.

``--reuse-default`` (default ``runs/default``): the 1x point is read from that finished default run when its
config equals the base config in every section the verdict depends on (corpus, harvest, sae, train, compare,
controls, models) - nothing is rerun or written there; ``--reuse-default ''`` reruns it.

**Width axis.** For each ``--widths`` expansion factor (default 2, 8, 16: Gemma 1,280 / 5,120 / 10,240 latents,
MiniLM 768 / 3,072 / 6,144), a run directory ``<out-dir>/budget-width-<ef>`` holding a copy of the harvest of
the ``--width-budget`` run (its corpus and each model's harvest, so every width sees the same activations),
then ``train`` and ``controls`` with ``floor = "none"``: each model's SAE against a second seed at that
width, the pipeline's own ceiling (word-level activation correlation above the document null, with its
interval). The base width at the width budget is read from that run instead of retrained. Next to it, the
criterion of Paulo & Belrose (2025, "Sparse autoencoders trained on the same data learn different
features"): one-to-one Hungarian matching of the two seeds' decoder directions by cosine, a latent shared
when its partner's decoder cosine is >= 0.7 (``weights_dec``), and when the encoder cosine of the same pair
is >= 0.7 too (``weights_enc_dec``, their stricter reading), over all latents. Their reference trend for
two seeds of one model: ~0.8 of latents shared at very small widths, ~0.4 at 32k, ~0.3 at 131k, for SAEs
trained on billions of tokens (ours see 10^5-10^6).

``--snapshot`` runs the committed code (``git archive HEAD`` into ``<out-dir>/budget-src``, kept for a resumed
benchmark; ``--fresh-snapshot`` replaces it), so that others' edits in progress cannot change or break the code
mid-benchmark. Every stage is resumable and a rerun of a
finished stage is a no-op, so an interrupted benchmark continues where it stopped.

    .venv/bin/python benchmarks/budget.py                              # 0.25,1,4 x budget, widths 2,8,16
    .venv/bin/python benchmarks/budget.py --budgets 1,4,16 --reuse-default ''   # on a GPU machine
    .venv/bin/python benchmarks/budget.py --no-widths                 # the budget axis only
    .venv/bin/python benchmarks/budget.py --report                    # re-read finished runs, plot, no work
    .venv/bin/python benchmarks/budget.py --also /tmp/scaling/90000,/tmp/scaling/240000   # + scaling.py's runs as points

Writes ``<out-dir>/budget.json`` (every number below) and ``benchmarks/out/budget.png`` (``--plot``): shared
and beyond-words fractions per model against the budget (pair, ceiling, floor with intervals), the
beyond-words pair counts, and the ceiling against width with the published trend. Prints both paths.

Ends with: RESULT smallest_budget_above_floor=<x> (smallest budget at which both models' beyond-words
fractions are above the floor with non-overlapping intervals; none if no budget) smallest_budget_shared_above_floor=<x>
(the same for the word-level shared fractions of both models) then, per budget x: beyond_pair_<x> /
beyond_floor_<x> (beyond-words pair counts, pair and floor), ceiling_gemma_<x> / ceiling_minilm_<x> (the
same-model ceiling's shared fraction), shared_gemma_<x> / floor_gemma_<x>; and for the width axis
ceiling_width_slope_<model> (change of the ceiling's shared fraction per doubling of the width, least
squares over the widths) and weights_dec_<model>_w<d_sae> (P&B's decoder criterion at each width).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: the report half of this benchmark
from budget_report import COLUMNS, PB_TREND, SHORT, budget_label, log, pct, plot, summary_line, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VERDICT_SECTIONS = ("corpus", "harvest", "sae", "train", "compare", "controls", "models")
STAGES = ("harvest", "train", "compare", "controls")
REPRESENTATION = ("cka", "svcca", "mutual_knn")
# Paulo & Belrose (2025): share of latents shared between two seeds of one model, against width (as in issue 24)


# --- config text (the run config is TOML with inline tables; keys are rewritten in place, section-aware) -----

def set_key(text: str, section: str, key: str, value: str) -> str:
    """``text`` with ``key = value`` in ``[section]`` (top level: section ""), replaced or appended there."""
    lines, out, current, done = text.splitlines(), [], "", False
    for i, line in enumerate(lines):
        header = re.match(r"^\s*\[\[?([^\]]+)\]\]?\s*$", line)
        if header:
            if current == section and not done:
                out.append(f"{key} = {value}")
                done = True
            current = header.group(1).strip()
        elif current == section and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            out.append(f"{key} = {value}")
            done = True
            continue
        out.append(line)
    if not done:
        if current == section:
            out.append(f"{key} = {value}")
        else:
            out += ["", f"[{section}]", f"{key} = {value}"] if section else [f"{key} = {value}"]
    if not done and section == "":  # top-level keys must precede every table
        out = [f"{key} = {value}"] + [line for line in out if line != f"{key} = {value}"]
    return "\n".join(out) + "\n"


def run_config(base: str, run_dir: Path, name: str, max_tokens: int | None = None, **sections: dict[str, str]) -> str:
    text = set_key(set_key(base, "", "name", json.dumps(name)), "", "run_dir", json.dumps(str(run_dir)))
    if max_tokens is not None:
        text = set_key(text, "corpus", "max_tokens", str(max_tokens))
    for section, values in sections.items():
        for key, value in values.items():
            text = set_key(text, section, key, value)
    return text


def verdict_settings(config_text: str) -> dict:
    data = tomllib.loads(config_text)
    return {k: data.get(k) for k in VERDICT_SECTIONS}


# --- running ------------------------------------------------------------------------------------------------

def snapshot(dest: Path, fresh: bool = False) -> Path:
    """The committed code (``git archive HEAD``) unpacked into ``dest``; read-only on the repository. A snapshot
    already there is kept (unless ``fresh``), so a resumed benchmark runs every budget on the same code."""
    if not fresh and (dest / "COMMIT").is_file():
        log(f"running the committed code ({(dest / 'COMMIT').read_text().strip()}) already unpacked in {dest}")
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (dest / "COMMIT").write_text(commit + "\n")
    log(f"running the committed code ({commit}) from {dest}")
    return dest


def stage(name: str, config: Path, log_path: Path, source: Path | None, extra: tuple[str, ...] = ()) -> dict:
    """One ``autointerp <stage> --config`` in a child process: {"wall_s", "cpu_s"} (children's CPU)."""
    cmd = [sys.executable, "-m", "autointerp", name, "--config", str(config), *extra]
    env = os.environ | {"AUTOINTERP_PROGRESS": "0"}
    if source is not None:  # ahead of the editable install (its finder comes after sys.path)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log_path, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        raise SystemExit(f"`autointerp {name}` failed (exit {rc}), log {log_path}:\n" + "\n".join(tail))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def run_stages(run_dir: Path, config_text: str, stages: tuple[str, ...], source: Path | None, label: str) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "budget.toml"
    config.write_text(config_text)
    ledger_path = run_dir / "budget_costs.json"  # every attempt of every stage: a rerun of a finished stage is a no-op
    costs = {}
    for name in stages:
        log(f"[{label}] autointerp {name} --config {config}")
        cost = stage(name, config, run_dir / "budget.log", source)
        log(f"[{label}] {name}: {cost['wall_s']:.0f} s wall, {cost['cpu_s']:.0f} s CPU")
        ledger = read_json(ledger_path) if ledger_path.is_file() else {}
        ledger.setdefault(name, []).append(cost | {"at": time.strftime("%Y-%m-%d %H:%M:%S")})
        ledger_path.write_text(json.dumps(ledger, indent=1))
    return stage_costs(run_dir)


def stage_costs(run_dir: Path) -> dict:
    """Each stage's cost: its attempt that did the work (the longest; later no-op reruns take seconds)."""
    path = run_dir / "budget_costs.json"
    ledger = read_json(path) if path.is_file() else {}
    return {name: max(attempts, key=lambda c: c["wall_s"]) for name, attempts in ledger.items() if attempts}


# --- reading ------------------------------------------------------------------------------------------------

def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def harvested_tokens(run_dir: Path) -> dict[str, int]:
    out = {}
    for path in sorted(run_dir.glob("*/harvest/harvest.json")):
        try:
            out[path.parts[-3]] = sum(int(s["rows"]) for s in read_json(path)["shards"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def train_tokens(run_dir: Path) -> dict[str, int | None]:
    out = {}
    for path in sorted(run_dir.glob("*/sae/metrics.json")):
        m = read_json(path)
        out[path.parts[-3]] = m.get("train_tokens") or m.get("tokens_trained") or (m.get("training") or {}).get("tokens")
    return out


def _cell(c: dict | None) -> dict | None:
    return None if not c or c.get("value") is None else {"value": c["value"], "ci": c.get("ci")}


def verdict_point(run_dir: Path) -> dict:
    """The verdict table's numbers of the run's one real pair."""
    from autointerp.controls.calibration import pair_calibration
    from autointerp.rundir.layout import RunDir

    pairs = [p for p in RunDir(run_dir).pairs() if p.stats.is_file()]
    if not pairs:
        raise SystemExit(f"{run_dir}: no compare/<A>__<B>/stats.json; has `autointerp compare` run?")
    cal = pair_calibration(run_dir, pairs[0])  # compare's calibration with the controls of controls.json
    v = cal.get("verdict") or {}
    if not v.get("columns") or not cal.get("floors"):
        raise SystemExit(f"{pairs[0].root}: no verdict with controls; has `autointerp controls` run?")
    cols = {}
    for name in COLUMNS:
        c = v["columns"][name]
        model = c["model"]
        cols[name] = {"model": model, "pair": _cell(c), "ceiling": _cell((c.get("ceiling") or {}).get(model)),
                      "floor": _cell(c.get("floor")), "call": c.get("call"),
                      "count": _cell(c.get("count")), "floor_count": _cell(c.get("floor_count")),
                      "ceiling_count": _cell((c.get("ceiling_count") or {}).get(model))}
    for name in REPRESENTATION:
        c = v["columns"].get(name) or {}
        cols[name] = {"pair": _cell(c), "floor": _cell(c.get("floor")), "call": c.get("call")}
    return {"run_dir": str(run_dir), "pair": pairs[0].root.name, "columns": cols, "n_matchable": cal.get("n_matchable"),
            "harvested_tokens": harvested_tokens(run_dir), "train_tokens": train_tokens(run_dir),
            "n_documents": (read_json(run_dir / "corpus" / "selection.json") if (run_dir / "corpus" / "selection.json").is_file() else {}).get("n_docs")}


def separated(col: dict) -> bool:
    """The pair's interval lies entirely above the floor's (the verdict's above_floor / at_ceiling)."""
    p, f = col.get("pair"), col.get("floor")
    return bool(p and f and p.get("ci") and f.get("ci") and p["ci"][0] > f["ci"][1])


# --- the weight criterion of Paulo & Belrose ----------------------------------------------------------------

def weight_sharing(sae_a: Path, sae_b: Path, threshold: float = 0.7) -> dict:
    """Hungarian matching of the two SAEs' decoder directions by cosine; fraction of latents whose partner has
    decoder cosine >= threshold (and, stricter, encoder cosine >= threshold too), over all latents and over
    live ones (fired in training: ``sparsity.safetensors`` log10 frequency above -inf / -10)."""
    from safetensors.numpy import load_file
    from scipy.optimize import linear_sum_assignment

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    a, b = (load_file(str(p / "sae_weights.safetensors")) for p in (sae_a, sae_b))
    started = time.perf_counter()
    cos = unit(a["W_dec"].astype(np.float32)) @ unit(b["W_dec"].astype(np.float32)).T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    dec = cos[rows, cols]
    del cos
    enc = np.sum(unit(a["W_enc"].T.astype(np.float32))[rows] * unit(b["W_enc"].T.astype(np.float32))[cols], axis=1)
    live = np.ones(len(rows), bool)
    try:
        freq = [load_file(str(p / "sparsity.safetensors"))["sparsity"] for p in (sae_a, sae_b)]
        live = (freq[0][rows] > -10) & (freq[1][cols] > -10)
    except (OSError, KeyError):
        pass
    return {"d_sae": int(len(rows)), "dec": float(np.mean(dec >= threshold)), "enc_dec": float(np.mean((dec >= threshold) & (enc >= threshold))),
            "dec_live": float(np.mean(dec[live] >= threshold)) if live.any() else None, "n_live_pairs": int(live.sum()),
            "dec_cos_median": float(np.median(dec)), "threshold": threshold, "seconds": round(time.perf_counter() - started, 1)}


def ceiling_point(run_dir: Path, weights: bool = True) -> dict:
    """Per model: the controls' same-model ceiling (shared and beyond-words fractions with intervals) and the
    weight criterion on the same two SAEs."""
    from autointerp.controls.calibration import entries

    rec = read_json(run_dir / "controls" / "controls.json")
    out = {}
    for c in entries(rec):
        if c["control"] != "ceiling":
            continue
        [slug] = c["stands_for"]
        cfg = read_json(run_dir / slug / "sae" / "cfg.json")
        entry = {"d_sae": cfg.get("d_sae"), "expansion_factor": cfg.get("expansion_factor"),
                 "shared": {"value": (c.get("shared_fraction_of") or {}).get(slug), "ci": ((c.get("ci") or {}).get("shared_fraction_of") or {}).get(slug)},
                 "beyond_words": {"value": (c.get("contextual_fraction_of") or {}).get(slug), "ci": ((c.get("ci") or {}).get("contextual_fraction_of") or {}).get(slug)},
                 "n_matchable": (c.get("n_matchable") or {}).get(slug), "n_shared": c.get("n_shared"), "n_contextual": c.get("n_contextual"),
                 "seconds": c.get("seconds")}
        if weights:
            entry["weights"] = weight_sharing(run_dir / slug / "sae", run_dir / "controls" / "ceiling" / slug / "sae")
        out[slug] = entry
    return out


# --- the two axes -------------------------------------------------------------------------------------------

def budget_runs(args, budgets: list[float], base_text: str, base_tokens: int, source: Path | None, out: Path) -> tuple[list[dict], dict[float, Path]]:
    points, dirs = [], {}
    reuse = Path(args.reuse_default) if args.reuse_default else None
    for x in budgets:
        label = budget_label(x)
        tokens = int(round(base_tokens * x))
        run_dir = out / f"budget-{label}"
        text = run_config(base_text, run_dir, f"budget-{label}", tokens)
        costs, reused = {}, None
        if x == 1 and reuse is not None and (reuse / "config.toml").is_file() and \
                verdict_settings((reuse / "config.toml").read_text()) == verdict_settings(run_config(base_text, reuse, "default", tokens)):
            if (reuse / "controls" / "controls.json").is_file():
                run_dir, reused = reuse, str(reuse)
                log(f"[{label}x] reusing {reuse} (same verdict settings; nothing rerun or written there)")
                try:  # the stages' recorded cost in that run
                    ledger = read_json(reuse / "cost.json")
                    costs = {s["stage"]: {"wall_s": s["wall_s"], "cpu_s": s["cpu_s"]} for s in ledger["stages"] if s["stage"] in STAGES}
                except (OSError, ValueError, KeyError):
                    costs = {}
        elif x == 1 and reuse is not None:
            log(f"[{label}x] {reuse} differs from the base config in a verdict setting (or is missing): rerunning")
        if reused is None:
            costs = stage_costs(run_dir) if args.report else run_stages(run_dir, text, STAGES, source, f"{label}x")
        point = verdict_point(run_dir) | {"budget": x, "max_tokens": tokens, "stage_costs": costs, "reused": reused}
        point["ceiling"] = ceiling_point(run_dir, weights=not args.no_weights)
        points.append(point)
        dirs[x] = run_dir
        log(f"[{label}x] " + summary_line(point))
    return points, dirs


def also_runs(paths: list[str], base_text: str, base_tokens: int, have: set[float]) -> list[dict]:
    """Finished runs made elsewhere (e.g. ``benchmarks/scaling.py``'s full pipelines) read as extra budget points
    when their verdict settings equal the base config's with their own max_tokens; nothing is run or written."""
    points = []
    for path in map(Path, paths):
        try:
            text = (path / "config.toml").read_text()
            tokens = int(tomllib.loads(text)["corpus"]["max_tokens"])
        except (OSError, ValueError, KeyError):
            log(f"[also] {path}: no readable config.toml with [corpus] max_tokens; skipped")
            continue
        x = tokens / base_tokens
        if verdict_settings(text) != verdict_settings(run_config(base_text, path, "x", tokens)):
            log(f"[also] {path}: a verdict setting differs from the base config; skipped")
            continue
        if x in have or not (path / "controls" / "controls.json").is_file():
            log(f"[also] {path}: budget {x:g}x already measured, or no controls yet; skipped")
            continue
        try:
            ledger = read_json(path / "cost.json")
            costs = {s["stage"]: {"wall_s": s["wall_s"], "cpu_s": s["cpu_s"]} for s in ledger["stages"] if s["stage"] in STAGES}
        except (OSError, ValueError, KeyError):
            costs = {}
        point = verdict_point(path) | {"budget": x, "max_tokens": tokens, "stage_costs": costs, "reused": str(path)}
        point["ceiling"] = ceiling_point(path)
        log(f"[also {x:g}x] {path}: " + summary_line(point))
        points.append(point)
        have.add(x)
    return points


def width_runs(args, base_text: str, base_ef: int, harvest_dir: Path, source: Path | None, out: Path) -> list[dict]:
    points = []
    for ef in args.widths:
        run_dir = out / f"budget-width-{ef}"
        costs = {}
        if ef == base_ef:
            run_dir = harvest_dir
            log(f"[width x{ef}] reading the ceiling of {run_dir} (the budget run at this width)")
        elif not args.report:
            if not (run_dir / "corpus").is_dir():
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.copytree(harvest_dir / "corpus", run_dir / "corpus", dirs_exist_ok=True)
                for manifest in harvest_dir.glob("*/harvest/harvest.json"):
                    slug = manifest.parts[-3]
                    log(f"[width x{ef}] copying the harvest of {slug} from {harvest_dir}")
                    shutil.copytree(manifest.parent, run_dir / slug / "harvest", dirs_exist_ok=True)
            text = run_config(base_text, run_dir, f"budget-width-{ef}", None, sae={"expansion_factor": str(ef)},
                              controls={"floor": '"none"', "ceiling": "true"})
            text = set_key(text, "corpus", "max_tokens", str(read_json(harvest_dir / "corpus" / "selection.json")["max_tokens"]))
            costs = run_stages(run_dir, text, ("train", "controls"), source, f"width x{ef}")
        else:
            costs = stage_costs(run_dir)
        point = {"expansion_factor": ef, "run_dir": str(run_dir), "stage_costs": costs,
                 "models": ceiling_point(run_dir, weights=not args.no_weights)}
        points.append(point)
        log(f"[width x{ef}] " + "; ".join(
            f"{SHORT.get(s, s)} d_sae {m['d_sae']:,}: ceiling shared {pct(m['shared'])}, beyond words {pct(m['beyond_words'])}"
            + (f", weights dec>=0.7 {m['weights']['dec']:.1%} (enc&dec {m['weights']['enc_dec']:.1%})" if m.get("weights") else "")
            for s, m in point["models"].items()))
    return points


def width_slope(points: list[dict], slug: str) -> float | None:
    """Change of the ceiling's shared fraction per doubling of d_sae (least squares on log2 d_sae)."""
    xs = [(math.log2(p["models"][slug]["d_sae"]), p["models"][slug]["shared"]["value"]) for p in points
          if slug in p["models"] and p["models"][slug]["shared"]["value"] is not None]
    if len({x for x, _ in xs}) < 2:
        return None
    slope, _ = np.polyfit([x for x, _ in xs], [y for _, y in xs], 1)
    return float(slope)


# --- main ---------------------------------------------------------------------------------------------------

def floats(text: str) -> list[float]:
    return sorted({float(s) for s in text.split(",") if s.strip()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", default="0.25,1,4", help="training-token budgets as multiples of the base max_tokens (default 0.25,1,4)")
    ap.add_argument("--widths", default="2,8,16", help="SAE expansion factors of the width axis (default 2,8,16); '' for none")
    ap.add_argument("--no-widths", action="store_true", help="the budget axis only")
    ap.add_argument("--width-budget", type=float, default=1.0, help="the budget whose harvest the width axis reuses (default 1)")
    ap.add_argument("--config", type=Path, default=ROOT / "runs" / "default" / "config.toml",
                    help="base run config (default runs/default/config.toml, the default run's resolved config); name, run_dir and max_tokens are set per run")
    ap.add_argument("--reuse-default", default=str(ROOT / "runs" / "default"), help="a finished run read as the 1x point when its verdict settings equal the base config's ('' to rerun)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "runs", help="where budget-<x>/ and budget-width-<ef>/ go (default runs/)")
    ap.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "out" / "budget.png")
    ap.add_argument("--snapshot", action="store_true", help="run the committed code (git archive HEAD into <out-dir>/budget-src)")
    ap.add_argument("--fresh-snapshot", action="store_true", help="--snapshot, replacing a snapshot already unpacked there")
    ap.add_argument("--also", default="", help="comma-separated finished run directories (e.g. benchmarks/scaling.py's) read as extra budget points "
                    "when their verdict settings equal the base config's but for max_tokens")
    ap.add_argument("--report", action="store_true", help="run nothing: read the finished runs, print, plot")
    ap.add_argument("--no-weights", action="store_true", help="skip the decoder-cosine (Paulo & Belrose) criterion")
    args = ap.parse_args()
    args.budgets = floats(args.budgets)
    args.also = [p for p in args.also.split(",") if p.strip()]
    args.widths = [] if args.no_widths else [int(w) for w in floats(args.widths)]
    if len(args.budgets) < 3 or args.budgets[-1] < 16 * args.budgets[0]:
        log(f"note: issue 24 asks for >= 3 budgets spanning 16x; got {args.budgets}")
    if args.widths and len(args.widths) < 3:
        log(f"note: issue 24 asks for >= 3 widths; got {args.widths}")

    started = time.perf_counter()
    base_text = args.config.read_text()
    base = tomllib.loads(base_text)
    base_tokens, base_ef = int(base["corpus"]["max_tokens"]), int(base.get("sae", {}).get("expansion_factor", 8))
    out = args.out_dir.resolve()
    source = snapshot(out / "budget-src", args.fresh_snapshot) if (args.snapshot or args.fresh_snapshot) and not args.report else None

    if args.widths and args.width_budget not in args.budgets:
        raise SystemExit(f"--width-budget {args.width_budget:g} is not one of --budgets {args.budgets}")
    # the budgets up to the width axis's one, then the widths (on its harvest), then the larger budgets: the
    # cheap work first, so that a benchmark stopped in its largest budget has everything else
    first = [x for x in args.budgets if x <= args.width_budget] if args.widths else args.budgets
    points, dirs = budget_runs(args, first, base_text, base_tokens, source, out)
    widths = width_runs(args, base_text, base_ef, dirs[args.width_budget], source, out) if args.widths else []
    more, more_dirs = budget_runs(args, [x for x in args.budgets if x not in first], base_text, base_tokens, source, out)
    points, dirs = points + more, dirs | more_dirs
    points = sorted(points + also_runs(args.also, base_text, base_tokens, {p["budget"] for p in points}), key=lambda p: p["budget"])

    log("\n" + table(points))
    for p in points:
        rep = "; ".join(f"{k} {p['columns'][k]['pair']['value']:.3f} vs floor {p['columns'][k]['floor']['value']:.3f} ({p['columns'][k]['call']})"
                        for k in REPRESENTATION if p["columns"][k]["pair"] and p["columns"][k]["floor"])
        log(f"{budget_label(p['budget'])}x raw activations: {rep}")
        if p.get("ceiling"):
            log(f"{budget_label(p['budget'])}x ceiling weights (P&B criterion): " + "; ".join(
                f"{SHORT.get(s, s)} dec>=0.7 {m['weights']['dec']:.1%} (enc&dec {m['weights']['enc_dec']:.1%}, median dec cos {m['weights']['dec_cos_median']:.2f})"
                for s, m in p["ceiling"].items() if m.get("weights")))
    above = [p["budget"] for p in points if separated(p["columns"]["beyond_words_a"]) and separated(p["columns"]["beyond_words_b"])]
    shared_above = [p["budget"] for p in points if separated(p["columns"]["shared_a"]) and separated(p["columns"]["shared_b"])]
    slopes = {slug: width_slope(widths, slug) for slug in sorted({s for w in widths for s in w["models"]})}

    png = plot(points, widths, args.plot.resolve())
    if png:
        log(f"plot: {png}")
    summary = {"budgets": args.budgets, "base_max_tokens": base_tokens, "base_config": str(args.config), "points": points, "widths": widths,
               "smallest_budget_above_floor": min(above) if above else None, "smallest_budget_shared_above_floor": min(shared_above) if shared_above else None,
               "ceiling_width_slope": slopes, "paulo_belrose_trend": {str(k): v for k, v in PB_TREND.items()},
               "wall_s": round(time.perf_counter() - started, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "budget.json").write_text(json.dumps(summary, indent=2))
    log(f"data: {out / 'budget.json'}  (benchmark wall {(time.perf_counter() - started) / 60:.1f} min)")

    parts = [f"smallest_budget_above_floor={budget_label(min(above)) if above else 'none'}",
             f"smallest_budget_shared_above_floor={budget_label(min(shared_above)) if shared_above else 'none'}"]
    for p in points:
        x, c = budget_label(p["budget"]), p["columns"]
        parts += [f"beyond_pair_{x}={c['beyond_words_a']['count']['value'] if c['beyond_words_a']['count'] else 'na'}",
                  f"beyond_floor_{x}={c['beyond_words_a']['floor_count']['value'] if c['beyond_words_a']['floor_count'] else 'na'}"]
        for name in ("shared_a", "shared_b"):
            short = SHORT.get(c[name]["model"], c[name]["model"])
            parts.append(f"ceiling_{short}_{x}={c[name]['ceiling']['value']:.3f}" if c[name]["ceiling"] else f"ceiling_{short}_{x}=na")
        short = SHORT.get(c["shared_a"]["model"], "a")
        parts += [f"shared_{short}_{x}={c['shared_a']['pair']['value']:.3f}", f"floor_{short}_{x}={c['shared_a']['floor']['value']:.3f}"]
    for slug, s in slopes.items():
        parts.append(f"ceiling_width_slope_{SHORT.get(slug, slug)}={s:+.3f}" if s is not None else f"ceiling_width_slope_{SHORT.get(slug, slug)}=na")
    for w in widths:
        for slug, m in w["models"].items():
            if m.get("weights"):
                parts.append(f"weights_dec_{SHORT.get(slug, slug)}_w{m['d_sae']}={m['weights']['dec']:.3f}")
    log("RESULT " + " ".join(parts))


if __name__ == "__main__":
    main()
