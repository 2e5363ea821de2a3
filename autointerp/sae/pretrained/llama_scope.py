"""Llama Scope (OpenMOSS lm-saes) SAEs: ``<sae>/hyperparams.json`` + ``<sae>/checkpoints/final.safetensors``
(``encoder.weight`` [d_sae, d_model], ``encoder.bias``, ``decoder.weight`` [d_model, d_sae], ``decoder.bias``).

They were trained on inputs scaled dataset-wise to mean norm sqrt(d_model): ``x_n = x * s_in`` with
``s = sqrt(d_model) / dataset_average_activation_norm``; the JumpReLU threshold is one scalar
(``jump_relu_threshold``). lm-saes' inference path (``standardize_parameters_of_dataset_norm``: b_E / s_in,
threshold unchanged; decoder made unit-norm, so ``sparsity_include_decoder_norm`` scales by 1) makes a latent
fire on raw x iff ``x_n @ W_E + b_E > s_in * threshold``, which is also the gate SAELens' Llama Scope loader
uses (threshold * norm_scaling_factor); activations are reported in the normalised space (as SAELens does)
and the reconstruction is mapped back with s_out.
Folded into our JumpReLU: W_enc = s_in W_E, b_enc = b_E, threshold = s_in thr, W_dec = W_D / s_out, b_dec = b_D / s_out.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from autointerp.errors import UserError
from autointerp.io import read_safetensors
from autointerp.rundir.layout import LLAMA_SCOPE_CHECKPOINT_DIR, LLAMA_SCOPE_HPARAMS_FILE, LLAMA_SCOPE_WEIGHTS_FILE
from autointerp.sae.pretrained.formats import REDOWNLOAD, hookpoint, llama_scope_hyperparams
from autointerp.sae.pretrained.common import Pretrained, as_tensor, build_sae


def weights_file(directory: Path) -> Path:
    """``checkpoints/final.safetensors`` as published; ``final.safetensors`` next to the hyperparameters too."""
    nested = directory / LLAMA_SCOPE_CHECKPOINT_DIR / LLAMA_SCOPE_WEIGHTS_FILE
    return nested if nested.is_file() else directory / LLAMA_SCOPE_WEIGHTS_FILE


def _norm_factor(hp: dict, key: str, d_model: int, where: Path) -> float:
    if hp.get("norm_activation", "dataset-wise") != "dataset-wise":
        return 1.0
    norms = hp.get("dataset_average_activation_norm")
    value = norms.get(key) if isinstance(norms, dict) else norms
    if not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise UserError(f"{where}: dataset_average_activation_norm.{key} = {value!r} must be a positive number "
                        "(norm_activation is dataset-wise); re-download the SAE")
    return math.sqrt(d_model) / float(value)


def load(directory: Path) -> Pretrained:
    hp_path, w_path = directory / LLAMA_SCOPE_HPARAMS_FILE, weights_file(directory)
    hp, d_model, d_sae, hook_in = llama_scope_hyperparams(hp_path)
    act_fn = hp.get("act_fn", "jumprelu")
    if act_fn != "jumprelu":
        raise UserError(f"{hp_path}: act_fn = {act_fn!r}; only the released JumpReLU Llama Scope SAEs are supported")
    threshold = hp.get("jump_relu_threshold")
    t = read_safetensors(w_path, fix=REDOWNLOAD)
    missing = [n for n in ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias") if n not in t]
    if missing:
        raise UserError(f"{w_path} has no tensor(s) {', '.join(missing)}; it is not a Llama Scope SAE")
    s_in = _norm_factor(hp, "in", d_model, hp_path)
    s_out = _norm_factor(hp, "out", d_model, hp_path)
    W_E = as_tensor(t["encoder.weight"], "encoder.weight", w_path).T
    W_D = as_tensor(t["decoder.weight"], "decoder.weight", w_path).T
    if tuple(W_E.shape) != (d_model, d_sae):
        raise UserError(f"{w_path}: encoder.weight is {tuple(W_E.shape[::-1])} but hyperparams.json says "
                        f"d_sae x d_model = {(d_sae, d_model)}; weights and hyperparameters come from different SAEs")
    tensors = {"W_enc": W_E * s_in, "b_enc": as_tensor(t["encoder.bias"], "encoder.bias", w_path),
               "W_dec": W_D / s_out, "b_dec": as_tensor(t["decoder.bias"], "decoder.bias", w_path) / s_out}
    if threshold is not None:
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise UserError(f"{hp_path}: jump_relu_threshold = {threshold!r} must be a number; re-download the SAE")
        tensors["threshold"] = torch.full((d_sae,), float(threshold) * s_in)
    layer, site = hookpoint(hook_in)
    sae = build_sae(w_path, "jumprelu", tensors, apply_b_dec_to_input=False, metadata={"hook_name": hook_in})
    return Pretrained(sae, "llama_scope", directory, layer, site, hook_in)
