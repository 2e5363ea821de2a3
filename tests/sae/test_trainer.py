"""Trainer: exact resume after interruption, NaN handling, LR schedule; activation buffer streaming."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from autointerp.errors import UserError
from helpers.superposition import make_superposition_data
from autointerp.harvest.buffer import held_out_split, iter_activation_batches, shard_shape
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.rundir.layout import CHECKPOINT_FILE
from autointerp.sae.trainer import TrainConfig, lr_at, train_sae

SAE_CFG = SAEConfig(d_in=32, d_sae=256, k=4)
BS = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return make_superposition_data(n_features=64, d=32, n_samples=40 * BS, avg_active=4, seed=3).X


def _batches(x: torch.Tensor, fail_after: int | None = None, piece: int = BS):
    """Deterministic source; optionally dies after `fail_after` pieces like a killed job would."""
    for i, b in enumerate(x.split(piece)):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("simulated crash")
        yield b


def _cfg(**kw) -> TrainConfig:
    base = {"total_tokens": 40 * BS, "batch_size": BS, "lr": 3e-3, "warmup_steps": 5, "checkpoint_every": 5,
            "log_every": 5, "dead_tokens_threshold": 4 * BS}  # small window: AuxK and dead counters take part
    return TrainConfig(**{**base, **kw})


def _ckpt_step(ckpt_dir: Path) -> int:
    with safe_open(str(ckpt_dir / CHECKPOINT_FILE), framework="pt") as f:
        return json.loads(f.metadata()["trainer"])["step"]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, data):
    ref = create_sae(SAE_CFG, seed=0)
    ref_res = train_sae(ref, _batches(data), _cfg(), checkpoint_dir=tmp_path / "a")
    assert ref_res.completed and ref_res.steps == 40 and ref_res.resumed_from_step == 0
    assert any(h["auxk"] > 0 for h in ref_res.history)  # dead-latent path was exercised

    run = create_sae(SAE_CFG, seed=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sae(run, _batches(data, fail_after=23), _cfg(), checkpoint_dir=tmp_path / "b")
    assert _ckpt_step(tmp_path / "b") == 20  # steps 21-23 were lost with the process
    # A fresh process: different random init, and the source delivers different-sized pieces.
    resumed = create_sae(SAE_CFG, seed=123)
    res = train_sae(resumed, _batches(data, piece=48), _cfg(), checkpoint_dir=tmp_path / "b")
    assert res.resumed_from_step == 20 and res.steps == 40 and res.completed
    for name, p in ref.state_dict().items():
        assert torch.allclose(p, resumed.state_dict()[name], atol=1e-6), name
    assert [h["fvu"] for h in res.history] == pytest.approx([h["fvu"] for h in ref_res.history], abs=1e-6)
    assert torch.equal(res.feature_density, ref_res.feature_density)
    assert res.dead_fraction == ref_res.dead_fraction

    # Re-running a finished run is a no-op.
    again = create_sae(SAE_CFG, seed=7)
    res2 = train_sae(again, _batches(data), _cfg(), checkpoint_dir=tmp_path / "b")
    assert res2.steps == 40 and res2.resumed_from_step == 40
    assert torch.equal(again.W_dec, resumed.W_dec)


def test_resume_refuses_changed_config(tmp_path, data):
    train_sae(create_sae(SAE_CFG, seed=0), _batches(data), _cfg(total_tokens=10 * BS), checkpoint_dir=tmp_path)
    with pytest.raises(UserError, match="batch_size"):
        train_sae(create_sae(SAE_CFG, seed=0), _batches(data), _cfg(total_tokens=10 * BS, batch_size=32),
                  checkpoint_dir=tmp_path)
    with pytest.raises(UserError, match="different SAE config"):
        train_sae(create_sae(SAEConfig(d_in=32, d_sae=128, k=4)), _batches(data), _cfg(total_tokens=10 * BS),
                  checkpoint_dir=tmp_path)


def test_nan_in_activations_stops_cleanly(tmp_path, data):
    bad = data.clone()
    bad[7 * BS + 3, 5] = float("nan")  # inside step 7 (0-based)
    sae = create_sae(SAE_CFG, seed=0)
    with pytest.raises(UserError, match=r"NaN in activations at step 7; last good checkpoint at .*checkpoint"):
        train_sae(sae, _batches(bad), _cfg(), checkpoint_dir=tmp_path)
    assert _ckpt_step(tmp_path) == 5
    assert all(torch.isfinite(t).all() for t in sae.state_dict().values())
    # Infinite values too, and without a checkpoint dir the message says so.
    bad[7 * BS + 3, 5] = float("inf")
    with pytest.raises(UserError, match="no checkpoint was written"):
        train_sae(create_sae(SAE_CFG, seed=0), _batches(bad), _cfg())
    # After fixing the data the run resumes from the intact checkpoint.
    res = train_sae(create_sae(SAE_CFG, seed=0), _batches(data), _cfg(), checkpoint_dir=tmp_path)
    assert res.resumed_from_step == 5 and res.completed


def test_data_running_out_is_reported_and_checkpointed(tmp_path, data):
    res = train_sae(create_sae(SAE_CFG, seed=0), _batches(data[: 12 * BS]), _cfg(), checkpoint_dir=tmp_path)
    assert not res.completed and res.steps == 12
    assert _ckpt_step(tmp_path) == 12


def test_wrong_width_is_user_error(data):
    with pytest.raises(UserError, match=r"expects \[n, 32\]"):
        train_sae(create_sae(SAE_CFG, seed=0), iter([torch.randn(BS, 16)]), _cfg())


def test_lr_schedule():
    lrs = [lr_at(s, 1.0, 100, warmup_steps=10, decay_fraction=0.2) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))  # linear warmup
    assert all(v == 1.0 for v in lrs[10:80])  # constant
    assert all(a > b for a, b in itertools.pairwise(lrs[80:]))  # linear decay over the last 20%
    assert lrs[99] == pytest.approx(1 / 20) and lr_at(100, 1.0, 100, 10) == 0.0
    assert lr_at(50, 1.0, 100, 0, decay_fraction=0.0) == 1.0
    # the trainer follows it, and the d_sae-scaled default is sparsify's 1/sqrt(width) rule x5 (short runs)
    assert TrainConfig(total_tokens=100, batch_size=10).resolved_lr(16384) == pytest.approx(2.2e-3)
    assert TrainConfig(total_tokens=100, batch_size=10).resolved_lr(4096) == pytest.approx(4.4e-3)
    assert TrainConfig(total_tokens=100 * 10, batch_size=10).resolved_warmup() == 5  # short runs: 5% warmup
    assert TrainConfig(total_tokens=10**9, batch_size=10).resolved_warmup() == 1000


def test_trainer_lr_history_and_progress(data):
    cfg = _cfg(total_tokens=20 * BS, warmup_steps=4, log_every=1, checkpoint_every=100)
    res = train_sae(create_sae(SAE_CFG, seed=0), _batches(data), cfg, progress=True)
    expected = [lr_at(s, 3e-3, 20, 4, 0.2) for s in range(20)]
    assert [h["lr"] for h in res.history] == pytest.approx(expected)
    assert res.history[-1]["fvu"] < res.history[0]["fvu"]


# -- buffer ------------------------------------------------------------------------------------
def _write_shards(tmp_path: Path) -> list[Path]:
    """3 shards x 100 rows in the three harvest dtypes; columns 0/1 = (shard, row) identify each row."""
    paths = []
    for s, dtype in enumerate([torch.float32, torch.float16, torch.bfloat16]):
        x = torch.zeros(100, 8)
        x[:, 0], x[:, 1] = s, torch.arange(100)
        paths.append(tmp_path / f"shard_{s:03d}.safetensors")
        save_file({"activations": x.to(dtype)}, str(paths[-1]))
    return paths


def _ids(batches) -> list[tuple[int, int]]:
    return [(int(r[0]), int(r[1])) for b in batches for r in b]


def test_buffer_is_deterministic_complete_and_shuffled(tmp_path):
    paths = _write_shards(tmp_path)
    assert shard_shape(paths[1]) == (100, 8)

    def run(seed: int) -> list[torch.Tensor]:
        return list(iter_activation_batches(paths, 32, buffer_rows=64, seed=seed))

    a, b, c = run(0), run(0), run(1)
    assert all(x.dtype == torch.float32 for x in a)
    assert [len(x) for x in a] == [32] * 9 + [12]
    ids = _ids(a)
    assert sorted(ids) == [(s, r) for s in range(3) for r in range(100)]  # every row exactly once
    assert ids == _ids(b) and ids != _ids(c)  # same seed, same stream; new seed, new order
    assert ids != sorted(ids)
    # rows are mixed within the buffer: the first batch is not a contiguous run of one shard
    first = a[0][:, 1]
    assert (first.diff() != 1).any()
    assert [len(x) for x in iter_activation_batches(paths, 32, buffer_rows=64, drop_last=True)] == [32] * 9


def test_buffer_loop_and_errors(tmp_path):
    paths = _write_shards(tmp_path)
    stream = iter_activation_batches(paths, 50, buffer_rows=100, loop=True)
    ids = _ids(next(stream) for _ in range(12))  # 600 rows = two epochs
    assert sorted(set(ids)) == [(s, r) for s in range(3) for r in range(100)]
    with pytest.raises(UserError, match="does not exist"):
        iter_activation_batches([tmp_path / "missing.safetensors"], 8)
    with pytest.raises(UserError, match="no tensor 'acts'"):
        iter_activation_batches(paths, 8, key="acts")
    save_file({"activations": torch.zeros(4, 2, 8)}, str(tmp_path / "cube.safetensors"))
    with pytest.raises(UserError, match="2-D"):
        iter_activation_batches([tmp_path / "cube.safetensors"], 8)
    save_file({"activations": torch.zeros(4, 6)}, str(tmp_path / "narrow.safetensors"))
    with pytest.raises(UserError, match="different widths"):
        iter_activation_batches([paths[0], tmp_path / "narrow.safetensors"], 8)
    (tmp_path / "junk.safetensors").write_bytes(b"\x07" * 64)
    with pytest.raises(UserError, match="damaged"):
        iter_activation_batches([tmp_path / "junk.safetensors"], 8)
    train, held = held_out_split(list(reversed(paths)))
    assert train == paths[:2] and held == paths[2:]
    with pytest.raises(UserError, match="more than 1"):
        held_out_split(paths[:1])


def test_buffer_feeds_trainer_and_resume_skips_rows(tmp_path):
    """The real data path: shards -> buffer -> trainer, interrupted and resumed with the same seed."""
    g = torch.Generator().manual_seed(0)
    paths = []
    for s in range(2):
        paths.append(tmp_path / f"s{s}.safetensors")
        save_file({"activations": torch.randn(640, 32, generator=g).to(torch.bfloat16)}, str(paths[-1]))
    cfg = _cfg(total_tokens=20 * BS, checkpoint_every=4)
    ref = create_sae(SAE_CFG, seed=0)
    train_sae(ref, iter_activation_batches(paths, BS, buffer_rows=256, seed=5), cfg)

    def dying():
        for i, b in enumerate(iter_activation_batches(paths, BS, buffer_rows=256, seed=5)):
            if i == 10:
                raise KeyboardInterrupt
            yield b

    with pytest.raises(KeyboardInterrupt):
        train_sae(create_sae(SAE_CFG, seed=0), dying(), cfg, checkpoint_dir=tmp_path / "ck")
    sae = create_sae(SAE_CFG, seed=9)
    res = train_sae(sae, iter_activation_batches(paths, BS, buffer_rows=256, seed=5), cfg,
                    checkpoint_dir=tmp_path / "ck")
    assert res.resumed_from_step == 8
    assert torch.allclose(sae.W_dec, ref.W_dec, atol=1e-6) and torch.allclose(sae.b_dec, ref.b_dec, atol=1e-6)
