"""SAE core: architectures, sparse decode, persistence, and a ground-truth recovery benchmark."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from autointerp.errors import UserError
from helpers.superposition import feature_recovery, make_superposition_data
from autointerp.sae.registry import ARCHITECTURES, create_sae
from autointerp.rundir.layout import SAE_CFG_FILE as CFG_FILE, SAE_WEIGHTS_FILE as WEIGHTS_FILE
from autointerp.sae.topk import BatchTopKSAE, TopKSAE
from autointerp.sae.relu import ReLUSAE
from autointerp.sae.config import SAEConfig
from autointerp.sae.saelens import config_from_json, load_sae, save_sae
from autointerp.sae.trainer import TrainConfig, train_sae

ARCHS = ["topk", "batchtopk", "relu"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _dense(acts: torch.Tensor, idx: torch.Tensor, d_sae: int) -> torch.Tensor:
    return torch.zeros(acts.shape[0], d_sae).scatter_add(1, idx, acts)


def _trained(arch: str, normalize: bool, steps: int = 10) -> torch.nn.Module:
    """A few real training steps, so b_dec / b_enc / threshold / input scale are all non-trivial."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps * 64, 16, generator=g) * 7.0 + 3.0
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, architecture=arch, k=4, normalize_activations=normalize), seed=0)
    train_sae(sae, iter(x.split(64)), TrainConfig(total_tokens=len(x), batch_size=64, lr=1e-2, warmup_steps=0))
    return sae.eval()


def test_registry_dispatch():
    assert set(ARCHS) <= set(ARCHITECTURES)
    for arch, cls in zip(ARCHS, [TopKSAE, BatchTopKSAE, ReLUSAE], strict=True):
        sae = create_sae(SAEConfig(d_in=8, d_sae=32, architecture=arch, k=4))
        assert type(sae) is cls and sae.architecture == arch
    with pytest.raises(UserError, match="unknown SAE architecture"):
        SAEConfig(d_in=8, d_sae=32, architecture="gated")
    # SAELens spells ReLU+L1 "standard" and older TopK as standard + activation_fn_str="topk".
    assert config_from_json({"d_in": 8, "d_sae": 32, "architecture": "standard"}).architecture == "relu"
    old_topk = {"d_in": 8, "d_sae": 32, "architecture": "standard", "activation_fn_str": "topk",
                "activation_fn_kwargs": {"k": 5}}
    assert (config_from_json(old_topk).architecture, config_from_json(old_topk).k) == ("topk", 5)


def test_init_encoder_is_decoder_transpose_and_unit_norm():
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, k=4), seed=3)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert torch.count_nonzero(sae.b_enc) == 0 and torch.count_nonzero(sae.b_dec) == 0
    assert torch.equal(create_sae(sae.cfg, seed=3).W_dec, sae.W_dec)  # seeded init is reproducible
    assert not torch.equal(create_sae(sae.cfg, seed=4).W_dec, sae.W_dec)


def test_unit_norm_decoder_after_training_and_no_parallel_gradient():
    sae = _trained("topk", normalize=False)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    assert not torch.equal(sae.W_enc, sae.W_dec.T)  # it did train
    x = torch.randn(32, 16)
    sae.train()
    sae(x).fvu.backward()
    assert (sae.W_dec.grad * sae.W_dec).sum(-1).abs().max() > 1e-6
    sae.remove_gradient_parallel_to_decoder_directions()
    assert (sae.W_dec.grad * sae.W_dec).sum(-1).abs().max() < 1e-6


def test_topk_encode_returns_exactly_k_actives():
    sae = create_sae(SAEConfig(d_in=16, d_sae=128, k=8), seed=0)
    acts, idx = sae.encode(torch.randn(2, 5, 16))  # arbitrary leading dims
    assert acts.shape == idx.shape == (2, 5, 8)
    assert (acts > 0).all()
    flat = idx.reshape(-1, 8)
    assert all(len(set(row.tolist())) == 8 for row in flat)


@pytest.mark.parametrize("arch", ARCHS)
def test_sparse_decode_equals_dense_reconstruction(arch):
    sae = _trained(arch, normalize=False)
    x = torch.randn(40, 16) * 7.0 + 3.0
    acts, idx = sae.encode(x)
    dense = _dense(acts, idx, 64)
    assert torch.allclose(sae.decode(acts, idx), dense @ sae.W_dec + sae.b_dec, atol=1e-4)
    # and the sparse code is exactly the dense ReLU/threshold code, re-derived independently
    pre = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    if arch == "relu":
        assert torch.allclose(dense, pre, atol=1e-5)
    elif arch == "batchtopk":
        assert sae.threshold > 0
        assert torch.allclose(dense, pre * (pre > sae.threshold), atol=1e-5)


def test_batchtopk_keeps_k_times_batch_in_training():
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, architecture="batchtopk", k=4), seed=0).train()
    out = sae(torch.randn(50, 16))
    assert int((out.latents.top_acts > 0).sum()) == 4 * 50
    per_row = (out.latents.top_acts > 0).sum(-1)
    assert per_row.min() != per_row.max()  # variable L0 per token, padded with zeros
    assert sae.threshold > 0


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(tmp_path, arch, normalize):
    sae = _trained(arch, normalize)
    if normalize:
        assert abs(float(sae.input_scale) - 1.0) > 0.1  # the fold is actually exercised
    sae.cfg.metadata.update(model_name="gpt2", hook_name="blocks.3.hook_resid_post", context_size=128)
    save_sae(sae, tmp_path)
    loaded = load_sae(tmp_path)
    x = torch.randn(100, 16) * 7.0 + 3.0  # raw-space activations, not the training batch
    a0, i0 = sae.encode(x)
    a1, i1 = loaded.encode(x)
    assert torch.allclose(_dense(a0, i0, 64), _dense(a1, i1, 64), atol=1e-4)
    assert torch.allclose(sae.decode(a0, i0), loaded.decode(a1, i1), atol=1e-4)
    assert not loaded.cfg.normalize_activations  # weights act on raw activations now
    raw = json.loads((tmp_path / CFG_FILE).read_text())
    assert raw["autointerp_architecture"] == arch and raw["hook_name"] == "blocks.3.hook_resid_post"
    assert raw["apply_b_dec_to_input"] is True and raw["normalize_activations"] == "none"
    w = load_file(str(tmp_path / WEIGHTS_FILE))
    assert w["W_enc"].shape == (16, 64) and w["W_dec"].shape == (64, 16)
    assert w["b_enc"].shape == (64,) and w["b_dec"].shape == (16,)
    assert loaded.cfg.metadata["context_size"] == 128


def test_load_errors(tmp_path):
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, k=4), seed=0)
    with pytest.raises(UserError, match="missing"):
        load_sae(tmp_path / "nope")
    save_sae(sae, tmp_path)
    w_path = tmp_path / WEIGHTS_FILE
    good = w_path.read_bytes()
    w_path.write_bytes(good[: len(good) // 2])  # truncated download / killed writer
    with pytest.raises(UserError, match="damaged"):
        load_sae(tmp_path)
    w_path.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="damaged"):
        load_sae(tmp_path)
    w_path.write_bytes(good)
    load_sae(tmp_path)
    raw = json.loads((tmp_path / CFG_FILE).read_text())
    (tmp_path / CFG_FILE).write_text(json.dumps({**raw, "d_sae": 48}))
    with pytest.raises(UserError, match="shape"):
        load_sae(tmp_path)
    (tmp_path / CFG_FILE).write_text(json.dumps(raw))
    tensors = load_file(str(w_path))
    save_file({k: v for k, v in tensors.items() if k != "b_enc"}, str(w_path))
    with pytest.raises(UserError, match="b_enc"):
        load_sae(tmp_path)
    (tmp_path / CFG_FILE).write_text("{not json")
    with pytest.raises(UserError, match="JSON"):
        load_sae(tmp_path)


def test_k_must_be_below_d_sae():
    for arch in ("topk", "batchtopk"):
        with pytest.raises(UserError, match="k = 64"):
            SAEConfig(d_in=16, d_sae=64, architecture=arch, k=64)
    with pytest.raises(UserError, match="k = 0"):
        SAEConfig(d_in=16, d_sae=64, k=0)


def test_loads_saelens_style_standard_sae(tmp_path):
    g = torch.Generator().manual_seed(0)
    W_enc, W_dec = torch.randn(8, 20, generator=g), torch.randn(20, 8, generator=g)
    b_enc, b_dec = torch.randn(20, generator=g), torch.randn(8, generator=g)
    save_file({"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}, str(tmp_path / WEIGHTS_FILE))
    (tmp_path / CFG_FILE).write_text(json.dumps({
        "architecture": "standard", "d_in": 8, "d_sae": 20, "dtype": "torch.float32", "device": "cpu",
        "model_name": "pythia-70m", "hook_name": "blocks.2.hook_resid_post", "context_size": 128,
        "normalize_activations": "none", "apply_b_dec_to_input": True, "unknown_future_field": 1}))
    sae = load_sae(tmp_path)
    assert sae.architecture == "relu" and sae.cfg.metadata["model_name"] == "pythia-70m"
    x = torch.randn(5, 8)
    f = torch.relu((x - b_dec) @ W_enc + b_enc)
    assert torch.allclose(sae.decode(*sae.encode(x)), f @ W_dec + b_dec, atol=1e-4)


def test_auxk_loss_revives_only_dead_latents():
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, k=4), seed=0)
    x = torch.randn(32, 16)
    assert sae(x).auxk_loss == 0
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:20] = True
    out = sae(x, dead_mask=dead)
    assert out.auxk_loss > 0
    out.auxk_loss.backward()
    grad_rows = sae.W_dec.grad.abs().sum(-1) > 0
    assert grad_rows[:20].any() and not grad_rows[20:].any()


def test_synthetic_feature_recovery_benchmark():
    """Ground truth: 256 unit features superposed in 64 dims, ~5 active per sample (exp magnitudes)."""
    t0 = time.time()
    data = make_superposition_data(n_features=256, d=64, n_samples=20_000, avg_active=5, seed=0,
                                   magnitude="exponential")
    assert data.X.shape == (20_000, 64) and data.codes.shape == (20_000, 256)
    assert torch.allclose(data.dictionary.norm(dim=1), torch.ones(256), atol=1e-5)
    assert 4.5 < data.codes._nnz() / 20_000 < 5.5 and (data.codes.values() >= 0).all()
    g = torch.Generator().manual_seed(0)
    epochs, bs = 10, 256  # ~780 Adam steps: enough at lr 3e-3 (the d_sae-scaled default is tuned for long runs)
    batches = (data.X[torch.randperm(20_000, generator=g)][i:i + bs] for _ in range(epochs)
               for i in range(0, 20_000, bs))
    sae = create_sae(SAEConfig(d_in=64, d_sae=512, k=5), seed=0)
    before = feature_recovery(sae.W_dec, data.dictionary)
    res = train_sae(sae, batches, TrainConfig(total_tokens=epochs * 20_000, batch_size=bs, lr=3e-3, warmup_steps=20))
    rec = feature_recovery(sae.W_dec, data.dictionary, threshold=0.9)
    print(f"\nsynthetic recovery: {rec.fraction:.1%} of 256 features at cos>0.9, mean max cos "
          f"{rec.mean_max_cosine:.4f} (random init {before.mean_max_cosine:.4f}); train FVU {res.fvu:.3f}, "
          f"L0 {res.l0:.1f}, dead {res.dead_fraction:.1%}; {time.time() - t0:.1f}s")
    assert before.fraction < 0.05
    assert rec.fraction >= 0.9 and rec.mean_max_cosine > 0.95
    assert res.fvu < 0.3 and res.l0 == pytest.approx(5, abs=0.2)
