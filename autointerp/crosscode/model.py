"""The crosscoder: one BatchTopK dictionary whose encoder reads both models and whose decoder writes each.

Input is the concatenation [x_A, x_B] of the two models' activations on the same word unit; each side is
multiplied by its own scale (``scales``: the model's mean centred norm brought to a common value) so both
models weigh the same in the loss whatever their native norms (Gemma's residual is ~100x MiniLM's). The
encoder is one matrix over both inputs (a latent fires on evidence from either model); the decoder row of
latent j is [d_j^A, d_j^B], one part per model. That row is kept at unit L2 norm by the SAE trainer, so the
split of its norm between the parts says which model uses the latent: r_j = |d_j^B| / (|d_j^A| + |d_j^B|),
0 = only A, 1 = only B, 0.5 = both equally (Lindsey et al. 2024). Normalising the concatenated row (the L2
variant) rather than penalising the sum of norms (the L1 variant) does not push latents to become
exclusive, and BatchTopK needs no sparsity penalty at all (Minder et al. 2025 found L1 crosscoders
invent exclusive latents; BatchTopK largely does not).

Subclassing ``BatchTopKSAE`` keeps the whole trainer (resume, checkpoints, progress, AuxK, sparse backward)
unchanged: to the trainer a crosscoder is an SAE on d_A + d_B inputs whose inputs are scaled per part.

On disk (``save_crosscoder``), weights act on *raw* activations (the scales folded in), as one safetensors
file with one tensor per model part, plus ``cfg.json``::

    W_enc_a [d_a, d_sae], W_enc_b [d_b, d_sae], b_enc [d_sae]      pre = relu((x_a - b_dec_a) W_enc_a + (x_b - b_dec_b) W_enc_b + b_enc)
    W_dec_a [d_sae, d_a], W_dec_b [d_sae, d_b], b_dec_a, b_dec_b   x_a_hat = f W_dec_a + b_dec_a (same for b)
    threshold []                                                    inference: latents with pre > threshold fire
    cfg.json: architecture, d_a, d_b, d_sae, k, models [A, B], scales [s_a, s_b], threshold, pooling, ...

Decoder norms are reported in the common-norm space: |raw d_j^m| x s_m.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from autointerp.errors import UserError
from autointerp.io import atomic_path, read_json, read_safetensors, write_json
from autointerp.rundir.layout import SAE_CFG_FILE, CROSSCODER_WEIGHTS_FILE
from autointerp.sae.config import SAEConfig
from autointerp.sae.topk import BatchTopKSAE

ARCHITECTURE = "batchtopk_crosscoder"


class CrossCoder(BatchTopKSAE):
    """BatchTopK SAE over [x_A, x_B] with per-part input scales and a per-model decoder split."""

    def __init__(self, d_a: int, d_b: int, d_sae: int, k: int, scales: tuple[float, float] = (1.0, 1.0)):
        super().__init__(SAEConfig(architecture="batchtopk", d_in=d_a + d_b, d_sae=d_sae, k=k))
        self.d_a, self.d_b = d_a, d_b
        self.register_buffer("scales", torch.tensor([float(scales[0]), float(scales[1])]))

    def _dim_scale(self) -> Tensor:
        return torch.cat([self.scales[:1].expand(self.d_a), self.scales[1:].expand(self.d_b)])

    def _scale_in(self, x: Tensor) -> Tensor:
        x = x.to(self.W_enc.dtype)
        return x * self._dim_scale().to(x.dtype)

    def decode(self, top_acts: Tensor, top_indices: Tensor) -> Tensor:
        """Sparse latents -> raw [x_A_hat, x_B_hat] (the per-part scales undone)."""
        lead = top_acts.shape[:-1]
        y = self._decode_n(top_acts.reshape(-1, top_acts.shape[-1]), top_indices.reshape(-1, top_indices.shape[-1]))
        return (y / self._dim_scale().to(y.dtype)).reshape(*lead, self.cfg.d_in)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The model-A and model-B parts of anything laid out over the concatenated input."""
        return x[..., : self.d_a], x[..., self.d_a:]

    @torch.no_grad()
    def decoder_norms(self) -> Tensor:
        """[d_sae, 2]: each latent's decoder norm for model A and model B, in the common-norm space."""
        a, b = self.split(self.W_dec.float())
        return torch.stack([a.norm(dim=1), b.norm(dim=1)], dim=1)

    @torch.no_grad()
    def relative_norms(self) -> Tensor:
        """r_j = |d_j^B| / (|d_j^A| + |d_j^B|): 0 only A uses the latent, 1 only B, 0.5 both alike."""
        n = self.decoder_norms()
        return n[:, 1] / n.sum(1).clamp_min(1e-12)


def save_crosscoder(cc: CrossCoder, out_dir: Path, meta: dict) -> None:
    """Raw-space weights (scales folded in) + cfg.json; see the module docstring for the layout."""
    with torch.no_grad():
        s_a, s_b = (float(v) for v in cc.scales)
        enc_a, enc_b = cc.W_enc[: cc.d_a] * s_a, cc.W_enc[cc.d_a:] * s_b
        dec_a, dec_b = cc.split(cc.W_dec)
        bias_a, bias_b = cc.split(cc.b_dec)
        tensors = {"W_enc_a": enc_a, "W_enc_b": enc_b, "b_enc": cc.b_enc, "W_dec_a": dec_a / s_a, "W_dec_b": dec_b / s_b,
                   "b_dec_a": bias_a / s_a, "b_dec_b": bias_b / s_b, "threshold": cc.threshold.float()}
        tensors = {n: t.detach().float().contiguous().cpu() for n, t in tensors.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / CROSSCODER_WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp))
    cfg = {"architecture": ARCHITECTURE, "d_a": cc.d_a, "d_b": cc.d_b, "d_sae": cc.cfg.d_sae, "k": cc.cfg.k,
           "scales": [s_a, s_b], "threshold": float(cc.threshold), "apply_b_dec_to_input": True, "dtype": "float32", **meta}
    write_json(out_dir / SAE_CFG_FILE, cfg)


def load_crosscoder(out_dir: Path) -> CrossCoder:
    """The crosscoder saved by ``save_crosscoder``, in eval mode (thresholded, batch-independent latents)."""
    try:
        cfg = read_json(out_dir / SAE_CFG_FILE)
        t = read_safetensors(out_dir / CROSSCODER_WEIGHTS_FILE)
    except FileNotFoundError as e:
        raise UserError(f"no crosscoder in {out_dir} ({e.filename} is missing); run `autointerp crosscode` to train it") from e
    if cfg.get("architecture") != ARCHITECTURE:
        raise UserError(f"{out_dir / SAE_CFG_FILE} is not a crosscoder config (architecture {cfg.get('architecture')!r})")
    s_a, s_b = cfg["scales"]
    cc = CrossCoder(cfg["d_a"], cfg["d_b"], cfg["d_sae"], cfg["k"], (s_a, s_b))
    with torch.no_grad():
        cc.W_enc.copy_(torch.cat([t["W_enc_a"] / s_a, t["W_enc_b"] / s_b]))
        cc.b_enc.copy_(t["b_enc"])
        cc.W_dec.copy_(torch.cat([t["W_dec_a"] * s_a, t["W_dec_b"] * s_b], dim=1))
        cc.b_dec.copy_(torch.cat([t["b_dec_a"] * s_a, t["b_dec_b"] * s_b]))
        cc.threshold.copy_(t["threshold"])
    return cc.eval()
