"""File-format compatibility with the real ``sae-lens`` package, both directions.

(a) SAEs saved by autointerp load with ``sae_lens.SAE.load_from_disk`` and give the same feature activations
    (and reconstructions) as autointerp on the same raw inputs;
(b) SAEs built and saved by sae_lens itself (``save_model`` for inference SAEs, ``save_inference_model`` as
    its trainer does, including a folded ``expected_average_only_in`` normalisation) load with
    autointerp's ``load_sae`` and give the same activations as sae_lens.

sae-lens pulls ~35 packages autointerp does not need (transformer-lens, wandb, plotly, ...), so it lives in a
separate venv built on demand by ``scripts/saelens_env.sh`` (``.venv-saelens/``, self-gitignored; ~2-4 min on
a fresh machine, instant once built). All sae_lens calls happen in one ``scripts/saelens_probe.py``
subprocess; tensors travel through safetensors files in tmp_path.

Covers every architecture both ways: autointerp relu is written as SAELens "standard", batchtopk as
"jumprelu" (per-latent threshold), metadata keys without a value are omitted, and SAELens TopK SAEs saved
with ``rescale_acts_by_decoder_norm`` have the norms folded in on load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.saelens import load_sae, save_sae
from helpers import ROOT, peer_envs

pytestmark = pytest.mark.slow

PROBE = ROOT / "scripts" / "saelens_probe.py"
VENV = peer_envs.venv("saelens")

D_IN, D_SAE, K, N = 16, 64, 4, 96
META = {"model_name": "tiny-llama", "hook_name": "model.layers.1", "hook_layer": 1, "context_size": 32,
        "dataset_path": "local-corpus", "level": "token"}

# autointerp-saved SAEs handed to sae_lens: name -> SAEConfig kwargs (+ "input_scale" = fit on x * that factor).
AUTOINTERP_CASES: dict[str, dict[str, Any]] = {
    "ai_topk": {"architecture": "topk"},
    "ai_topk_norm": {"architecture": "topk", "normalize_activations": True, "input_scale": 7.0},
    "ai_topk_no_bdec": {"architecture": "topk", "apply_b_dec_to_input": False},
    "ai_topk_bf16": {"architecture": "topk", "dtype": "bfloat16"},
    "ai_relu": {"architecture": "relu"},
    "ai_relu_norm": {"architecture": "relu", "normalize_activations": True, "input_scale": 0.05},
    "ai_topk_nometa": {"architecture": "topk", "metadata": {}},
    "ai_batchtopk": {"architecture": "batchtopk"},
}
# sae_lens-built SAEs handed to autointerp (see scripts/saelens_probe.py for the fields).
SAELENS_CASES: dict[str, dict[str, Any]] = {
    "sl_standard": {"arch": "standard", "training": False, "save": "save_model"},
    "sl_topk": {"arch": "topk", "training": False, "save": "save_model"},
    "sl_topk_no_bdec": {"arch": "topk", "training": False, "save": "save_model", "apply_b_dec_to_input": False},
    "sl_standard_trained": {"arch": "standard", "training": True, "save": "save_inference_model"},
    "sl_topk_trained": {"arch": "topk", "training": True, "save": "save_inference_model"},
    "sl_standard_trained_norm": {"arch": "standard", "training": True, "save": "save_inference_model",
                                 "norm_scaling_factor": 0.2},
    "sl_topk_trained_norm": {"arch": "topk", "training": True, "save": "save_inference_model",
                             "norm_scaling_factor": 5.0},
    "sl_topk_trained_unfolded_norm": {"arch": "topk", "training": True, "save": "save_inference_model",
                                      "norm_scaling_factor": 5.0, "fold": False},
    "sl_topk_rescale": {"arch": "topk", "training": False, "save": "save_model", "rescale_acts_by_decoder_norm": True},
    "sl_batchtopk_trained": {"arch": "batchtopk", "training": True, "save": "save_inference_model"},
    "sl_jumprelu": {"arch": "jumprelu", "training": False, "save": "save_model"},
    "sl_jumprelu_no_bdec": {"arch": "jumprelu", "training": False, "save": "save_model", "apply_b_dec_to_input": False},
}


# ------------------------------------------------------------------------------------------------ helpers
def _inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(N, D_IN, generator=g) * 2.0 + torch.randn(D_IN, generator=g)  # raw, off-centre


def _dense(top_acts: torch.Tensor, top_indices: torch.Tensor) -> torch.Tensor:
    """autointerp's sparse latents -> [N, d_sae] (padding entries carry act 0, so scatter-add is exact)."""
    out = torch.zeros(*top_acts.shape[:-1], D_SAE, dtype=torch.float32)
    return out.scatter_add_(-1, top_indices, top_acts.float())


@torch.no_grad()
def _autointerp_sae(name: str, x: torch.Tensor):
    spec = dict(AUTOINTERP_CASES[name])
    factor = spec.pop("input_scale", None)
    spec.setdefault("metadata", dict(META))
    sae = create_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, **spec), seed=7)
    g = torch.Generator().manual_seed(99)
    dt = sae.W_enc.dtype
    sae.W_enc.copy_((torch.randn(D_IN, D_SAE, generator=g) / D_IN**0.5).to(dt))
    sae.b_enc.copy_((torch.randn(D_SAE, generator=g) * 0.3 - 0.2).to(dt))
    w_dec = torch.randn(D_SAE, D_IN, generator=g)
    sae.W_dec.copy_((w_dec / w_dec.norm(dim=1, keepdim=True) * (0.5 + torch.rand(D_SAE, 1, generator=g))).to(dt))
    sae.b_dec.copy_((torch.randn(D_IN, generator=g) * 0.5).to(dt))
    if factor is not None:  # activations of a very different scale -> input_scale far from 1
        sae.fit_input_scale(x * factor)
        assert abs(float(sae.input_scale) - 1.0) > 0.5
    if spec["architecture"] == "batchtopk":
        sae.threshold.fill_(0.3)  # as if estimated in training
    return sae.eval()


def _run_probe(python: Path, plan: dict[str, Any], work: Path) -> dict[str, Any]:
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan))
    proc = subprocess.run([str(python), str(PROBE), str(plan_path)], check=False, capture_output=True, text=True, timeout=900,
                          cwd=work)
    assert proc.returncode == 0, f"saelens_probe.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str, rtol: float = 1e-5) -> None:
    scale = theirs.abs().max().item() + 1e-6
    diff = (ours.float() - theirs.float()).abs().max().item()
    assert diff <= rtol * scale, f"{what}: max |diff| {diff:.3g} (scale {scale:.3g})"


def proposed_cfg_fix(raw: dict[str, Any]) -> dict[str, Any]:
    """What the proposed SparseAutoencoder.save change writes (see the module docstring / the report):
    SAELens architecture names, no null metadata values."""
    raw = dict(raw)
    raw["architecture"] = {"relu": "standard"}.get(raw["architecture"], raw["architecture"])
    for key in ("model_name", "hook_name", "hook_layer", "context_size", "dataset_path"):
        if raw.get(key) is None:
            raw.pop(key, None)
    return raw


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def saelens_python(request) -> Path:
    """Build (or reuse) the sae-lens venv; never skip: a missing venv is built (started in the background
    when the session collected these tests: ``helpers.peer_envs``)."""
    build = peer_envs.wait("saelens")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[saelens env setup {build.seconds:.1f}s, waited {build.waited:.1f}s] " + " | ".join(build.stdout.strip().splitlines()[-2:]))
    assert build.returncode == 0, f"scripts/saelens_env.sh failed ({build.seconds:.0f}s):\n{build.stdout[-2000:]}\n{build.stderr[-4000:]}"
    return VENV / "bin" / "python"


@pytest.fixture(scope="module")
def compat(saelens_python, tmp_path_factory) -> dict[str, Any]:
    """Write every case once, run sae_lens once (its import costs seconds), return paths + results."""
    work = tmp_path_factory.mktemp("saelens_compat")
    x = _inputs()
    save_file({"x": x.contiguous()}, str(work / "x.safetensors"))
    ours: dict[str, Any] = {}
    load_jobs = []
    for name in AUTOINTERP_CASES:
        sae = _autointerp_sae(name, x)
        save_sae(sae, work / name, log_feature_density=torch.linspace(-6.0, -1.0, D_SAE))
        ours[name] = sae
        load_jobs.append({"name": name, "dir": str(work / name)})
        if name in ("ai_relu", "ai_relu_norm", "ai_topk_nometa"):  # the proposed fix, applied to the file
            fixed = work / f"{name}_fixed"
            shutil.copytree(work / name, fixed)
            (fixed / "cfg.json").write_text(json.dumps(proposed_cfg_fix(json.loads((fixed / "cfg.json").read_text()))))
            ours[f"{name}_fixed"] = sae
            load_jobs.append({"name": f"{name}_fixed", "dir": str(fixed)})
    create_jobs = [{"name": name, "dir": str(work / name), "d_in": D_IN, "d_sae": D_SAE, "k": K, "seed": 11 + i, **spec}
                   for i, (name, spec) in enumerate(SAELENS_CASES.items())]
    t0 = time.perf_counter()
    results = _run_probe(saelens_python, {"inputs": str(work / "x.safetensors"), "out_dir": str(work / "out"),
                                          "load": load_jobs, "create": create_jobs}, work)
    print(f"saelens_probe.py: {len(load_jobs) + len(create_jobs)} jobs in {time.perf_counter() - t0:.1f}s")
    return {"x": x, "work": work, "ours": ours, "results": results}


def _theirs(compat: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    res = compat["results"][name]
    assert res["ok"], f"sae_lens could not handle {name}: {res['error']}\n{res.get('traceback', '')}"
    return load_file(str(compat["work"] / "out" / f"{name}.safetensors"))


# ------------------------------------------------------------------------------------------------ (a) autointerp -> sae_lens
def _check_autointerp_to_saelens(compat: dict[str, Any], name: str, rtol: float = 1e-5) -> dict[str, Any]:
    theirs = _theirs(compat, name)
    sae, x = compat["ours"][name], compat["x"]
    with torch.no_grad():
        latents = sae.encode(x)
        ours_dense = _dense(*latents)
        recon = sae.decode(*latents)
    assert theirs["acts"].shape == (N, D_SAE)
    assert (ours_dense > 0).sum() > 0 and (ours_dense == 0).sum() > 0  # a non-trivial, sparse code
    # same latents fire, with the same values
    assert torch.equal(ours_dense > 0, theirs["acts"] > 0), f"{name}: different active latents"
    _assert_close(ours_dense, theirs["acts"], f"{name} activations", rtol)
    _assert_close(recon, theirs["recon"], f"{name} reconstruction", rtol)
    return compat["results"][name]


@pytest.mark.parametrize("name", ["ai_topk", "ai_topk_norm", "ai_topk_no_bdec"])
def test_autointerp_topk_loads_in_saelens(compat, name):
    info = _check_autointerp_to_saelens(compat, name)
    cfg = info["cfg"]
    assert info["class"] == "TopKSAE" and cfg["architecture"] == "topk" and cfg["k"] == K
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE and cfg["dtype"] == "float32"
    assert cfg["normalize_activations"] == "none"  # folded at save: sae_lens applies no runtime scaling
    assert cfg["apply_b_dec_to_input"] is AUTOINTERP_CASES[name].get("apply_b_dec_to_input", True)
    assert cfg["rescale_acts_by_decoder_norm"] is False
    assert cfg["metadata"]["hook_name"] == META["hook_name"] and cfg["metadata"]["model_name"] == META["model_name"]
    assert cfg["metadata"]["context_size"] == META["context_size"]


def test_autointerp_topk_norm_really_folds_a_scale(compat):
    raw = json.loads((compat["work"] / "ai_topk_norm" / "cfg.json").read_text())
    assert raw["normalize_activations"] == "none" and abs(raw["folded_input_scale"] - 1.0) > 0.5


def test_autointerp_bfloat16_loads_in_saelens(compat):
    info = _check_autointerp_to_saelens(compat, "ai_topk_bf16", rtol=2e-2)
    assert info["cfg"]["dtype"] == "bfloat16"


@pytest.mark.parametrize("name", ["ai_relu_fixed", "ai_relu_norm_fixed"])
def test_autointerp_relu_loads_in_saelens_as_standard_with_proposed_cfg(compat, name):
    info = _check_autointerp_to_saelens(compat, name)
    assert info["class"] == "StandardSAE" and info["cfg"]["architecture"] == "standard"


@pytest.mark.parametrize("name", ["ai_relu", "ai_relu_norm"])
def test_autointerp_relu_loads_in_saelens(compat, name):
    _check_autointerp_to_saelens(compat, name)


def test_autointerp_without_hook_name_loads_in_saelens_with_proposed_cfg(compat):
    _check_autointerp_to_saelens(compat, "ai_topk_nometa_fixed")


def test_autointerp_without_hook_name_loads_in_saelens(compat):
    _check_autointerp_to_saelens(compat, "ai_topk_nometa")


def test_autointerp_batchtopk_loads_in_saelens(compat):
    _check_autointerp_to_saelens(compat, "ai_batchtopk")


# ------------------------------------------------------------------------------------------------ (b) sae_lens -> autointerp
def _check_saelens_to_autointerp(compat: dict[str, Any], name: str) -> Any:
    theirs = _theirs(compat, name)
    info = compat["results"][name]  # sae_lens reloads its own file to the SAE it saved (same code, same recon)
    assert info["reload_same_active_latents"] and info["reload_recon_max_abs_diff"] <= 1e-4
    sae = load_sae(compat["work"] / name)
    x = compat["x"]
    with torch.no_grad():
        latents = sae.encode(x)
        ours_dense = _dense(*latents)
        recon = sae.decode(*latents)
    assert (theirs["acts"] > 0).sum() > 0 and (theirs["acts"] == 0).sum() > 0
    assert torch.equal(ours_dense > 0, theirs["acts"] > 0), f"{name}: different active latents"
    _assert_close(ours_dense, theirs["acts"], f"{name} activations")
    _assert_close(recon, theirs["recon"], f"{name} reconstruction")
    return sae


@pytest.mark.parametrize("name", ["sl_standard", "sl_standard_trained", "sl_standard_trained_norm"])
def test_saelens_standard_loads_in_autointerp(compat, name):
    sae = _check_saelens_to_autointerp(compat, name)
    assert sae.cfg.architecture == "relu" and not sae.cfg.normalize_activations


@pytest.mark.parametrize("name", ["sl_topk", "sl_topk_no_bdec", "sl_topk_trained", "sl_topk_trained_norm"])
def test_saelens_topk_loads_in_autointerp(compat, name):
    sae = _check_saelens_to_autointerp(compat, name)
    assert sae.cfg.architecture == "topk" and sae.cfg.k == K
    assert sae.cfg.apply_b_dec_to_input is SAELENS_CASES[name].get("apply_b_dec_to_input", True)


def test_saelens_trained_norm_cfg_is_folded(compat):
    cfg = compat["results"]["sl_topk_trained_norm"]["cfg"]
    assert cfg["normalize_activations"] == "none"  # sae_lens' trainer folds the factor and says so


def test_saelens_unfolded_expected_average_only_in_matches_load_from_disk(compat):
    """cfg.json 'expected_average_only_in' = factor NOT folded (sae_lens' from_pretrained folds it from its
    registry; load_from_disk applies nothing at run time). autointerp must behave like load_from_disk."""
    assert compat["results"]["sl_topk_trained_unfolded_norm"]["cfg"]["normalize_activations"] == "expected_average_only_in"
    _check_saelens_to_autointerp(compat, "sl_topk_trained_unfolded_norm")


def test_saelens_topk_rescaled_by_decoder_norm_loads_in_autointerp(compat):
    _check_saelens_to_autointerp(compat, "sl_topk_rescale")


def test_saelens_batchtopk_loads_in_autointerp(compat):
    _check_saelens_to_autointerp(compat, "sl_batchtopk_trained")


def test_sparsity_file_matches_saelens_key(compat):
    """sae_lens reads log feature sparsity as tensor 'sparsity' from sparsity.safetensors."""
    got = load_file(str(compat["work"] / "ai_topk" / "sparsity.safetensors"))
    assert list(got) == ["sparsity"] and got["sparsity"].shape == (D_SAE,)


@pytest.mark.parametrize("name", ["sl_jumprelu", "sl_jumprelu_no_bdec"])
def test_saelens_jumprelu_loads_in_autointerp(compat, name):
    sae = _check_saelens_to_autointerp(compat, name)
    assert sae.cfg.architecture == "jumprelu"
    assert sae.cfg.apply_b_dec_to_input is SAELENS_CASES[name].get("apply_b_dec_to_input", True)


@pytest.mark.parametrize("name", sorted(SAELENS_CASES))
def test_saelens_saves_read_as_pretrained_saes(compat, name):
    """``sae = <directory>`` (autointerp.sae.pretrained) detects the SAELens layout and encodes like sae_lens."""
    from autointerp.sae.pretrained import load_pretrained

    theirs = _theirs(compat, name)
    pre = load_pretrained(str(compat["work"] / name))
    assert pre.format == "saelens"
    with torch.no_grad():
        latents = pre.sae.encode(compat["x"])
        ours = _dense(*latents)
    assert torch.equal(ours > 0, theirs["acts"] > 0), f"{name}: different active latents"
    _assert_close(ours, theirs["acts"], f"{name} activations (pretrained reader)")
