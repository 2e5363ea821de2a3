"""`autointerp run --config scopes` in its shape, offline: two published SAE layouts at their published widths.

The packaged scopes config compares Gemma-2-2B with a Gemma Scope SAE (width 16k) against Llama-3.1-8B with a
Llama Scope SAE (8x: 32k latents). Offline, without the gated models, this runs the same pipeline with:

* the embedded gemma-3-270m (layer 6) read by a Gemma Scope file of width 16,384 (``width_16k/average_l0_71/
  params.npz``: W_enc, W_dec, b_enc, b_dec, per-latent JumpReLU thresholds), and the embedded minilm-l6 (layer 3)
  read by a Llama Scope directory of width 32,768 (``hyperparams.json`` with a scalar JumpReLU threshold and
  dataset-wise norm, ``checkpoints/final.safetensors``), written as tests/helpers/pretrained_formats.py writes them;
* random encoder/decoder weights whose sparsity is set from the run's own harvest: latent i fires on a share f_i
  of tokens, f log-normal (published SAEs' density histograms are roughly log-normal) with sum f = L0 (82 for
  Gemma Scope's average_l0_71, 50 for Llama Scope): the threshold (Gemma) or encoder bias (Llama, whose
  threshold is one scalar) sits at the (1 - f_i) quantile of the latent's pre-activation over harvested tokens;
* the scopes config with its hub parts replaced: the embedded factbook corpus (--max-tokens), the lexical
  labeller (no LLM), the embedding scorer. [compare] is left as packaged: ``matching = "auto"`` goes sparse.

Steps: harvest both models, write the SAEs, then ``autointerp run`` (install the SAEs, exemplars, explain, score,
compare, the random-weights floor control, report). Prints each step's time and the pair's matching stats.

    python benchmarks/scopes_offline.py                      # ~30k tokens
    python benchmarks/scopes_offline.py --max-tokens 100000

Ends with: RESULT scopes_seconds=... scopes_compare_seconds=... scopes_rss_gib=... (the whole run, the pair's
compare stage alone re-run from scratch, the run's peak RSS from its cost.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", COLUMNS="200")
GEMMA = ("gemma-3-270m", 6, 16_384, 71)  # model, layer, SAE width, L0 (the file layout says average_l0_71)
LLAMA = ("minilm-l6", 3, 32_768, 50)


def log(msg: str) -> None:
    print(msg, flush=True)


def autointerp(*args: str) -> float:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autointerp", *args], capture_output=True, text=True, env=ENV, cwd=ROOT)
    if done.returncode:
        sys.exit(f"autointerp {' '.join(args[:1])} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - t


def densities(d: int, l0: float, rng: np.random.Generator, spread: float = 1.8) -> np.ndarray:
    f = np.exp(spread * rng.standard_normal(d))
    for _ in range(20):  # scale to sum l0 with each share at most 0.3
        f = np.minimum(f * l0 / f.sum(), 0.3)
    return f


def firing_quantiles(x: np.ndarray, w_enc: np.ndarray, f: np.ndarray, block: int = 2048) -> np.ndarray:
    """Per latent, the (1 - f_i) quantile of x @ W_enc[:, i] over the sample."""
    out = np.empty(w_enc.shape[1], np.float32)
    idx = np.clip(np.round((1.0 - f) * (len(x) - 1)).astype(np.int64), 0, len(x) - 1)
    for lo in range(0, w_enc.shape[1], block):
        pre = np.sort(x @ w_enc[:, lo: lo + block], axis=0)
        out[lo: lo + block] = pre[idx[lo: lo + block], np.arange(pre.shape[1])]
    return out


def sample(run: Path, slug: str, n: int) -> np.ndarray:
    from autointerp.harvest.buffer import iter_activation_batches

    shards = sorted((run / slug / "harvest").glob("shard_*.safetensors"))
    return next(iter_activation_batches(shards, n, seed=0)).numpy()


def write_saes(root: Path, run: Path | None, rng: np.random.Generator, n_sample: int) -> dict[str, Path]:
    """Both SAEs; with ``run`` (harvested) their sparsity is set from its activations, else placeholders."""
    from helpers.pretrained_formats import random_weights, write_gemma_scope, write_llama_scope

    out = {}
    slug, layer, width, l0 = GEMMA
    w = random_weights(np.random.default_rng(1), 640, width)
    thr = np.full(width, 1e3, np.float32)
    if run is not None:
        x = sample(run, slug, n_sample)
        w["b_enc"][:] = 0.0
        thr = np.maximum(firing_quantiles(x, w["W_enc"], densities(width, l0, rng)), 1e-3)
    out[slug] = write_gemma_scope(root / "gemma-scope", w, thr, layer=layer)
    slug, layer, width, l0 = LLAMA
    w = random_weights(np.random.default_rng(2), 384, width)
    norm_in, threshold = 10.0, 0.5
    if run is not None:
        x = sample(run, slug, n_sample)
        norm_in = float(np.linalg.norm(x, axis=1).mean())
        s_in = np.sqrt(x.shape[1]) / norm_in  # Llama Scope: pre = x @ W_E + b_E / s_in, fires where pre > threshold
        w["b_enc"] = (s_in * (threshold - firing_quantiles(x, w["W_enc"], densities(width, l0, rng)))).astype(np.float32)
    out[slug] = write_llama_scope(root / "llama-scope", w, threshold=threshold, norm_in=norm_in, norm_out=norm_in, layer=layer)
    return out


def config(run: Path, saes: dict[str, Path], max_tokens: int) -> str:
    from autointerp.config import ModelEntry, load_config, to_toml
    from autointerp.llm.config import LLMConfig

    cfg = load_config(ROOT / "autointerp" / "configs" / "scopes.toml")
    cfg.name, cfg.run_dir = "scopes-offline", str(run)
    cfg.corpus.dataset, cfg.corpus.config_name, cfg.corpus.split = "factbook", None, "train"
    cfg.max_tokens = max_tokens
    cfg.llm = LLMConfig()
    cfg.explain.labeller = "lexical"
    cfg.score.scorers = ["embedding"]
    cfg.report.pages, cfg.report.plots = False, False
    cfg.models = [ModelEntry(GEMMA[0], layer=GEMMA[1], sae=str(saes[GEMMA[0]])),
                  ModelEntry(LLAMA[0], layer=LLAMA[1], sae=str(saes[LLAMA[0]]))]
    return to_toml(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-tokens", type=int, default=30_000)
    ap.add_argument("--sample", type=int, default=8192, help="harvested tokens the SAE sparsity is set from")
    ap.add_argument("--keep", default=None, help="work in this directory (kept) instead of a temporary one")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="scopes-offline-"))
    root.mkdir(parents=True, exist_ok=True)
    run, cfg_path, rng = root / "run", root / "scopes-offline.toml", np.random.default_rng(0)
    started = time.perf_counter()
    cfg_path.write_text(config(run, write_saes(root, None, rng, args.sample), args.max_tokens))
    log(f"harvest ({args.max_tokens:,} tokens, both models): {autointerp('harvest', '--config', str(cfg_path)):.0f}s")
    t = time.perf_counter()
    saes = write_saes(root, run, rng, args.sample)
    log(f"SAEs written from the harvest (Gemma Scope 16,384 at {saes[GEMMA[0]]}, Llama Scope 32,768 at {saes[LLAMA[0]]}): "
        f"{time.perf_counter() - t:.0f}s")
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autointerp", "run", "--config", str(cfg_path)],
                          capture_output=True, text=True, env=ENV, cwd=ROOT)
    if done.returncode:
        sys.exit(f"autointerp run failed ({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}")
    run_s = time.perf_counter() - t
    # the run's own peak: cost.json's total (each stage resets the kernel's high-water mark, autointerp.rundir.cost,
    # so what /usr/bin/time reports covers only the last stage); read now, before `compare --overwrite` below
    # replaces the compare entry with its own
    rss = json.loads((run / "cost.json").read_text())["total"]["peak_rss_mb"] / 1024
    log(f"autointerp run (install, exemplars, explain, score, compare, floor control, report): {run_s:.0f}s, max RSS {rss:.2f} GiB")
    pair = next((run / "compare").glob(f"{GEMMA[0]}__{LLAMA[0]}*"))
    stats = json.loads((pair / "stats.json").read_text())
    keys = ("matching", "n_features_a", "n_features_b", "n_dead_a", "n_dead_b", "n_rare_a", "n_rare_b", "n_unmatched_a",
            "n_unmatched_b", "n_no_candidate_a", "n_no_candidate_b", "n_candidate_pairs", "n_shared")
    log("pair stats: " + ", ".join(f"{k}={stats.get(k)}" for k in keys) +
        f", n_pairs={stats['activation']['n_pairs']}, null threshold={stats['null']['threshold']:.3f} "
        f"({stats['null']['n_samples']} samples + {stats['null'].get('n_unmatched')} unmatched)")
    for level, s in stats["levels"].items():
        log(f"  level {level}: {s['n_units']:,} units, {s['n_pairs']:,} pairs, {s['n_shared']:,} shared")
    t = time.perf_counter()  # the pair's compare alone, from scratch (its level cache dropped)
    compare_s = autointerp("compare", "--config", str(cfg_path), "--overwrite")
    log(f"compare --overwrite (both levels of the pair, nulls, lexical, bootstrap, domains): {compare_s:.0f}s")
    total = time.perf_counter() - started
    log(f"RESULT scopes_seconds={total:.0f} scopes_compare_seconds={compare_s:.0f} scopes_rss_gib={rss:.2f} "
        f"(work dir {root}; self max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB)")


if __name__ == "__main__":
    main()
