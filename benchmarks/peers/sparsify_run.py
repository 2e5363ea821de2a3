"""Train EleutherAI sparsify's TopK SparseCoder on cached activations (run inside the peer venv).

sparsify's ``Trainer`` only trains through forward hooks on a live HF model and a token dataset, so it
cannot consume cached activations. This is its per-step body (``Trainer.fit`` and its hook, sparsify
1.3.x) with the model forward replaced by the next cached batch, nothing else changed:

* init: ``torch.manual_seed(seed)``, ``SparseCoder(d_in, cfg, dtype=float32)`` (encoder = decoder^T,
  unit-norm decoder rows, zero biases); on the first batch ``b_dec = batch.mean(0)``;
* each step: re-normalise decoder rows, forward with the dead mask, loss = fvu + auxk_alpha * auxk,
  backward, remove the gradient parallel to decoder rows, optimizer + scheduler step, dead bookkeeping;
* optimizer: sparsify's default "signum" (ScheduleFreeWrapper(SignSGD), momentum 0.95,
  lr 5e-3 / sqrt(num_latents / 2^14)) or "adam" (lr 2e-4 / sqrt(num_latents / 2^14), transformers'
  linear warmup/decay schedule); a ScheduleFree optimizer is switched to eval() before the weights are
  exported, as sparsify's ``Trainer.save`` does.

Deliberate differences from ``Trainer.fit``: no ``torch.set_float32_matmul_precision("high")`` (every
trainer in the benchmark runs at full fp32 precision), no wandb, no checkpoints, Triton decoder disabled
(CPU: sparsify's own eager embedding_bag fallback).
"""

from __future__ import annotations

import os

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # before sparsify is imported: CPU has no Triton

import torch
from common import Timer, base_parser, setup, versions, write


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--optimizer", choices=["signum", "adam"], default="signum")
    p.add_argument("--lr", type=float, default=None, help="None: sparsify's automatic LR for the optimizer")
    p.add_argument("--warmup-steps", type=int, default=1000, help="adam only (sparsify's default 1000)")
    args = p.parse_args()
    batches = setup(args)

    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify.sign_sgd import SignSGD

    d_in = batches[0].shape[1]
    torch.manual_seed(args.seed)
    cfg = SparseCoderConfig(activation="topk", num_latents=args.d_sae, k=args.k)
    sae = SparseCoder(d_in, cfg, "cpu", dtype=torch.float32)
    schedulers = []
    if args.optimizer == "signum":
        from schedulefree import ScheduleFreeWrapper

        lr = args.lr or 5e-3 / (sae.num_latents / 2**14) ** 0.5
        opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95)
        opt.train()
    else:
        from torch.optim import Adam
        from transformers import get_linear_schedule_with_warmup

        lr = args.lr or 2e-4 / (sae.num_latents / 2**14) ** 0.5
        opt = Adam([{"params": sae.parameters(), "lr": lr}])
        schedulers.append(get_linear_schedule_with_warmup(opt, args.warmup_steps, len(batches)))

    # sparsify: dead once num_tokens_since_fired > threshold; autointerp: >= threshold.
    dead_threshold = args.dead_tokens - 1
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    did_fire = torch.zeros(sae.num_latents, dtype=torch.bool)
    fvus = []
    with Timer() as t:
        for step, x in enumerate(batches):
            if step == 0:
                sae.b_dec.data = x.mean(0).to(sae.dtype)
            sae.set_decoder_norm_to_unit_norm()
            dead_mask = since_fired > dead_threshold if args.auxk_alpha > 0 else None
            out = sae(x, dead_mask=dead_mask)
            did_fire[out.latent_indices.flatten()] = True
            loss = out.fvu + args.auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
            for s in schedulers:
                s.step()
            with torch.no_grad():
                since_fired += len(x)
                since_fired[did_fire] = 0
                did_fire.zero_()
            fvus.append(float(out.fvu.detach()))
    if hasattr(opt, "eval"):
        opt.eval()  # ScheduleFree: export the averaged weights, as Trainer.save does

    weights = {"W_enc": sae.encoder.weight.data.T, "b_enc": sae.encoder.bias.data, "W_dec": sae.W_dec.data,
               "b_dec": sae.b_dec.data}
    tail = fvus[-max(1, len(fvus) // 10):]
    write(args.out, weights, {
        "trainer": "sparsify", "wall_s": t.wall, "cpu_s": t.cpu, "steps": len(batches),
        "tokens": sum(len(b) for b in batches), "train_fvu_last10pct": sum(tail) / len(tail),
        "settings": {"optimizer": args.optimizer, "lr": lr, "auxk_alpha": args.auxk_alpha,
                     "dead_feature_threshold_tokens": dead_threshold,
                     "warmup_steps": args.warmup_steps if args.optimizer == "adam" else None,
                     "b_dec_init": "mean of first batch", "decoder": "eager embedding_bag (no Triton)"},
        "versions": versions("eai-sparsify", "torch", "schedulefree", "transformers"),
    })


if __name__ == "__main__":
    main()
