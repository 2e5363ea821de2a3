"""Train a SAELens TopK training SAE on cached activations with SAELens' own SAETrainer (peer venv).

``SAETrainer`` takes any iterator of activation batches as its data provider, so this is SAELens'
real training loop (its optimizer, LR scheduler, gradient clipping, dead-latent bookkeeping and AuxK),
fed the benchmark's batches in order instead of an ActivationsStore. Settings are SAELens' defaults
(``LanguageModelSAERunnerConfig`` / ``TopKTrainingSAEConfig``) except where the benchmark equalises them:

* k, d_sae, batch size, token budget, float32, no autocast, ``normalize_activations="none"``;
* AuxK: ``aux_loss_coefficient`` and ``dead_feature_window`` are set to autointerp's AuxK weight and
  dead-latent window (SAELens' defaults, 1.0 and 1000 steps, would never mark a latent dead in a short run);
* defaults kept: Adam lr 3e-4, constant schedule, no warmup (``lr_end = lr / 10`` as the runner config
  sets it; unused by "constant"), grad-norm clipping 1.0, ``rescale_acts_by_decoder_norm=True``,
  ``decoder_init_norm=0.1``, b_dec starts at 0 (SAELens 6 has no b_dec data init).

Exported weights are SAELens' inference state dict (``process_state_dict_for_saving_inference``), which
folds the decoder norms into W_enc / b_enc, so the model is exactly TopK(ReLU((x - b_dec) W_enc + b_enc)).
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch
from common import Timer, base_parser, setup, versions, write


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--lr", type=float, default=3e-4, help="SAELens' default 3e-4")
    args = p.parse_args()
    batches = setup(args)

    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    d_in, n_tokens = batches[0].shape[1], sum(len(b) for b in batches)
    torch.manual_seed(args.seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=args.d_sae, k=args.k, dtype="float32", device="cpu",
                                                normalize_activations="none", aux_loss_coefficient=args.auxk_alpha))
    # SAELens: dead once n_forward_passes_since_fired (steps) > window; autointerp: tokens >= dead_tokens.
    window = max(math.ceil(args.dead_tokens / args.batch_size) - 1, 0)
    tcfg = SAETrainerConfig(total_training_samples=n_tokens, train_batch_size_samples=args.batch_size, lr=args.lr,
                            lr_end=args.lr / 10, device="cpu", autocast=False, dead_feature_window=window,
                            logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(tcfg, sae, data_provider=iter(batches))
    with Timer() as t:
        trainer.fit()
    if trainer.n_training_steps != len(batches):
        raise SystemExit(f"SAETrainer ran {trainer.n_training_steps} steps, expected {len(batches)}")

    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    sae.process_state_dict_for_saving_inference(state)
    weights = {k: state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    write(args.out, weights, {
        "trainer": "sae-lens", "wall_s": t.wall, "cpu_s": t.cpu, "steps": trainer.n_training_steps,
        "tokens": trainer.n_training_samples,
        "settings": {"optimizer": "adam", "lr": args.lr, "lr_scheduler": tcfg.lr_scheduler_name,
                     "grad_clip_norm": 1.0, "aux_loss_coefficient": args.auxk_alpha,
                     "dead_feature_window_steps": window,
                     "rescale_acts_by_decoder_norm": sae.cfg.rescale_acts_by_decoder_norm,
                     "decoder_init_norm": sae.cfg.decoder_init_norm, "b_dec_init": "zeros",
                     "apply_b_dec_to_input": sae.cfg.apply_b_dec_to_input},
        "versions": versions("sae-lens", "torch", "transformer-lens", "transformers"),
    })


if __name__ == "__main__":
    main()
