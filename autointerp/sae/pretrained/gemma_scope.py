"""Gemma Scope ``params.npz`` (``W_enc`` [d_model, d_sae], ``W_dec`` [d_sae, d_model], ``b_enc``, ``b_dec``,
per-latent ``threshold``), stored as ``layer_L/width_W/average_l0_N/params.npz``.

Gemma Scope encodes ``relu(pre) * (pre > threshold)`` with ``pre = x @ W_enc + b_enc`` - the input is not
centred by b_dec - and decodes ``acts @ W_dec + b_dec``: our JumpReLU SAE with apply_b_dec_to_input off.
The npz is read with ``allow_pickle=False``; the layer comes from the path, the site from the release name
(``-mlp`` releases read the MLP output, ``-att`` ones the attention output, which is not harvested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autointerp.errors import UserError
from autointerp.io import read_npz
from autointerp.sae.pretrained.formats import REDOWNLOAD, gemma_scope_hookpoint
from autointerp.sae.pretrained.common import Pretrained, as_tensor, build_sae


def load(file: Path) -> Pretrained:
    try:
        arrays = read_npz(file, fix=REDOWNLOAD)
    except OSError as e:  # a missing or unreadable file (a damaged one is DamagedArtifact)
        raise UserError(f"{file} cannot be read ({e}); {REDOWNLOAD}") from e
    # some exports spell the matrices w_enc / w_dec
    arrays = {("W_" + key[2:] if key.startswith("w_") else key): value for key, value in arrays.items()}
    tensors = {name: as_tensor(arrays[name], name, file) for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
               if name in arrays}
    layer, site, hook = gemma_scope_hookpoint(file)  # (an attention-output release is refused)
    sae = build_sae(file, "jumprelu", tensors, apply_b_dec_to_input=False, metadata={"hook_name": hook} if hook else {})
    if "scaling_factor" in arrays and not np.allclose(arrays["scaling_factor"], 1.0):
        raise UserError(f"{file} has a fine-tuning scaling_factor other than 1, which autointerp does not apply; "
                        "use an SAE without one")
    return Pretrained(sae, "gemma_scope", file, layer, site, hook)
