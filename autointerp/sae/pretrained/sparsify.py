"""EleutherAI sparsify directories: one folder per hookpoint (``layers.6``, ``layers.6.mlp``) holding
``cfg.json`` (SparseCoderConfig fields + ``d_in``) and ``sae.safetensors`` (``encoder.weight`` [num_latents,
d_in], ``encoder.bias`` [num_latents], ``W_dec`` [num_latents, d_in], ``b_dec`` [d_in]).

sparsify encodes ``topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias), k)`` and decodes
``sum_i acts_i W_dec[i] + b_dec``: our TopK SAE with W_enc = encoder.weight.T, nothing rescaled.
Transcoders and skip connections do not reconstruct their own input, so they are refused.
"""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import DamagedArtifact, UserError
from autointerp.io import read_json, read_safetensors
from autointerp.rundir.layout import SAE_CFG_FILE, SPARSIFY_WEIGHTS_FILE
from autointerp.sae.pretrained.formats import REDOWNLOAD, hookpoint
from autointerp.sae.pretrained.common import Pretrained, as_tensor, build_sae


def load(directory: Path) -> Pretrained:
    cfg_path, w_path = directory / SAE_CFG_FILE, directory / SPARSIFY_WEIGHTS_FILE
    try:
        raw = read_json(cfg_path, fix=REDOWNLOAD)
        d_in, k = int(raw["d_in"]), int(raw.get("k", 32))
    except DamagedArtifact:
        raise
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{cfg_path} is not a sparsify cfg.json ({e!r}); re-download the SAE") from e
    if raw.get("activation", "topk") != "topk":
        raise UserError(f"{cfg_path}: sparsify activation {raw['activation']!r} is not supported; only topk SAEs are")
    if raw.get("transcode") or raw.get("skip_connection"):
        raise UserError(f"{cfg_path}: a sparsify transcoder / skip-connection coder does not reconstruct its input; "
                        "use an SAE (transcode = false, skip_connection = false)")
    t = read_safetensors(w_path, fix=REDOWNLOAD)
    missing = [n for n in ("encoder.weight", "encoder.bias", "W_dec", "b_dec") if n not in t]
    if missing:
        raise UserError(f"{w_path} has no tensor(s) {', '.join(missing)}; it is not a sparsify SAE")
    W_enc = as_tensor(t["encoder.weight"], "encoder.weight", w_path).T.contiguous()
    if W_enc.shape[0] != d_in:
        raise UserError(f"{w_path}: encoder.weight has {W_enc.shape[0]} input columns but cfg.json says d_in = {d_in}; "
                        "weights and cfg.json come from different SAEs")
    tensors = {"W_enc": W_enc, "b_enc": as_tensor(t["encoder.bias"], "encoder.bias", w_path),
               "W_dec": as_tensor(t["W_dec"], "W_dec", w_path), "b_dec": as_tensor(t["b_dec"], "b_dec", w_path)}
    hook = directory.name  # the hookpoint: layers.6, layers.6.mlp
    layer, site = hookpoint(hook)
    sae = build_sae(w_path, "topk", tensors, k=k, apply_b_dec_to_input=True, metadata={"hook_name": hook})
    return Pretrained(sae, "sparsify", directory, layer, site, hook)
