"""SAE metrics: FVU / L0 / fire counts vs brute force, perfect and mean-only SAEs, Gini, decoder cosines,
density histogram, CE splicing on tiny causal LMs (specials kept, identity splice lossless), end to end
on a real harvest, and JSON round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autointerp.data.corpus import CorpusConfig, collect_documents
from autointerp.errors import UserError
from autointerp.models import load_model
from autointerp.harvest.buffer import held_out_split, iter_activation_batches
from autointerp.harvest.contexts import (
    SpecialFrame,
    build_contexts,
    pad_batch,
    tokenize_documents,
)
from autointerp.harvest.harvester import HarvestConfig, harvest, load_manifest
from autointerp.sae.metrics import (
    SAEMetrics,
    ce_loss_metrics,
    compute_metrics,
    decoder_cosine_stats,
    density_histogram,
    evaluate_reconstruction,
    gini,
)
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.trainer import TrainConfig, train_sae


pytestmark = pytest.mark.usefixtures("one_thread")


def _identity_sae(d: int):
    """Dictionary [I; -I], k = d: relu(x) on +e_i and relu(-x) on -e_i reconstruct x exactly."""
    sae = create_sae(SAEConfig(d_in=d, d_sae=2 * d, k=d))
    with torch.no_grad():
        W = torch.cat([torch.eye(d), -torch.eye(d)])
        sae.W_dec.copy_(W)
        sae.W_enc.copy_(W.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def _mean_sae(d: int, mean: torch.Tensor):
    """No latent ever fires (b_enc very negative), so x_hat = b_dec = the data mean."""
    sae = create_sae(SAEConfig(d_in=d, d_sae=4 * d, k=3), seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(-1e6)
        sae.b_dec.copy_(mean)
    return sae.eval()


def _data(n=300, d=16, seed=0, offset=5.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(0.5, 3, d) + offset * torch.arange(d) / d


def _docs(text_corpus: Path):
    return collect_documents(CorpusConfig(dataset=str(text_corpus), shuffle=False))[0]


# ---------------------------------------------------------------- reconstruction

@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_fvu_l0_fire_counts_match_numpy_bruteforce(arch):
    x = _data()
    sae = create_sae(SAEConfig(d_in=16, d_sae=64, k=5, architecture=arch), seed=1)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0) + 0.3)
        sae.b_enc.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    W_enc, b_enc, W_dec, b_dec = (getattr(sae, n).detach().double().numpy() for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    X = x.double().numpy()
    pre = np.maximum((X - b_dec) @ W_enc + b_enc, 0)
    if arch == "topk":
        keep = np.zeros_like(pre, dtype=bool)
        np.put_along_axis(keep, np.argsort(-pre, axis=1)[:, :5], True, axis=1)
        pre = pre * keep
    x_hat = pre @ W_dec + b_dec
    fvu = ((X - x_hat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()

    rec = evaluate_reconstruction(sae, x.split(37))  # uneven batches: the mean must be global, not per batch
    assert rec["n_tokens"] == 300
    assert rec["fvu"] == pytest.approx(fvu, rel=1e-5)
    assert rec["explained_variance"] == pytest.approx(1 - fvu, rel=1e-5)
    assert rec["l0"] == pytest.approx((pre > 0).sum(1).mean(), rel=1e-9)
    np.testing.assert_array_equal(rec["fire_counts"].numpy(), (pre > 0).sum(0))
    assert 0 < fvu < 5 and sae.training  # mode restored after the eval-mode pass


def test_perfect_sae_has_fvu_zero_and_mean_sae_fvu_one():
    x = _data(offset=1000.0)  # large mean: the centred total variance must not cancel catastrophically
    perfect = evaluate_reconstruction(_identity_sae(16), x.split(64))
    assert perfect["fvu"] < 1e-12 and perfect["l0"] == pytest.approx(16)
    mean_only = evaluate_reconstruction(_mean_sae(16, x.double().mean(0).float()), x.split(64))
    assert mean_only["fvu"] == pytest.approx(1.0, abs=1e-5)
    assert mean_only["l0"] == 0 and int(mean_only["fire_counts"].sum()) == 0
    m = compute_metrics(_mean_sae(16, x.mean(0)), x.split(64))
    assert m.dead_fraction == 1.0 and m.dead_window_tokens == 300 and m.r2 == pytest.approx(0.0, abs=1e-5)
    assert m.log10_density_hist["counts"] == [0] * len(m.log10_density_hist["counts"])


def test_wrong_width_is_a_user_error():
    with pytest.raises(UserError, match="expects"):
        evaluate_reconstruction(_identity_sae(16), [torch.zeros(4, 8)])
    with pytest.raises(UserError, match="no evaluation"):
        evaluate_reconstruction(_identity_sae(16), [])


# ---------------------------------------------------------------- usage and geometry

def test_gini_extremes_and_bruteforce():
    assert gini(np.full(100, 7)) == pytest.approx(0.0, abs=1e-12)
    one_hot = np.zeros(1000)
    one_hot[3] = 50
    assert gini(one_hot) == pytest.approx(0.999)  # (n - 1) / n
    assert gini([0, 0, 1, 3]) == pytest.approx(0.625)
    c = np.random.default_rng(0).poisson(3, 200).astype(float)
    brute = np.abs(c[:, None] - c[None, :]).sum() / (2 * c.size ** 2 * c.mean())
    assert gini(torch.from_numpy(c)) == pytest.approx(brute, rel=1e-12)
    assert gini(np.zeros(5)) == 0.0


def test_decoder_cosine_stats_match_bruteforce():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(300, 16, generator=g) * torch.rand(300, 1, generator=g).add(0.1)  # unnormalised rows
    W[17] = -2.5 * W[200]  # anti-parallel pair: |cos| = 1 is the max
    Wn = (W / W.norm(dim=1, keepdim=True)).double().numpy()
    cos = np.abs(Wn @ Wn.T)[np.triu_indices(300, k=1)]
    mean, p95, mx = decoder_cosine_stats(W, chunk=64)  # 64 does not divide 300: ragged last chunk
    assert mean == pytest.approx(cos.mean(), abs=1e-6)
    assert mx == pytest.approx(1.0, abs=1e-6) and mx == pytest.approx(cos.max(), abs=1e-6)
    assert p95 == pytest.approx(np.quantile(cos, 0.95), abs=1e-4)
    assert decoder_cosine_stats(W, chunk=1024) == pytest.approx((mean, p95, mx), abs=1e-6)


def test_density_histogram_counts_alive_features():
    counts = np.array([0, 0, 1, 10, 100, 1000, 1000, 5, 0])
    h = density_histogram(counts, n_tokens=1000, bins=6)
    assert sum(h["counts"]) == 6 and len(h["bin_edges"]) == 7
    assert h["bin_edges"][0] == -3.0 and h["bin_edges"][-1] == 0.0
    assert h["counts"][-1] == 2  # density 1 lands in the closed last bin
    clipped = density_histogram(counts, 1000, bins=[-2.0, -1.0, 0.0])  # 1/1000 and 5/1000 clip into the first bin
    assert clipped["counts"] == [3, 3]
    assert density_histogram(counts / 1000, 1, bins=6) == h  # a density works with n_tokens=1


# ---------------------------------------------------------------- CE splicing

def _trained_lm(model_dir: Path, docs, ctx_len=32, steps=25):
    """Random-weight tiny LMs predict near-uniformly, so ablation cannot hurt them; fit the corpus first."""
    lm = load_model(str(model_dir))
    ctxs = build_contexts(tokenize_documents(lm.tokenizer, [d.text for d in docs]), ctx_len, SpecialFrame.of(lm.tokenizer))
    ids, mask = (torch.from_numpy(a) for a in pad_batch(ctxs, lm.tokenizer.pad_token_id or 0))
    labels = ids.masked_fill(mask == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.Adam(lm.model.parameters(), lr=3e-3)
    lm.model.train()
    for _ in range(steps):
        opt.zero_grad()
        lm.model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss.backward()
        opt.step()
    lm.model.eval()
    return lm


@pytest.fixture(scope="module")
def trained_lms(tiny_model_dirs, text_corpus):
    n = torch.get_num_threads()  # module fixtures run before the function-scoped _one_thread
    torch.set_num_threads(1)
    try:
        docs = _docs(text_corpus)
        return docs, {f: _trained_lm(tiny_model_dirs[f], docs) for f in ("gpt2", "gemma3")}
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_ce_identity_splice_is_lossless_and_zero_ablation_hurts(trained_lms, family):
    docs, lms = trained_lms
    lm = lms[family]
    ident = ce_loss_metrics(lm, _identity_sae(lm.d_model), docs, layer=1, site="resid", ctx_len=32, n_contexts=16, batch_size=8)
    assert ident["ce_n_tokens"] > 100
    assert ident["ce_spliced"] == pytest.approx(ident["ce_clean"], abs=1e-6)
    assert ident["ce_zero_ablate"] > ident["ce_clean"] + 0.2
    assert ident["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert ident["delta_lm_loss"] == pytest.approx(0.0, abs=1e-6)
    # A random SAE must change the loss: the spliced pass really runs through the SAE.
    rand = ce_loss_metrics(lm, create_sae(SAEConfig(d_in=lm.d_model, d_sae=64, k=4), seed=0), docs, 1, "resid", 32, n_contexts=16)
    assert rand["ce_clean"] == pytest.approx(ident["ce_clean"], abs=1e-9)
    assert rand["delta_lm_loss"] > 0.05 and rand["ce_loss_recovered"] < 0.99


def test_ce_splice_keeps_special_positions(trained_lms):
    """Gemma's <bos> is not in the SAE's data: it keeps its activation; content positions are replaced."""
    docs, lms = trained_lms
    lm = lms["gemma3"]
    seen: list[torch.Tensor] = []

    def grab(_module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handle = lm.blocks[2].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        ce_loss_metrics(lm, _identity_sae(lm.d_model), docs, 1, "resid", 32, n_contexts=4, batch_size=4)
    finally:
        handle.remove()
    assert SpecialFrame.of(lm.tokenizer).prefix == (lm.tokenizer.bos_token_id,)  # position 0 is <bos>
    clean, spliced, zero = seen  # one batch: clean, spliced, zero-ablated inputs of the next block
    assert torch.equal(spliced, clean)
    assert zero[:, 0].abs().sum(-1).gt(0).all() and torch.equal(zero[:, 0], clean[:, 0])
    assert zero[:, 1].abs().max() == 0 and clean[:, 1].abs().max() > 0  # >= 2 content tokens per context


def test_ce_non_causal_returns_none(tiny_model_dirs, text_corpus, tmp_path):
    lm = load_model(str(tiny_model_dirs["bert"]))
    docs = _docs(text_corpus)
    out = ce_loss_metrics(lm, _identity_sae(lm.d_model), docs, 1, "resid", 32)
    assert out["ce_clean"] is None and out["ce_loss_recovered"] is None and out["delta_lm_loss"] is None
    manifest = {"identity": {"layer": 1, "site": "resid", "ctx_len": 32, "level": "token"}, "shards": []}
    m = compute_metrics(_identity_sae(lm.d_model), [_data(d=lm.d_model)], lm=lm, docs=docs, harvest_manifest=manifest)
    assert m.ce_spliced is None and "not a causal LM" in m.definitions["ce_clean"]


# ---------------------------------------------------------------- end to end on a real harvest

def test_compute_metrics_on_real_harvest(tiny_model_dirs, text_corpus, tmp_path):
    lm = load_model(str(tiny_model_dirs["gpt2"]))
    docs = _docs(text_corpus)
    hdir = tmp_path / "harvest"
    harvest(lm, docs, hdir, HarvestConfig(layer=1, ctx_len=32, shard_tokens=300), progress=False)
    manifest = load_manifest(hdir)
    train, held = held_out_split(sorted(hdir.glob("shard_*.safetensors")))
    sae = create_sae(SAEConfig(d_in=32, d_sae=128, k=4), seed=0)
    result = train_sae(sae, iter_activation_batches(train, 64, buffer_rows=512, loop=True), TrainConfig(total_tokens=64 * 60, batch_size=64, b_dec_init="mean"))
    eval_x = torch.cat(list(iter_activation_batches(held, 10_000)))

    m = compute_metrics(sae, iter_activation_batches(held, 50), result.feature_density, result.dead_window_tokens,
                        lm=lm, docs=docs, harvest_manifest=manifest, dead_fraction_from_training=result.dead_fraction,
                        ce_contexts=8)
    with torch.no_grad():  # the SAE's own (single-batch) FVU on the whole held-out set must agree
        assert m.fvu == pytest.approx(float(sae.eval()(eval_x).fvu), rel=1e-4)
    assert m.n_eval_tokens == len(eval_x) == manifest["shards"][-1]["rows"]
    assert isinstance(m, SAEMetrics) and m.r2 == pytest.approx(m.explained_variance) and m.explained_variance == pytest.approx(1 - m.fvu)
    assert m.dead_fraction == result.dead_fraction and m.dead_window_tokens == result.dead_window_tokens
    assert sum(m.log10_density_hist["counts"]) == int((result.feature_density > 0).sum())
    assert 0 <= m.gini <= 1 and 0 < m.decoder_cos_mean <= m.decoder_cos_p95 <= m.decoder_cos_max <= 1
    assert m.ce_clean is not None and m.delta_lm_loss == pytest.approx(m.ce_spliced - m.ce_clean)
    assert "last" in m.definitions["dead_fraction"] and "held-out shard" in m.definitions["ce_clean"]
    assert set(m.definitions) >= {"fvu", "r2", "l0", "dead_fraction", "gini", "ce_loss_recovered"}

    assert compute_metrics(sae, iter_activation_batches(held, 50), lm=lm, docs=docs, harvest_manifest=manifest,
                           train_result=result, ce_contexts=8) == m
    only_density = compute_metrics(sae, [eval_x], result.feature_density, 123)
    assert only_density.dead_fraction == float((result.feature_density == 0).double().mean())
    assert only_density.dead_window_tokens == 123 and "during training" in only_density.definitions["dead_fraction"]
    from_eval = compute_metrics(sae, [eval_x])
    assert from_eval.dead_window_tokens == len(eval_x) and "eval" in from_eval.definitions["dead_fraction"]
    assert from_eval.dead_fraction == float((evaluate_reconstruction(sae, [eval_x])["fire_counts"] == 0).double().mean())
    with pytest.raises(UserError, match="dead_window_tokens"):
        compute_metrics(sae, [eval_x], result.feature_density)
    with pytest.raises(UserError, match="harvest manifest"):
        compute_metrics(sae, [eval_x], lm=lm)
