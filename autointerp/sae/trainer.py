"""SAE training loop, decoupled from where activations come from.

The data source is any iterator of [B, d_in] float tensors (see ``buffer.iter_activation_batches``);
the trainer re-chunks it to ``batch_size`` rows so that "step s" always means "rows [s*B, (s+1)*B)".
That is what makes resumption exact: a checkpoint stores the SAE, the Adam moments, the dead-latent
counters and the step, and on resume we fast-forward the (deterministic) iterator by step*B rows.
Checkpoints are one safetensors file (tensors + JSON header metadata), replaced atomically; no pickle.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from autointerp.errors import DamagedArtifact, UserError
from autointerp.rundir.layout import CHECKPOINT_FILE
from autointerp.io import atomic_path, open_safetensors
from autointerp import distributed as ddp
from autointerp.sae.base import SparseAutoencoder
from autointerp.sae.config import TrainConfig  # the [train] section

_FORMAT = 1
# Fields whose change makes an old checkpoint's optimizer state / data position meaningless.
_RESUME_KEYS = ("batch_size", "total_tokens", "lr", "warmup_steps", "decay_fraction", "auxk_alpha",
                "dead_tokens_threshold", "b_dec_init", "seed", "adam_betas")


def lr_at(step: int, base_lr: float, total_steps: int, warmup_steps: int, decay_fraction: float = 0.2) -> float:
    """LR for 0-based ``step``: linear warmup, constant, linear decay reaching 0 at ``total_steps``."""
    factor = 1.0
    if warmup_steps > 0:
        factor = min(factor, (step + 1) / warmup_steps)
    decay_start = int(total_steps * (1.0 - decay_fraction))
    if total_steps > decay_start and step >= decay_start:
        factor = min(factor, (total_steps - step) / (total_steps - decay_start))
    return base_lr * max(factor, 0.0)


@dataclass
class TrainResult:
    steps: int
    tokens: int
    completed: bool  # False if the data ran out before total_tokens
    resumed_from_step: int
    fvu: float  # mean training FVU over the last log window (batch-centred, see ForwardOutput)
    l0: float  # mean active latents per token over the last log window
    dead_fraction: float  # latents that did not fire in the last `dead_window_tokens` tokens
    dead_window_tokens: int
    lr: float
    feature_density: Tensor  # fraction of training tokens on which each latent fired (whole run)
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None

    def log_feature_density(self) -> Tensor:
        """log10 density as SAELens' sparsity.safetensors stores it (never-fired latents -> -10)."""
        return self.feature_density.clamp_min(1e-10).log10()


@dataclass
class _State:
    step: int
    since_fired: Tensor  # tokens since each latent last fired
    fire_counts: Tensor  # tokens on which each latent fired
    history: list[dict[str, float]]


def _rebatch(batches: Iterator[Tensor], batch_size: int, d_in: int) -> Iterator[Tensor]:
    """Re-chunk arbitrary [n, d_in] pieces into exactly batch_size rows (trailing remainder dropped)."""
    pending: Tensor | None = None
    for b in batches:
        if b.ndim != 2 or b.shape[1] != d_in:
            raise UserError(f"activation batch has shape {tuple(b.shape)} but the SAE expects [n, {d_in}]; "
                            "check the hook / model the activations came from")
        pending = b if pending is None or len(pending) == 0 else torch.cat([pending, b])
        while len(pending) >= batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _save_checkpoint(path: Path, sae: SparseAutoencoder, opt: torch.optim.Optimizer, st: _State,
                     cfg: TrainConfig) -> None:
    """Flatten SAE + Adam state into one safetensors file; scalars and history go to the header."""
    tensors = {f"sae.{n}": t.detach() for n, t in sae.state_dict().items()}
    osd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in osd["state"].items():
        for k, v in pstate.items():
            if isinstance(v, Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    tensors["since_fired"], tensors["fire_counts"] = st.since_fired, st.fire_counts
    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
    meta = {"format": _FORMAT, "step": st.step, "sae_cfg": asdict(sae.cfg), "train_cfg": asdict(cfg),
            "param_groups": osd["param_groups"], "optim_scalars": scalars, "history": st.history}
    header = {"trainer": json.dumps(meta, default=str)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def _load_checkpoint(path: Path, sae: SparseAutoencoder, opt: torch.optim.Optimizer, cfg: TrainConfig,
                     device: torch.device) -> _State:
    fix = "delete it to restart training"
    with open_safetensors(path, fix=fix) as f:
        try:
            meta = json.loads((f.metadata() or {})["trainer"])
        except (KeyError, ValueError) as e:
            raise DamagedArtifact(path, f"no trainer state in its header: {e}", fix) from e
        tensors = {k: f.get_tensor(k) for k in list(f.keys())}
    def shape(cfg: dict) -> dict:  # expansion_factor is informational once d_sae is resolved
        return {k: v for k, v in cfg.items() if k != "expansion_factor"}

    if shape(json.loads(json.dumps(asdict(sae.cfg), default=str))) != shape(meta["sae_cfg"]):
        raise UserError(f"checkpoint {path} was made for a different SAE config; delete it or use another dir")
    now = json.loads(json.dumps(asdict(cfg), default=str))
    changed = [k for k in _RESUME_KEYS if now[k] != meta["train_cfg"].get(k)]
    if changed:
        raise UserError(f"training config changed since checkpoint {path} ({', '.join(changed)}); "
                        "restore the old values or delete the checkpoint to restart")
    sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
    state: dict[int, dict[str, Any]] = {}
    params = [q for g in opt.param_groups for q in g["params"]]
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            param = params[int(pid)]
            if v.shape == param.shape:  # moments in the parameter's own memory layout (W_enc is column-major):
                v = torch.empty_like(param).copy_(v)  # fused Adam walks param, grad and moments as flat memory
            state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta["optim_scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
    return _State(meta["step"], tensors["since_fired"].to(device), tensors["fire_counts"].to(device),
                  meta["history"])


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]SAE"), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"),
                    TextColumn("{task.fields[stats]}"), TimeRemainingColumn())


def train_sae(sae: SparseAutoencoder, batches: Iterator[Tensor], cfg: TrainConfig,
              checkpoint_dir: Path | None = None, progress: bool = False) -> TrainResult:
    """Train ``sae`` in place with Adam; resume from ``checkpoint_dir`` if it holds a checkpoint.

    ``batches`` must replay the same rows in the same order when called again with the same seed,
    because resumption skips the first step*batch_size rows. NaN/inf activations raise ``UserError``
    before the bad batch touches the weights, so the last checkpoint stays valid.
    """
    device = _resolve_device(ddp.device_for_rank(cfg.device))
    world, rank = ddp.world_size(), ddp.rank()
    progress = progress and ddp.is_main()
    sae.to(device).train()
    # Sparse backward (sparse_ops) measured ~2x faster per step on CPU; GPUs keep cuBLAS + bf16 autocast.
    sae.sparse_backward = device.type == "cpu"
    d_sae, total_steps = sae.cfg.d_sae, cfg.total_steps
    base_lr, dead_after, warmup = cfg.resolved_lr(d_sae), cfg.resolved_dead_threshold(), cfg.resolved_warmup()
    # fused: one kernel per parameter instead of ~10 passes over it; measured 7x faster on CPU
    opt = torch.optim.Adam(sae.parameters(), lr=base_lr, betas=cfg.adam_betas, fused=device.type in ("cpu", "cuda"))
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    st = _State(0, torch.zeros(d_sae, dtype=torch.long, device=device),
                torch.zeros(d_sae, dtype=torch.long, device=device), [])
    if ckpt is not None and ckpt.exists():
        st = _load_checkpoint(ckpt, sae, opt, cfg, device)
    resumed_from, last_ckpt = st.step, (ckpt if ckpt is not None and ckpt.exists() else None)
    stream = _rebatch(iter(batches), cfg.batch_size, sae.cfg.d_in)
    for _ in range(st.step if st.step < total_steps else 0):  # skip rows the checkpoint already trained on
        if next(stream, None) is None:
            raise UserError(f"activation data ran out while skipping {st.step} trained steps; the data changed "
                            f"since checkpoint {ckpt} - delete it to restart")
    if st.step == 0 and cfg.b_dec_init != "none":
        first = next(stream, None)
        if first is not None:
            sample = first.to(device, torch.float32)
            if torch.isfinite(sample).all():  # a bad first batch is reported by the loop below
                sae.fit_input_scale(sample)
                sae.init_b_dec(sample, cfg.b_dec_init)
            stream = itertools.chain([first], stream)

    completed, lr = True, lr_at(st.step, base_lr, total_steps, warmup, cfg.decay_fraction)
    win = {"fvu": 0.0, "l0": 0.0, "auxk": 0.0, "n": 0}
    with _progress_bar(progress, total_steps * cfg.batch_size) as bar:
        task = bar.add_task("train", total=total_steps * cfg.batch_size, completed=st.step * cfg.batch_size,
                            stats="") if bar is not None else None
        while st.step < total_steps:
            batch = next(stream, None)
            if batch is None:
                completed = False
                break
            batch = batch.to(device, torch.float32)
            where = f"last good checkpoint at {last_ckpt}" if last_ckpt else "no checkpoint was written"
            if not torch.isfinite(batch).all():
                raise UserError(f"NaN in activations at step {st.step}; {where}. Drop or re-harvest the bad shard, "
                                "then re-run to resume")
            lr = lr_at(st.step, base_lr, total_steps, warmup, cfg.decay_fraction)
            for g in opt.param_groups:
                g["lr"] = lr
            dead_mask = st.since_fired >= dead_after if cfg.auxk_alpha > 0 else None
            # bf16 autocast on CUDA (weights and Adam state stay float32); CPU stays float32, where
            # bf16 matmuls measured ~5x slower on this project's machines (see docs/performance.md).
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                if world > 1:  # this rank's slice, normalised by the global batch's variance
                    out = sae(batch[rank::world], dead_mask=dead_mask, total_variance=sae.total_variance(batch))
                else:
                    out = sae(batch, dead_mask=dead_mask)
            loss = out.fvu + out.l1_loss + cfg.auxk_alpha * out.auxk_loss
            if not torch.isfinite(loss):
                raise UserError(f"loss became NaN/inf at step {st.step} (lr {lr:.2g} too high?); {where}. "
                                "Lower lr and re-run to resume")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ddp.sum_gradients(sae)
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            sae.set_decoder_norm_to_unit_norm()

            with torch.no_grad():
                acts, idx = out.latents
                step_counts = ddp.all_reduce_sum_(torch.bincount(idx[acts > 0], minlength=d_sae))
                st.fire_counts += step_counts
                st.since_fired += len(batch)
                st.since_fired[step_counts > 0] = 0
                # Per-rank FVU/AuxK are partial sums of the global ones; L0 is a per-rank mean.
                logged = ddp.all_reduce_sum_(torch.stack([out.fvu.detach(), out.auxk_loss.detach(),
                                                          (acts > 0).sum(-1).float().mean() / world]).float())
                win["fvu"] += float(logged[0])
                win["l0"] += float(logged[2])
                win["auxk"] += float(logged[1])
                win["n"] += 1
            st.step += 1
            if st.step % cfg.log_every == 0 or st.step == total_steps:
                n = win["n"]
                st.history.append({"step": st.step, "tokens": st.step * cfg.batch_size, "lr": lr,
                                   "fvu": win["fvu"] / n, "l0": win["l0"] / n, "auxk": win["auxk"] / n,
                                   "dead_fraction": float((st.since_fired >= dead_after).float().mean())})
                win = {"fvu": 0.0, "l0": 0.0, "auxk": 0.0, "n": 0}
            if ckpt is not None and (st.step % cfg.checkpoint_every == 0 or st.step == total_steps):
                if ddp.is_main():  # ranks hold identical state; one writer
                    _save_checkpoint(ckpt, sae, opt, st, cfg)
                ddp.barrier()
                last_ckpt = ckpt
            if bar is not None:
                h = st.history[-1] if st.history else {"fvu": float(out.fvu.detach()), "l0": 0.0, "dead_fraction": 0.0}
                bar.update(task, completed=st.step * cfg.batch_size,
                           stats=f"FVU {h['fvu']:.3f}  L0 {h['l0']:.1f}  dead {h['dead_fraction']:.1%}")

    if ckpt is not None and not completed and st.step > resumed_from and ddp.is_main():
        _save_checkpoint(ckpt, sae, opt, st, cfg)  # data ran out mid-interval: keep what was learned
        last_ckpt = ckpt
    last = st.history[-1] if st.history else {"fvu": float("nan"), "l0": float("nan")}
    tokens = st.step * cfg.batch_size
    return TrainResult(
        steps=st.step, tokens=tokens, completed=completed and st.step >= total_steps, resumed_from_step=resumed_from,
        fvu=last["fvu"], l0=last["l0"], dead_fraction=float((st.since_fired >= dead_after).float().mean()),
        dead_window_tokens=dead_after, lr=lr, feature_density=(st.fire_counts.float() / max(tokens, 1)).cpu(),
        history=st.history, checkpoint=last_ckpt)
