"""The sparse backward (sparse_ops) must give the same losses and gradients as plain autograd."""

from __future__ import annotations

import pytest
import torch

from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.sparse_ops import SparseDecode, SparseEncode, gather_dots, scatter_rows


def _losses_and_grads(sae, x, dead_mask, sparse: bool, aux_weight: float = 0.5):
    sae.sparse_backward = sparse
    sae.zero_grad(set_to_none=True)
    out = sae(x, dead_mask=dead_mask)
    (out.fvu + out.l1_loss + aux_weight * out.auxk_loss).backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    return out, grads


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
@pytest.mark.parametrize("with_dead", [False, True])
@pytest.mark.parametrize("variant", ["plain", "normalized_l1", "no_b_dec_in_encoder"])
def test_sparse_backward_matches_dense_autograd(arch, with_dead, variant):
    torch.manual_seed(0)
    d_in, d_sae, n = 24, 96, 64
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=6, dtype="float64",
                    normalize_activations=variant == "normalized_l1",
                    l1_coefficient=0.01 if variant == "normalized_l1" else None,
                    apply_b_dec_to_input=variant != "no_b_dec_in_encoder")
    sae = create_sae(cfg, seed=1).train()
    x = (torch.randn(n, d_in, dtype=torch.float64) * 3 + 1)
    sae.fit_input_scale(x)
    sae.init_b_dec(x)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    if with_dead:
        dead[::3] = True  # 32 dead latents > k_aux = d_in / 2 = 12
    dense_out, dense_grads = _losses_and_grads(sae, x, dead if with_dead else None, sparse=False)
    sparse_out, sparse_grads = _losses_and_grads(sae, x, dead if with_dead else None, sparse=True)

    for field in ("fvu", "auxk_loss", "l1_loss"):
        torch.testing.assert_close(getattr(sparse_out, field), getattr(dense_out, field), rtol=1e-10, atol=1e-12)
    assert (float(dense_out.auxk_loss.detach()) > 0) == with_dead
    torch.testing.assert_close(sparse_out.x_hat, dense_out.x_hat, rtol=1e-10, atol=1e-10)
    for name, g in dense_grads.items():
        assert g.abs().max() > 0, name  # every parameter does get a gradient
        torch.testing.assert_close(sparse_grads[name], g, rtol=1e-8, atol=1e-10, msg=name)
    # the encoder gradient keeps W_enc's storage layout, so nothing is copied on accumulation
    assert sparse_grads["W_enc"].stride() == sae.W_enc.stride()


def test_sparse_backward_fewer_dead_than_k_aux_and_inference_mode():
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, k=4, dtype="float64"), seed=0).train()
    x = torch.randn(32, 16, dtype=torch.float64)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[[3, 40]] = True  # 2 dead < k_aux = 8
    dense_out, dense_grads = _losses_and_grads(sae, x, dead, sparse=False)
    sparse_out, sparse_grads = _losses_and_grads(sae, x, dead, sparse=True)
    torch.testing.assert_close(sparse_out.auxk_loss, dense_out.auxk_loss)
    for name, g in dense_grads.items():
        torch.testing.assert_close(sparse_grads[name], g, msg=name)
    with torch.no_grad():  # no autograd: the plain path, same latents
        a = sae(x).latents
    assert torch.equal(a.top_indices.sort(-1).values, sparse_out.latents.top_indices.sort(-1).values)


def test_kernels_against_dense_formulas():
    g = torch.Generator().manual_seed(0)
    n, k, d, m = 50, 5, 7, 40
    idx = torch.stack([torch.randperm(m, generator=g)[:k] for _ in range(n)])
    vals = torch.rand(n, k, generator=g, dtype=torch.float64)
    rows = torch.randn(n, d, generator=g, dtype=torch.float64)
    table = torch.randn(m, d, generator=g, dtype=torch.float64)
    codes = torch.zeros(n, m, dtype=torch.float64).scatter_(1, idx, vals)
    torch.testing.assert_close(scatter_rows(idx, vals, rows, m), codes.T @ rows)
    torch.testing.assert_close(gather_dots(idx, rows, table), (rows @ table.T).gather(1, idx))
    empty = idx[:, :0]
    assert scatter_rows(empty, vals[:, :0], rows, m).abs().sum() == 0
    assert gather_dots(empty, rows, table).shape == (n, 0)


def test_autograd_functions_pass_gradcheck():
    g = torch.Generator().manual_seed(1)
    n, d, m, k = 6, 4, 10, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    b_dec = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(d, m, generator=g, dtype=torch.float64, requires_grad=True)
    b = (torch.rand(m, generator=g, dtype=torch.float64) + 0.5).requires_grad_()  # well away from ReLU kinks

    def select(pre):
        return pre.topk(k, dim=-1, sorted=False)

    def enc(x, b_dec, W, b):
        return SparseEncode.apply(x, b_dec, W, b, select, None, 0)[0]
    assert torch.autograd.gradcheck(enc, (x, b_dec, W, b))

    idx = torch.stack([torch.randperm(m, generator=g)[:k] for _ in range(n)])
    acts = torch.rand(n, k, generator=g, dtype=torch.float64, requires_grad=True)
    W_dec = torch.randn(m, d, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: SparseDecode.apply(a, idx, w), (acts, W_dec))
