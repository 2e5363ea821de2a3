"""The prepared GPU check: the `gpu` tests, then harvest, SAE training and the correlation pass measured on
one CUDA device, in one run of a few minutes (sized for a 15-minute device lease, see docs/gpu.md).

Everything it needs is built on the spot: random-weight models from configs (a 12-layer d=768 GPT-2 and a
Gemma-3-270M-shaped model, with the tiny test tokenizers of tests/helpers/tiny_models.py) and the factbook
excerpt carried in benchmarks/data/gpu_corpus.jsonl (70 CIA World Factbook sections, public domain, 200 KB,
repeated under new ids). It imports only what the device image has (torch,
transformers, safetensors, scipy, pandas, pyarrow, rich, typer, pytest): no datasets, openai or gguf.

1. ``pytest tests/test_gpu.py`` (the CUDA tests and the CPU ones beside them);
2. harvest: ``harvest()`` end to end (tokenization, index, shard writing) in bf16 vs the bare forward of
   the model truncated after the hooked block, same batches, bf16 -> ``gpu_harvest_ratio``;
3. SAE training: TopK, k=32, d_sae=16,384, batch 4,096 on d=768 inputs -> ``gpu_sae_tok_s``; against the
   encoder-matmul-bound limit measured here: the two dense bf16 GEMMs every TopK step must do (x W_enc
   forward, x^T g for W_enc's gradient) timed alone -> ``gpu_sae_ratio_to_matmul``;
4. the correlation pass (1M units, 4,096 x 4,096 features, ~48 active per unit, as benchmarks/compare.py):
   the sparse pass on every CPU core vs the dense pass on the GPU (tf32; bf16 and fp32 also timed) ->
   ``gpu_corr_speedup`` (CPU seconds / GPU tf32 seconds), with the max |difference| of the two results.

Without CUDA it prints one "no CUDA" line and exits 0 (``--check-imports`` only imports and says so).
Ends with: RESULT gpu_harvest_ratio=... gpu_sae_tok_s=... gpu_sae_ratio_to_matmul=... gpu_corr_speedup=...

    PYTHONPATH=. python benchmarks/gpu_check.py [--quick] [--skip-tests]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("AUTOINTERP_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from autointerp.compare.correlation import correlate  # noqa: E402
from autointerp.data.corpus import CorpusConfig, Document, collect_documents  # noqa: E402
from autointerp.harvest.contexts import SpecialFrame, build_contexts, length_sorted_batches, pad_batch, tokenize_documents  # noqa: E402
from autointerp.harvest.harvester import HarvestConfig, harvest  # noqa: E402
from autointerp.models import load_model  # noqa: E402
from autointerp.sae.config import SAEConfig  # noqa: E402
from autointerp.sae.registry import create_sae  # noqa: E402
from autointerp.sae.trainer import TrainConfig, train_sae  # noqa: E402
from compare import make_pair  # noqa: E402  (benchmarks/compare.py)
from helpers.tiny_models import make_tokenizer  # noqa: E402  (tests/helpers/)

CORPUS = ROOT / "benchmarks" / "data" / "gpu_corpus.jsonl"
DEVICE = "cuda"  # --smoke-cpu runs every step on the CPU at toy sizes (to test this script without a GPU)
DTYPE = torch.bfloat16  # float32 in the CPU smoke run (bf16 kernels are very slow on CPUs without avx512_bf16)


def log(msg: str) -> None:
    print(msg, flush=True)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


# ---- models ---------------------------------------------------------------------------------------------

def build_model(kind: str, out: Path) -> Path:
    """A random-weight checkpoint of a real architecture with a tiny fast tokenizer, saved like a hub model."""
    import transformers as tf

    family = "gpt2" if kind == "gpt2-12x768" else "gemma3"
    tok = make_tokenizer(family)
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if kind == "gpt2-12x768":
        config = tf.GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=12, n_head=12, **ids)
        cls = tf.GPT2LMHeadModel
    else:  # the shape of Gemma 3 270M (its vocabulary aside)
        config = tf.Gemma3TextConfig(vocab_size=len(tok), hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                                     num_attention_heads=4, num_key_value_heads=1, head_dim=256, max_position_embeddings=2048, **ids)
        cls = tf.Gemma3ForCausalLM
    torch.manual_seed(0)
    cls(config).eval().save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


# ---- 1. tests -------------------------------------------------------------------------------------------

def run_tests(timeout: int) -> str:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_gpu.py"), "-q", "-x", "-p", "no:cacheprovider"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout}s"
    tail = (done.stdout + done.stderr).strip().splitlines()
    log("\n".join(tail[-25:]))
    return tail[-1] if tail else f"exit {done.returncode}"


# ---- 2. harvest -----------------------------------------------------------------------------------------

def bench_harvest(path: Path, layer: int, docs: list[Document], batch_size: int, ctx_len: int, repeats: int) -> dict:
    name = str(DTYPE).removeprefix("torch.")
    lm = load_model(str(path), device=DEVICE, dtype=name)
    cfg = HarvestConfig(layer=layer, ctx_len=ctx_len, batch_size=batch_size, device=DEVICE, compute_dtype=name, dtype=name)
    contexts = build_contexts(tokenize_documents(lm.tokenizer, [d.text for d in docs]), ctx_len, SpecialFrame.of(lm.tokenizer))
    pad = lm.tokenizer.pad_token_id or 0
    batches = []
    for batch in length_sorted_batches(contexts, batch_size):
        ids, mask = pad_batch([contexts[i] for i in batch], pad)
        batches.append((torch.from_numpy(ids).to(DEVICE), torch.from_numpy(mask).to(DEVICE)))
    n_tokens = sum(int(c.is_content.sum()) for c in contexts)
    # the limit: the model physically cut after block `layer`, no hooks, inputs already on the GPU
    parent_path, _, attr = lm.blocks_path.rpartition(".")
    parent = lm.model.get_submodule(parent_path)
    full = getattr(parent, attr)
    base = lm.model.get_submodule(lm.blocks_path.split(".")[0])
    limit, ours = [], []
    for _ in range(repeats):
        setattr(parent, attr, torch.nn.ModuleList(list(full)[: layer + 1]))
        with torch.inference_mode():
            base(input_ids=batches[0][0], attention_mask=batches[0][1], use_cache=False)
            sync()
            t = time.perf_counter()
            for ids, mask in batches:
                base(input_ids=ids, attention_mask=mask, use_cache=False)
            sync()
            limit.append(time.perf_counter() - t)
        setattr(parent, attr, full)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = harvest(lm, docs, Path(tmp) / "h", cfg, progress=False)
            sync()
            ours.append(time.perf_counter() - t)
            assert result.n_rows == n_tokens, (result.n_rows, n_tokens)
    limit_tps, ours_tps = n_tokens / min(limit), n_tokens / min(ours)
    log(f"harvest {path.name} L{layer}: {n_tokens:,} tokens, {len(batches)} batches of <= {batch_size} x {ctx_len}: "
        f"truncated {name} forward {limit_tps:,.0f} tok/s, harvest() end to end {ours_tps:,.0f} tok/s, ratio {ours_tps / limit_tps:.3f}")
    del lm
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return {"tokens": n_tokens, "limit_tok_s": limit_tps, "harvest_tok_s": ours_tps, "ratio": ours_tps / limit_tps}


# ---- 3. SAE training ------------------------------------------------------------------------------------

def encoder_matmul_limit(d_in: int, d_sae: int, batch: int, iters: int = 50) -> tuple[float, float]:
    """(tokens/s, TFLOP/s) of the two dense bf16 encoder GEMMs of a TopK step, timed alone."""
    x = torch.randn(batch, d_in, device=DEVICE, dtype=DTYPE)
    w = torch.randn(d_in, d_sae, device=DEVICE, dtype=DTYPE)
    g = torch.randn(batch, d_sae, device=DEVICE, dtype=DTYPE)
    for _ in range(5):
        x @ w, x.T @ g
    sync()
    t = time.perf_counter()
    for _ in range(iters):
        x @ w
        x.T @ g
    sync()
    step = (time.perf_counter() - t) / iters
    return batch / step, 2 * 2 * batch * d_in * d_sae / step / 1e12


def bench_sae(d_in: int, d_sae: int, k: int, batch: int, steps: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(batch * 8, d_in, generator=gen)  # 8 distinct batches, cycled (content does not change cost)

    def batches(n):
        for i in range(n):
            yield data[(i % 8) * batch : (i % 8 + 1) * batch]

    def run(n_steps: int) -> float:
        sae = create_sae(SAEConfig(d_in=d_in, d_sae=d_sae, k=k), seed=0)
        cfg = TrainConfig(total_tokens=n_steps * batch, batch_size=batch, device=DEVICE, checkpoint_every=10**9, log_every=max(1, n_steps // 4),
                          warmup_steps=1, b_dec_init="mean", ce_contexts=0)
        t = time.perf_counter()
        result = train_sae(sae, batches(n_steps), cfg)
        sync()
        assert result.steps == n_steps
        return time.perf_counter() - t

    run(5)  # warm-up: CUDA context, kernels, allocator
    seconds = run(steps)
    tok_s = steps * batch / seconds
    limit_tok_s, tflops = encoder_matmul_limit(d_in, d_sae, batch)
    log(f"SAE training TopK k={k} d_in={d_in} d_sae={d_sae:,} batch {batch:,}: {steps} steps in {seconds:.2f}s = {tok_s:,.0f} tok/s; "
        f"encoder-matmul limit {limit_tok_s:,.0f} tok/s ({tflops:.0f} TFLOP/s bf16); ratio {tok_s / limit_tok_s:.3f}")
    return {"tok_s": tok_s, "limit_tok_s": limit_tok_s, "ratio": tok_s / limit_tok_s}


# ---- 4. correlation -------------------------------------------------------------------------------------

def bench_corr(units: int, d: int, active: int) -> dict:
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    a, b = make_pair(units, d, d, active, rng)
    rows = np.arange(units)
    log(f"correlation data: {units:,} units x {d:,} + {d:,} features, {a.nnz / units:.1f} / {b.nnz / units:.1f} active per unit (built in {time.perf_counter() - t:.0f}s)")
    t = time.perf_counter()
    cpu = correlate(a, b, rows, rows, method="sparse", progress=False)
    cpu_s = time.perf_counter() - t
    out = {"cpu_s": cpu_s}
    correlate(a[:4096], b[:4096], rows[:4096], rows[:4096], method="dense", device=DEVICE, progress=False)  # warm-up
    for precision in ("tf32", "bf16", "fp32"):
        sync()
        t = time.perf_counter()
        gpu = correlate(a, b, rows, rows, method="dense", device=DEVICE, precision=precision, progress=False)
        sync()
        seconds = time.perf_counter() - t
        live = np.isfinite(cpu.corr)
        diff = float(np.abs(gpu.corr[live] - cpu.corr[live]).max())
        same_dead = bool(np.array_equal(gpu.dead_a, cpu.dead_a) and np.array_equal(gpu.dead_b, cpu.dead_b))
        log(f"correlation GPU dense {precision}: {seconds:.2f}s vs CPU sparse ({os.cpu_count()} cores) {cpu_s:.1f}s = {cpu_s / seconds:.1f}x; "
            f"max |diff| {diff:.1e}; same dead features {same_dead}")
        out[precision] = {"s": seconds, "speedup": cpu_s / seconds, "max_diff": diff}
        del gpu
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check-imports", action="store_true", help="only import what the check needs, then exit")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a first smoke run)")
    ap.add_argument("--test-timeout", type=int, default=240)
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    ap.add_argument("--smoke-cpu", action="store_true", help="run every step on the CPU at toy sizes (tests this script; no figures)")
    args = ap.parse_args()
    if args.check_imports:
        log("gpu_check: imports ok")
        return
    if args.smoke_cpu:
        smoke_cpu()
        return
    if not torch.cuda.is_available():
        log(f"gpu_check: no CUDA device (torch {torch.__version__} sees none); nothing to measure here - run it on a GPU machine (docs/gpu.md)")
        return
    logging.getLogger("transformers").setLevel(logging.ERROR)
    props = torch.cuda.get_device_properties(0)
    log(f"gpu_check: {props.name}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s); torch {torch.__version__}, CUDA {torch.version.cuda}; {os.cpu_count()} CPU cores")
    figures: dict = {"device": props.name, "torch": torch.__version__}
    t0 = time.perf_counter()
    if not args.skip_tests:
        figures["tests"] = run_tests(args.test_timeout)
        log(f"[{time.perf_counter() - t0:.0f}s] tests: {figures['tests']}")
    docs, _ = collect_documents(CorpusConfig(dataset=str(CORPUS), shuffle=False), count_tokens=len, max_tokens=10**9)
    copies = 2 if args.quick else 8  # the corpus repeated under new ids: enough tokens for steady GPU timings
    docs = [Document(f"{d.doc_id}#{c}", d.text) for c in range(copies) for d in docs]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, layer in (("gpt2-12x768", 6), ("gemma3-270m-shape", 9)):
            path = build_model(kind, Path(tmp) / kind)
            figures[f"harvest_{kind}"] = bench_harvest(path, layer, docs, batch_size=64, ctx_len=256, repeats=2)
            log(f"[{time.perf_counter() - t0:.0f}s] harvest {kind} done")
    figures["sae"] = bench_sae(768, 16_384, 32, 4096, steps=30 if args.quick else 150)
    log(f"[{time.perf_counter() - t0:.0f}s] SAE done")
    figures["corr"] = bench_corr(200_000 if args.quick else 1_000_000, 4096, 48)
    log(f"[{time.perf_counter() - t0:.0f}s] correlation done")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    h = figures["harvest_gpt2-12x768"]
    log(f"RESULT gpu_harvest_ratio={h['ratio']:.3f} gpu_sae_tok_s={figures['sae']['tok_s']:.0f} "
        f"gpu_sae_ratio_to_matmul={figures['sae']['ratio']:.3f} gpu_corr_speedup={figures['corr']['tf32']['speedup']:.1f}")


def smoke_cpu() -> None:
    """Every measuring step once on the CPU at toy sizes: catches a broken script before device time is spent."""
    global DEVICE, DTYPE
    DEVICE, DTYPE = "cpu", torch.float32
    docs, _ = collect_documents(CorpusConfig(dataset=str(CORPUS), shuffle=False), count_tokens=len, max_tokens=10**9)
    docs = [Document(d.doc_id, d.text[:1500]) for d in docs[:2]]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, layer in (("gpt2-12x768", 6), ("gemma3-270m-shape", 9)):
            bench_harvest(build_model(kind, Path(tmp) / kind), layer, docs, batch_size=8, ctx_len=64, repeats=1)
    bench_sae(64, 512, 8, 256, steps=3)
    bench_corr(3000, 128, 8)
    log("gpu_check: smoke run on the CPU passed (toy sizes, no figures)")


if __name__ == "__main__":
    main()
