"""Pretrained-SAE files written in each format's published layout (file names, tensor names, shapes, dtypes,
config keys), and independent numpy encoders written from each format's own source (used by
test_pretrained_saes.py and test_pretrained_install.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file as save_np

ENV = dict(os.environ, AUTOINTERP_PROGRESS="0", OMP_NUM_THREADS="1", COLUMNS="300")
D_IN, D_SAE, K = 24, 64, 6


# ------------------------------------------------------------------------------------------ published layouts
def random_weights(rng: np.random.Generator, d_in: int, d_sae: int) -> dict[str, np.ndarray]:
    """SAELens orientation: W_enc [d_in, d_sae], W_dec [d_sae, d_in] (decoder rows not unit norm)."""
    w_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    w_dec *= (0.5 + rng.random((d_sae, 1))).astype(np.float32) / np.linalg.norm(w_dec, axis=1, keepdims=True)
    return {"W_enc": (rng.standard_normal((d_in, d_sae)) / np.sqrt(d_in)).astype(np.float32),
            "b_enc": (rng.standard_normal(d_sae) * 0.2 - 0.1).astype(np.float32),
            "W_dec": w_dec, "b_dec": (rng.standard_normal(d_in) * 0.3).astype(np.float32)}


def write_saelens(root: Path, w: dict, arch: str, *, k: int = K, rescale: bool = False, hook: str = "blocks.3.hook_resid_post",
                  threshold: np.ndarray | None = None, apply_b_dec: bool = True) -> Path:
    """SAELens >= 6 ``save_model`` layout: cfg.json (metadata nested) + sae_weights.safetensors."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"architecture": arch, "d_in": w["W_enc"].shape[0], "d_sae": w["W_enc"].shape[1], "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": apply_b_dec, "normalize_activations": "none",
           "reshape_activations": "none", "metadata": {"sae_lens_version": "6.5.1", "model_name": "m", "hook_name": hook,
                                                       "context_size": 128, "prepend_bos": True}}
    if arch == "topk":
        cfg.update(k=k, rescale_acts_by_decoder_norm=rescale)
    tensors = dict(w)
    if threshold is not None:
        tensors["threshold"] = threshold.astype(np.float32)
    (root / "cfg.json").write_text(json.dumps(cfg))
    save_np(tensors, str(root / "sae_weights.safetensors"))
    return root


def write_sparsify(root: Path, w: dict, *, k: int = K, hookpoint_name: str = "layers.3") -> Path:
    """sparsify ``SparseCoder.save_to_disk``: <hookpoint>/cfg.json (SparseCoderConfig + d_in) + sae.safetensors."""
    d = root / hookpoint_name
    d.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = w["W_enc"].shape
    (d / "cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": d_sae // d_in, "normalize_decoder": True,
                                            "num_latents": d_sae, "k": k, "multi_topk": False, "skip_connection": False,
                                            "transcode": False, "d_in": d_in}))
    save_np({"encoder.weight": np.ascontiguousarray(w["W_enc"].T), "encoder.bias": w["b_enc"], "W_dec": w["W_dec"],
             "b_dec": w["b_dec"]}, str(d / "sae.safetensors"))
    return d


def write_gemma_scope(root: Path, w: dict, threshold: np.ndarray, layer: int = 3) -> Path:
    """Gemma Scope: layer_L/width_W/average_l0_N/params.npz with W_enc, W_dec, b_enc, b_dec, threshold (float32)."""
    d = root / "gemma-scope-2b-pt-res" / f"layer_{layer}" / "width_16k" / "average_l0_71"
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "params.npz", W_enc=w["W_enc"], W_dec=w["W_dec"], b_enc=w["b_enc"], b_dec=w["b_dec"],
             threshold=threshold.astype(np.float32))
    return d / "params.npz"


def write_llama_scope(root: Path, w: dict, *, threshold: float | None = 0.4, norm_in: float = 7.5, norm_out: float = 7.5,
                      layer: int = 3) -> Path:
    """Llama Scope: <Llama3_1-8B-Base-L{L}R-8x>/hyperparams.json + checkpoints/final.safetensors (nn.Linear layout)."""
    d_in, d_sae = w["W_enc"].shape
    d = root / f"Llama3_1-8B-Base-L{layer}R-8x"
    (d / "checkpoints").mkdir(parents=True, exist_ok=True)
    hook = f"blocks.{layer}.hook_resid_post"
    hp = {"d_model": d_in, "d_sae": d_sae, "expansion_factor": d_sae // d_in, "hook_point_in": hook, "hook_point_out": hook,
          "act_fn": "jumprelu", "norm_activation": "dataset-wise", "sparsity_include_decoder_norm": True, "top_k": 50,
          "dataset_average_activation_norm": {"in": norm_in, "out": norm_out}, "use_decoder_bias": True,
          "apply_decoder_bias_to_pre_encoder": False}
    if threshold is not None:
        hp["jump_relu_threshold"] = threshold
    (d / "hyperparams.json").write_text(json.dumps(hp))
    save_np({"encoder.weight": np.ascontiguousarray(w["W_enc"].T), "encoder.bias": w["b_enc"],
             "decoder.weight": np.ascontiguousarray(w["W_dec"].T), "decoder.bias": w["b_dec"]},
            str(d / "checkpoints" / "final.safetensors"))
    return d


# ------------------------------------------------------------------------------------------ independent encoders
def np_standard(x, w, apply_b_dec=True):
    return np.maximum((x - w["b_dec"] * apply_b_dec) @ w["W_enc"] + w["b_enc"], 0)


def np_topk(pre, k):
    out = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=1)[:, :k]
    rows = np.arange(len(pre))[:, None]
    out[rows, idx] = np.maximum(pre[rows, idx], 0)
    return out


def np_jumprelu(pre, threshold):
    return np.maximum(pre, 0) * (pre > threshold)


def encode_ours(sae, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        acts, idx = sae.encode(torch.from_numpy(x))
    dense = torch.zeros(x.shape[0], sae.cfg.d_sae).scatter_add_(-1, idx, acts.float())
    return dense.numpy()


def assert_same_code(ours, ref, what):
    assert (ref > 0).any() and (ref == 0).any(), f"{what}: the reference code is trivial"
    assert np.array_equal(ours > 0, ref > 0), f"{what}: different latents fire"
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(), err_msg=what)
