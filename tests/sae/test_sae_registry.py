"""Adding an SAE architecture is a subclass plus ``registry.register``: a toy architecture defined here, with
no package file edited, is accepted by the config, trained by the real trainer, saved and loaded in the
SAELens layout, and encoded by the one encode step (``autointerp.sae.encode``) the exemplars and compare use.
Also: the facts other modules read come from the classes, never from name comparisons."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autointerp.errors import UserError
from autointerp.sae import config as sae_config, registry
from autointerp.sae.base import EncoderOutput, SparseAutoencoder
from autointerp.sae.config import SAEConfig, TrainConfig
from autointerp.sae.encode import chunk_codes, inference, sparse_codes
from autointerp.sae.saelens import load_sae, save_sae
from autointerp.sae.trainer import train_sae


class HalfKSAE(SparseAutoencoder):
    """Toy: keeps the k // 2 largest latents per token (a selection rule no built-in architecture has)."""
    architecture = "toy_halfk"
    uses_k = True
    default_l1 = 1e-4

    def _select(self, pre: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(*pre.topk(max(self.cfg.k // 2, 1), dim=-1, sorted=False))


@pytest.fixture
def toy(monkeypatch):
    """Register the toy architecture for one test; the registry's tables are restored afterwards."""
    uses_k = dict(sae_config.ARCHITECTURE_USES_K)
    monkeypatch.setattr(registry, "ARCHITECTURES", dict(registry.ARCHITECTURES))
    monkeypatch.setattr(registry, "ARCHITECTURE_USES_K", uses_k)
    monkeypatch.setattr(sae_config, "ARCHITECTURE_USES_K", uses_k)
    assert registry.register(HalfKSAE) is HalfKSAE
    return HalfKSAE


def _low_rank_batches(d_in: int, n_batches: int, rows: int, seed: int = 0):
    """Random activations with structure (a few directions, sparse mixing), which an SAE can learn."""
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(12, d_in, generator=gen)
    for _ in range(n_batches):
        coef = torch.rand(rows, 12, generator=gen) * (torch.rand(rows, 12, generator=gen) < 0.25)
        yield coef @ dirs + 0.01 * torch.randn(rows, d_in, generator=gen)


def test_a_toy_architecture_registered_from_outside_trains_saves_loads_and_encodes(toy, tmp_path):
    cfg = SAEConfig(architecture="toy_halfk", k=6, d_sae=48).for_input(16, {"model_name": "toy"})
    sae = registry.create_sae(cfg, seed=0)
    assert type(sae) is toy and sae.l1_coefficient == 1e-4  # the class's default_l1: no l1_coefficient set
    data = list(_low_rank_batches(16, 40, 64))
    with torch.no_grad():
        before = float(sae(torch.cat(data[-4:])).fvu)
    result = train_sae(sae, iter(data), TrainConfig(batch_size=64, total_tokens=64 * 40, lr=5e-3, device="cpu"))
    assert result.steps == 40 and 0 < result.l0 <= 3.0  # at most k // 2 per token, in training too
    with torch.no_grad():
        after = float(sae.eval()(torch.cat(data[-4:])).fvu)
    assert after < 0.5 * before

    save_sae(sae, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is toy and loaded.cfg.k == 6 and loaded.cfg.d_sae == 48
    for name, tensor in sae.state_dict().items():
        assert torch.equal(tensor.cpu(), loaded.state_dict()[name]), name

    acts = torch.cat(data[:3])
    with inference(loaded) as device:
        chunks = list(chunk_codes(loaded, acts, 50, device))
    rows = np.concatenate([c[2] for c in chunks])
    feats = np.concatenate([c[3] for c in chunks])
    assert [c[:2] for c in chunks] == [(s, min(s + 50, len(acts))) for s in range(0, len(acts), 50)]
    assert np.bincount(rows, minlength=len(acts)).max() <= 3  # at most k // 2 positive codes per row
    dense = np.zeros((len(acts), 48), np.float32)
    dense[rows, feats] = np.concatenate([c[4] for c in chunks])
    with torch.no_grad():
        top = loaded.encode(acts)
    expected = np.zeros_like(dense)
    np.put_along_axis(expected, top.top_indices.numpy(), top.top_acts.numpy(), axis=1)
    np.testing.assert_allclose(dense, np.maximum(expected, 0), rtol=1e-6)


def test_config_checks_a_registered_architecture_by_its_facts(toy):
    with pytest.raises(UserError, match="k = 8 must be in"):
        SAEConfig(architecture="toy_halfk", k=8, d_sae=8)  # uses_k: k is checked against d_sae
    with pytest.raises(UserError, match="unknown SAE architecture"):
        SAEConfig(architecture="toy_other")


def test_facts_come_from_the_classes():
    arch = registry.ARCHITECTURES
    assert {n for n, c in arch.items() if c.uses_k} == {"topk", "batchtopk"}
    assert registry.trainable_names() == ["topk", "batchtopk", "relu"]
    assert {n: c.default_l1 for n, c in arch.items()} == {"topk": 0.0, "batchtopk": 0.0, "relu": 0.2, "jumprelu": 0.0}
    relu = registry.create_sae(SAEConfig(architecture="relu", d_in=4, d_sae=8))
    assert relu.saelens_architecture() == "standard" and relu.l1_coefficient == 0.2
    batch = registry.create_sae(SAEConfig(architecture="batchtopk", d_in=4, d_sae=8, k=2, l1_coefficient=0.5))
    assert batch.saelens_architecture() == "topk" and batch.l1_coefficient == 0.5  # threshold not estimated yet
    batch.threshold.fill_(0.1)
    assert batch.saelens_architecture() == "jumprelu"
    with pytest.raises(UserError, match="unknown; autointerp runs"):
        registry.architecture("nope")


def test_sparse_codes_are_the_positive_entries_of_encode():
    sae = registry.create_sae(SAEConfig(architecture="relu", d_in=8, d_sae=32), seed=1)
    x = torch.randn(20, 8)
    rows, feats, vals = sparse_codes(sae, x, torch.device("cpu"))
    with torch.no_grad():
        dense = torch.relu(x @ sae.W_enc - sae.b_dec @ sae.W_enc + sae.b_enc).numpy()
    got = np.zeros_like(dense)
    got[rows, feats] = vals
    np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-6)
    assert rows.dtype == np.int64 and feats.dtype == np.int64 and (vals > 0).all()
