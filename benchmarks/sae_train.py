"""SAE training throughput and quality: autointerp vs EleutherAI sparsify vs SAELens, in one run.

All three train the same architecture - TopK(ReLU((x - b_dec) W_enc + b_enc)) W_dec + b_dec with the same
k and width - on the SAME cached real activations, in the SAME pre-shuffled order, with the same batch
size and token budget, float32, no input normalisation, torch threads = --threads in every process,
one trainer at a time:

* autointerp: ``train_sae`` in this process (its defaults: fused Adam, lr 2.2e-3/sqrt(d_sae/2^14), betas
  (0.8, 0.99), short warmup, 20% linear decay, AuxK 1/32, geometric-median b_dec init, sparse backward);
* sparsify (eai-sparsify): its SparseCoder + its training-step body and default optimizer (SignSGD with a
  ScheduleFree wrapper) in benchmarks/peers/sparsify_run.py (its Trainer only accepts a live model);
* SAELens (sae-lens): its TopKTrainingSAE + its own SAETrainer in benchmarks/peers/saelens_run.py.

Peers run in an isolated venv (.venv-bench, built by benchmarks/setup_peers.sh, torch pinned to the
project's CPU build) and receive the training rows through a safetensors file; they send back their
weights in the SAELens layout. Every model - autointerp's too - is then loaded into one autointerp TopK
SAE and scored by the same ``evaluate_reconstruction`` on the held-out last shard (FVU = sum||x - x_hat||^2
/ sum||x - mean(x)||^2 over all held-out tokens), cross-checked against a plain dense TopK written here.

Each trainer's own optimizer/LR schedule is kept (that is what is being compared); AuxK weight and the
dead-latent window are equalised to autointerp's, since both peers' defaults leave AuxK off at this
scale. Wall time counts only the training loop (no imports, data loading or weight export). The rounds
are interleaved (autointerp, sparsify, SAELens, autointerp, ...; 5 by default) and tokens/s is each trainer's best
round, because the machine is shared with other jobs.

A control row, sparsify_adam (not in RESULT; --no-control skips it), trains sparsify's SparseCoder with
Adam at autointerp's LR and warmup, to tell optimizer effects from implementation effects on FVU.

    python benchmarks/sae_train.py                       # MiniLM layer 3, harvested on first use
    python benchmarks/sae_train.py --harvest-dir runs/default/<model>/harvest --train-tokens 200000

Ends with:  RESULT ours_tok_s=... sparsify_tok_s=... saelens_tok_s=... ours_fvu=...
            sparsify_fvu=... saelens_fvu=... ratio_to_sparsify=... ratio_to_saelens=...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from autointerp.harvest.buffer import held_out_split, shard_shape
from autointerp.sae.metrics import evaluate_reconstruction
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.trainer import TrainConfig, train_sae

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"
DEFAULT_RUN_DIR = Path("/tmp/bench_sae_run")
DEFAULT_HARVEST = DEFAULT_RUN_DIR / "minilm-l6" / "harvest"
# 120k MiniLM tokens in 20k-row shards: 5 training shards (~100k rows) + 1 held-out shard.
HARVEST_CMD = [str(ROOT / ".venv" / "bin" / "autointerp"), "harvest", "--model", "minilm-l6", "--layer", "3",
               "--max-tokens", "120000", "--shard-tokens", "20000", "--run-dir", str(DEFAULT_RUN_DIR)]
NAMES = ("autointerp", "sparsify", "saelens")  # the RESULT line
CONTROL = "sparsify_adam"  # sparsify with Adam + autointerp's schedule: separates optimizer from implementation


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------- data
def ensure_harvest(harvest_dir: Path, default: bool) -> list[Path]:
    shards = sorted(harvest_dir.glob("shard_*.safetensors"))
    if len(shards) < 2 and default:
        log(f"[data] no harvest at {harvest_dir}; running: {' '.join(HARVEST_CMD)}")
        t0 = time.perf_counter()
        subprocess.run(HARVEST_CMD, check=True, cwd=ROOT)
        log(f"[data] harvest took {time.perf_counter() - t0:.0f}s")
        shards = sorted(harvest_dir.glob("shard_*.safetensors"))
    if len(shards) < 2:
        raise SystemExit(f"{harvest_dir} has {len(shards)} shard(s); need >= 2 (train + held-out)")
    return shards


def load_rows(paths: list[Path]) -> torch.Tensor:
    return torch.cat([load_file(str(p))["activations"].to(torch.float32) for p in paths]).contiguous()


def training_rows(train: torch.Tensor, n_rows: int, seed: int) -> tuple[torch.Tensor, float]:
    """Exactly n_rows rows in one fixed shuffled order (fresh permutation per epoch if data is short)."""
    g = torch.Generator().manual_seed(seed)
    perms, have = [], 0
    while have < n_rows:
        perms.append(torch.randperm(len(train), generator=g))
        have += len(train)
    idx = torch.cat(perms)[:n_rows]
    return train[idx].contiguous(), n_rows / len(train)


# ----------------------------------------------------------------------------------------- training
def train_autointerp(data: torch.Tensor, args, d_sae: int) -> dict:
    torch.manual_seed(args.seed)
    sae = create_sae(SAEConfig(d_in=data.shape[1], d_sae=d_sae, architecture="topk", k=args.k), seed=args.seed)
    cfg = TrainConfig(total_tokens=len(data), batch_size=args.batch_size, device="cpu", seed=args.seed)
    batches = iter(data.split(args.batch_size))
    t0, c0 = time.perf_counter(), time.process_time()
    res = train_sae(sae, batches, cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "steps": res.steps, "tokens": res.tokens, "weights": sae.folded_state(),
            "train_fvu_last_window": res.fvu,
            "settings": {"optimizer": "adam (fused)", "lr": cfg.resolved_lr(d_sae), "betas": list(cfg.adam_betas),
                         "sparse_backward": sae.sparse_backward, "warmup_steps": cfg.resolved_warmup(),
                         "decay_fraction": cfg.decay_fraction, "auxk_alpha": cfg.auxk_alpha,
                         "dead_tokens_threshold": cfg.resolved_dead_threshold(), "b_dec_init": cfg.b_dec_init}}


def run_peer(name: str, python: Path, data_file: Path, out_dir: Path, args, d_sae: int, auxk_alpha: float,
             dead_tokens: int, lr: float | None = None) -> dict:
    script = PEERS / ("saelens_run.py" if name == "saelens" else "sparsify_run.py")
    cmd = [str(python), str(script), "--data", str(data_file), "--out", str(out_dir), "--k", str(args.k),
           "--d-sae", str(d_sae), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
           "--threads", str(args.threads), "--auxk-alpha", repr(auxk_alpha), "--dead-tokens", str(dead_tokens)]
    if name in ("sparsify", CONTROL):
        optimizer = "adam" if name == CONTROL else args.sparsify_optimizer
        cmd += ["--optimizer", optimizer]
        if optimizer == "adam":
            cmd += ["--warmup-steps", str(args._warmup)]  # autointerp's; sparsify's 1000 would never finish
    if lr is not None:
        cmd += ["--lr", repr(lr)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TQDM_DISABLE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(PEERS)}
    proc = subprocess.run(cmd, env=env, cwd=str(out_dir.parent), capture_output=True, text=True,
                          timeout=args.peer_timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{script.name} exited {proc.returncode}:\n{tail}")
    res = json.loads((out_dir / "result.json").read_text())
    res["weights"] = load_file(str(out_dir / "weights.safetensors"))
    return res


# ------------------------------------------------------------------------------------------- scoring
def as_autointerp_sae(weights: dict, d_in: int, d_sae: int, k: int):
    sae = create_sae(SAEConfig(d_in=d_in, d_sae=d_sae, architecture="topk", k=k))
    expect = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for key, shape in expect.items():
        if tuple(weights[key].shape) != shape:
            raise RuntimeError(f"{key} has shape {tuple(weights[key].shape)}, expected {shape}")
    sae.load_state_dict({**{k_: weights[k_].float() for k_ in expect}, "input_scale": torch.ones(())})
    return sae.eval()


@torch.no_grad()
def plain_topk_fvu(weights: dict, x: torch.Tensor, k: int, chunk: int = 4096) -> float:
    """Independent dense reference: TopK(ReLU((x - b_dec) W_enc + b_enc)) W_dec + b_dec, float64 sums."""
    W_enc, b_enc, W_dec, b_dec = (weights[n].double() for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    sse = 0.0
    for xb in x.double().split(chunk):
        pre = torch.relu((xb - b_dec) @ W_enc + b_enc)
        vals, idx = pre.topk(k, dim=-1)
        codes = torch.zeros_like(pre).scatter_(-1, idx, vals)
        sse += float((xb - (codes @ W_dec + b_dec)).pow(2).sum())
    xd = x.double()
    return sse / float((xd - xd.mean(0)).pow(2).sum())


def score(weights: dict, x_eval: torch.Tensor, args, d_sae: int) -> dict:
    sae = as_autointerp_sae(weights, x_eval.shape[1], d_sae, args.k)
    rec = evaluate_reconstruction(sae, x_eval.split(args.eval_batch_size))
    ref = plain_topk_fvu(weights, x_eval, args.k)
    return {"fvu": rec["fvu"], "l0": rec["l0"], "fvu_reference": ref,
            "dead_on_eval": float((rec["fire_counts"] == 0).float().mean())}


# -------------------------------------------------------------------------------------------- main
def setup_peers(args) -> str | None:
    """Build the peer venv if needed; returns an error message instead of raising."""
    if args.no_setup:
        return None
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "setup_peers.sh")], capture_output=True, text=True,
                          env={**os.environ, "BENCH_VENV": str(args.peer_venv)}, check=False)
    out = (proc.stdout + proc.stderr).strip().splitlines()
    for line in out[-3:]:
        log(f"[setup] {line}")
    log(f"[setup] setup_peers.sh: exit {proc.returncode} in {time.perf_counter() - t0:.0f}s")
    if proc.returncode != 0:
        return "setup_peers.sh failed: " + " | ".join(out[-5:])
    return None


def fmt(v: float, spec: str) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--harvest-dir", type=Path, default=None,
                   help=f"harvest directory with shard_*.safetensors (default: {DEFAULT_HARVEST}, harvested if missing)")
    p.add_argument("--train-tokens", type=int, default=100_000, help="token budget (rounded down to whole batches)")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--expansion", type=int, default=8, help="d_sae = expansion * d_in")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; tokens/s = best round")
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--min-eval-rows", type=int, default=10_000,
                   help="hold out the last shard, plus earlier ones while the held-out set is smaller than this")
    p.add_argument("--no-control", action="store_true",
                   help=f"skip the {CONTROL} row (sparsify with Adam and autointerp's LR schedule)")
    p.add_argument("--sparsify-optimizer", choices=["signum", "adam"], default="signum",
                   help="signum = sparsify's default (SignSGD + ScheduleFree)")
    p.add_argument("--peer-venv", type=Path, default=ROOT / ".venv-bench")
    p.add_argument("--sparsify-python", type=Path, default=None, help="default: <peer-venv>/bin/python")
    p.add_argument("--saelens-python", type=Path, default=None, help="default: <peer-venv>/bin/python")
    p.add_argument("--no-setup", action="store_true", help="do not run benchmarks/setup_peers.sh")
    p.add_argument("--peer-timeout", type=float, default=1800)
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    # ---- data: one tensor for everyone
    harvest_dir = args.harvest_dir or DEFAULT_HARVEST
    shards = ensure_harvest(harvest_dir, args.harvest_dir is None)
    rows_per = {p: shard_shape(p)[0] for p in shards}
    n_eval = 1  # autointerp's convention: the last shard(s) by name; more than one only if the last is tiny
    while sum(rows_per[p] for p in sorted(shards)[-n_eval:]) < args.min_eval_rows and n_eval < len(shards) - 1:
        n_eval += 1
    train_paths, eval_paths = held_out_split(shards, n_eval=n_eval)
    train_all, x_eval = load_rows(train_paths), load_rows(eval_paths)
    d_in, d_sae = train_all.shape[1], args.expansion * train_all.shape[1]
    args._steps = args.train_tokens // args.batch_size
    if args._steps < 1:
        raise SystemExit(f"--train-tokens {args.train_tokens} is less than one batch of {args.batch_size}")
    data, epochs = training_rows(train_all, args._steps * args.batch_size, args.seed)
    log(f"[data] {harvest_dir}: {len(train_paths)} train shard(s) = {len(train_all):,} rows, held-out "
        f"{'+'.join(p.name for p in eval_paths)} = {len(x_eval):,} rows, d_in={d_in}")
    log(f"[data] training on {len(data):,} tokens = {args._steps} steps x {args.batch_size} "
        f"({epochs:.2f} epochs of the train shards, one shuffled order shared by all trainers, seed {args.seed})")
    log(f"[config] TopK k={args.k}, d_sae={d_sae} (x{args.expansion}), float32, torch threads={args.threads}, "
        f"{args.rounds} interleaved round(s)")

    ai_cfg = TrainConfig(total_tokens=len(data), batch_size=args.batch_size)
    auxk_alpha, dead_tokens = ai_cfg.auxk_alpha, ai_cfg.resolved_dead_threshold()
    args._warmup = ai_cfg.resolved_warmup()
    trainers = [*NAMES] + ([] if args.no_control else [CONTROL])

    # ---- peers' environment
    errors: dict[str, str] = {}
    setup_err = setup_peers(args)
    pythons = {"sparsify": args.sparsify_python or args.peer_venv / "bin" / "python",
               "saelens": args.saelens_python or args.peer_venv / "bin" / "python"}
    pythons[CONTROL] = pythons["sparsify"]
    for name in trainers[1:]:
        if not Path(pythons[name]).exists():
            errors[name] = f"peer python {pythons[name]} does not exist" + (f" ({setup_err})" if setup_err else "")
    for name, pkg in (("sparsify", "eai-sparsify"), ("saelens", "sae-lens")):
        if name in errors:
            continue
        probe = f"import importlib.metadata as m; print(m.version({pkg!r}), m.version('torch'))"
        q = subprocess.run([str(pythons[name]), "-c", probe], capture_output=True, text=True, check=False)
        if q.returncode != 0:
            errors[name] = f"{pkg} is not installed in {pythons[name]}: {q.stderr.strip().splitlines()[-1:]}"
        else:
            log(f"[peers] {name}: {pkg} {q.stdout.split()[0]} with torch {q.stdout.split()[1]} ({pythons[name]})")
    if "sparsify" in errors and CONTROL in trainers:
        errors[CONTROL] = errors["sparsify"]

    # ---- training: interleaved rounds, sequential
    results: dict[str, dict] = {}
    walls: dict[str, list[float]] = {n: [] for n in trainers}
    cpus: dict[str, list[float]] = {n: [] for n in trainers}
    with tempfile.TemporaryDirectory(prefix="bench_sae_train_") as tmp:
        tmp = Path(tmp)
        data_file = tmp / "train.safetensors"
        save_file({"activations": data}, str(data_file))
        for rnd in range(args.rounds):
            for name in trainers:
                if name in errors or (name == CONTROL and rnd > 0):  # the control is for quality: one round
                    continue
                try:
                    if name == "autointerp":
                        r = train_autointerp(data, args, d_sae)
                    else:
                        r = run_peer(name, Path(pythons[name]), data_file, tmp / f"{name}_{rnd}", args, d_sae,
                                     auxk_alpha, dead_tokens, lr=ai_cfg.resolved_lr(d_sae) if name == CONTROL else None)
                except Exception as e:  # a peer failing must not hide the others' numbers
                    if name == "autointerp":
                        raise
                    msg = f"training failed in round {rnd + 1}: {type(e).__name__}: {e}"
                    log(f"[{name}] {msg}")
                    if name not in results:
                        errors[name] = msg
                    continue
                walls[name].append(r["wall_s"])
                cpus[name].append(r["cpu_s"])
                log(f"[train] round {rnd + 1} {name:<13} {r['tokens']:,} tokens in {r['wall_s']:.2f}s wall "
                    f"({r['tokens'] / r['wall_s']:,.0f} tok/s), {r['cpu_s']:.1f}s CPU")
                if name not in results:  # quality from the first round (same seed and data every round)
                    results[name] = r

    # ---- scoring: one code path for every model
    nan = math.nan
    rows: dict[str, dict] = {}
    for name in trainers:
        if name not in results:
            rows[name] = {"tok_s": nan, "wall_s": nan, "cpu_tok_s": nan, "fvu": nan, "l0": nan}
            continue
        r = results[name]
        s = score(r["weights"], x_eval, args, d_sae)
        if abs(s["fvu"] - s["fvu_reference"]) > 1e-4 * max(1.0, s["fvu_reference"]):
            log(f"[warn] {name}: evaluate_reconstruction FVU {s['fvu']:.6f} != plain TopK {s['fvu_reference']:.6f}")
        rows[name] = {"tok_s": r["tokens"] / min(walls[name]), "wall_s": min(walls[name]), "walls": walls[name],
                      "cpu_tok_s": r["tokens"] / min(cpus[name]), "cpus": cpus[name], "steps": r["steps"],
                      "tokens": r["tokens"], **s, "settings": r.get("settings"), "versions": r.get("versions")}

    # ---- report
    log("")
    log(f"{'trainer':<14} {'tokens/s':>9} {'wall s':>7} {'rounds (wall s)':>16} {'CPU tok/s':>9} "
        f"{'held-out FVU':>12} {'plain-TopK FVU':>14} {'L0':>5} {'dead@eval':>9}")
    for name in trainers:
        r = rows[name]
        rounds = ",".join(f"{w:.1f}" for w in r.get("walls", [])) or "-"
        label = name + ("*" if name == CONTROL else "")
        log(f"{label:<14} {fmt(r['tok_s'], ',.0f'):>9} {fmt(r['wall_s'], '.1f'):>7} {rounds:>16} "
            f"{fmt(r['cpu_tok_s'], ',.0f'):>9} {fmt(r['fvu'], '.4f'):>12} {fmt(r.get('fvu_reference', nan), '.4f'):>14} "
            f"{fmt(r['l0'], '.1f'):>5} {fmt(r.get('dead_on_eval', nan), '.1%'):>9}")
    if CONTROL in rows:
        log(f"* {CONTROL}: control row, not in RESULT - sparsify's SparseCoder and step with Adam at autointerp's LR, "
            "warmup (then transformers' linear decay to 0 over the run), one round: separates optimizer from implementation")
    ai = rows["autointerp"]
    ratios = {}
    for peer in ("sparsify", "saelens"):
        ratios[peer] = ai["tok_s"] / rows[peer]["tok_s"]  # nan propagates
        if rows[peer].get("walls") and ai.get("walls"):
            med = statistics.median(rows[peer]["walls"]) / statistics.median(ai["walls"])
            log(f"autointerp vs {peer:<9}: median-round ratio {med:.2f}x")
        log(f"autointerp vs {peer:<9}: tokens/s ratio {fmt(ratios[peer], '.2f')}x (CPU-time ratio "
            f"{fmt(ai['cpu_tok_s'] / rows[peer]['cpu_tok_s'], '.2f')}x), FVU difference (autointerp - peer) "
            f"{fmt(ai['fvu'] - rows[peer]['fvu'], '+.4f')}")
    log("")
    for name in trainers:
        r = rows[name]
        if name in errors:
            log(f"[{name}] NOT MEASURED: {errors[name]}")
        elif r.get("settings"):
            log(f"[{name}] settings: {json.dumps(r['settings'])}")
    log(f"[notes] FVU/L0 on {len(x_eval):,} held-out tokens with autointerp's evaluate_reconstruction after loading "
        f"every model into the same TopK SAE; 'plain-TopK FVU' recomputes it with an independent dense TopK. "
        f"Wall time = training loop only; tokens/s = best of the rounds; CPU tok/s = tokens / process CPU seconds "
        f"(best round). Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs. "
        f"Total benchmark time {time.perf_counter() - start:.0f}s.")
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "errors": errors, "ratios": ratios}, indent=1, default=str))

    key = {"autointerp": "ours"}  # the issue's RESULT spelling
    log("RESULT " + " ".join([
        *(f"{key.get(n, n)}_tok_s={fmt(rows[n]['tok_s'], '.1f')}" for n in NAMES),
        *(f"{key.get(n, n)}_fvu={fmt(rows[n]['fvu'], '.4f')}" for n in NAMES),
        f"ratio_to_sparsify={fmt(ratios['sparsify'], '.3f')}", f"ratio_to_saelens={fmt(ratios['saelens'], '.3f')}",
    ]))


if __name__ == "__main__":
    sys.exit(main())
