"""Run real sae_lens code for tests/sae/test_saelens_compat.py, inside the venv built by scripts/saelens_env.sh.

    .venv-saelens/bin/python scripts/saelens_probe.py PLAN.json

PLAN.json (all paths absolute):
    {"inputs": "x.safetensors",                # tensor "x" [N, d_in], float32, raw activations
     "out_dir": "results/",
     "load":   [{"name": "...", "dir": "..."}],  # SAEs written by someone else: SAE.load_from_disk
     "create": [{"name": "...", "dir": "...", "arch": "standard"|"topk"|"batchtopk", "training": bool,
                 "save": "save_model"|"save_inference_model", "d_in": int, "d_sae": int, "k": int,
                 "seed": int, "apply_b_dec_to_input": bool, "rescale_acts_by_decoder_norm": bool,
                 "norm_scaling_factor": float | null, "fold": bool (default true)}]}

For every job it writes out_dir/NAME.safetensors holding "acts" = dense sae.encode(x) [N, d_sae] and
"recon" = sae.decode(acts) from the SAE that SAE.load_from_disk returns, and prints one JSON line (the last line of stdout) mapping each name to
{"ok": true, "class": ..., "cfg": ...} or {"ok": false, "error": "..."}; the exit code is 0 either way
so that the test can assert on each job separately.

"create" jobs build an SAE with sae_lens' own classes, give it random non-trivial weights (non-zero
biases, decoder rows that are not unit norm), save it with sae_lens' own save method and reload it with
SAE.load_from_disk. With "norm_scaling_factor", training-time inputs are x * factor and the factor is
folded into the weights before saving, as sae_lens' trainer does. The probe checks that the reloaded SAE
reconstructs raw inputs like the in-memory one did (reported: the activation gap, which a fold may rescale).
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

warnings.filterwarnings("ignore")

import sae_lens
from sae_lens import SAE


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _describe(sae: Any) -> dict[str, Any]:
    cfg = sae.cfg.to_dict()
    return {"class": type(sae).__name__, "cfg": _jsonable(cfg), "sae_lens_version": sae_lens.__version__}


@torch.no_grad()
def _encode(sae: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    sae.eval()
    acts = sae.encode(x)
    if acts.is_sparse:
        acts = acts.to_dense()
    return {"acts": acts.float().contiguous(), "recon": sae.decode(acts).float().contiguous()}


def _load(job: dict[str, Any], x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sae = SAE.load_from_disk(job["dir"], device="cpu")
    return _encode(sae, x), _describe(sae)


def _training_cfg(job: dict[str, Any]) -> Any:
    common = {"d_in": job["d_in"], "d_sae": job["d_sae"], "apply_b_dec_to_input": job.get("apply_b_dec_to_input", True),
              "dtype": "float32", "device": "cpu"}
    if job.get("norm_scaling_factor") is not None:
        common["normalize_activations"] = "expected_average_only_in"
    arch = job["arch"]
    if arch == "standard":
        return sae_lens.StandardTrainingSAE(sae_lens.StandardTrainingSAEConfig(**common))
    if arch == "topk":
        return sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(
            **common, k=job["k"], rescale_acts_by_decoder_norm=job.get("rescale_acts_by_decoder_norm", True)))
    if arch == "batchtopk":
        return sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(
            **common, k=job["k"], rescale_acts_by_decoder_norm=job.get("rescale_acts_by_decoder_norm", True)))
    raise ValueError(f"unknown training arch {arch!r}")


def _inference_sae(job: dict[str, Any]) -> Any:
    common = {"d_in": job["d_in"], "d_sae": job["d_sae"], "apply_b_dec_to_input": job.get("apply_b_dec_to_input", True),
              "dtype": "float32", "device": "cpu"}
    arch = job["arch"]
    if arch == "standard":
        return sae_lens.StandardSAE(sae_lens.StandardSAEConfig(**common))
    if arch == "topk":
        return sae_lens.TopKSAE(sae_lens.TopKSAEConfig(
            **common, k=job["k"], rescale_acts_by_decoder_norm=job.get("rescale_acts_by_decoder_norm", False)))
    if arch == "jumprelu":  # Gemma Scope style: a per-latent threshold (set in _randomise)
        return sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(**common))
    raise ValueError(f"unknown inference arch {arch!r}")


@torch.no_grad()
def _randomise(sae: Any, seed: int) -> None:
    """Weights where every term matters: biases non-zero, decoder rows of norms in [0.5, 2]."""
    g = torch.Generator().manual_seed(seed)
    d_in, d_sae = sae.W_enc.shape
    sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
    sae.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.2 - 0.1)
    w_dec = torch.randn(d_sae, d_in, generator=g)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * (0.5 + 1.5 * torch.rand(d_sae, 1, generator=g))
    sae.W_dec.copy_(w_dec)
    sae.b_dec.copy_(torch.randn(d_in, generator=g) * 0.3)
    if isinstance(getattr(sae, "threshold", None), torch.Tensor) and sae.threshold.ndim == 1:  # JumpReLU
        sae.threshold.copy_(torch.rand(d_sae, generator=g) * 0.4)


def _create(job: dict[str, Any], x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    training = job.get("training", False)
    sae = _training_cfg(job) if training else _inference_sae(job)
    _randomise(sae, job["seed"])
    if job["arch"] == "batchtopk":  # a trained BatchTopK SAE has a running threshold: the batch's smallest kept act
        with torch.no_grad():
            acts = sae.encode(x * (job.get("norm_scaling_factor") or 1.0))
            sae.topk_threshold.fill_(acts[acts > 0].min().item())
    factor = job.get("norm_scaling_factor")
    if factor is not None and not job.get("fold", True):
        # Not folded: cfg.json keeps "expected_average_only_in" and the weights expect x * factor; neither
        # SAE.load_from_disk nor the SAE itself scales at run time, so raw inputs go in as they are.
        ref = _encode(sae, x)
    elif factor is not None:
        # Training-time view: the trainer feeds x * factor, then folds the factor in before saving.
        with torch.no_grad():
            ref_acts = sae.encode(x * factor)
            ref = {"acts": ref_acts, "recon": sae.decode(ref_acts) / factor}
        sae.fold_activation_norm_scaling_factor(factor)
    else:
        ref = _encode(sae, x)
        if job["arch"] == "batchtopk":  # eval-time sae_lens BatchTopK == JumpReLU with the running threshold
            with torch.no_grad():
                thr = float(sae.topk_threshold)
                pre = sae.encode_with_hidden_pre(x)[1]
                acts = torch.relu(pre) * (pre > thr)
                ref = {"acts": acts, "recon": sae.decode(acts)}
    getattr(sae, job["save"])(job["dir"])
    reloaded, info = _load(job, x)
    # sae_lens must reconstruct like the SAE it saved; its activations may legitimately be rescaled by a fold
    # (TopK with rescale_acts_by_decoder_norm + a folded norm factor divides them by the factor), so the
    # reference handed back is what sae_lens computes from the saved files, and the gap is reported.
    recon_err = (reloaded["recon"] - ref["recon"].float()).abs().max().item()
    if recon_err > 1e-4 * (ref["recon"].abs().max().item() + 1e-6):
        raise AssertionError(f"sae_lens does not reload its own {job['save']} output: max |Δrecon| = {recon_err:.3g}")
    info["reload_recon_max_abs_diff"] = recon_err
    info["reload_acts_max_abs_diff"] = (reloaded["acts"] - ref["acts"].float()).abs().max().item()
    same = (reloaded["acts"] > 0) == (ref["acts"] > 0)
    info["reload_same_active_latents"] = bool(same.all())
    return reloaded, info


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    x = load_file(plan["inputs"])["x"]
    out_dir = Path(plan["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for kind, fn in (("load", _load), ("create", _create)):
        for job in plan.get(kind, []):
            try:
                tensors, info = fn(job, x)
                save_file(tensors, str(out_dir / f"{job['name']}.safetensors"))
                results[job["name"]] = {"ok": True, **info}
            except Exception as e:  # noqa: BLE001 (reported per job; the test decides what is expected)
                results[job["name"]] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                        "traceback": traceback.format_exc(limit=6)}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
