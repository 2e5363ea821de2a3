"""``[crosscode]``: a BatchTopK crosscoder trained on both models' activations at once (opt-in).

Free of heavy imports (read with the config). Thresholds of the shared / exclusive split are settings so
the report can state them; defaults follow Minder et al. 2025 (relative norm bands) for BatchTopK.
"""

from __future__ import annotations

from dataclasses import dataclass

from autointerp.errors import UserError

POOLINGS = ("mean", "residual")


@dataclass
class CrosscodeConfig:
    # Off by default: on the embedded pair it adds ~4.5 min (the pair and its random-weights floor) to a
    # default run already over its 15-minute budget. `autointerp crosscode` runs it regardless; `autointerp
    # run` only when true.
    enabled: bool = False  # `autointerp run` trains the crosscoder (the `crosscode` command always does)
    # What one row is, per shared word unit: "mean" = each model's activation mean-pooled over the unit's
    # tokens; "residual" = the same minus that model's mean over every occurrence of the unit's word type
    # (casefolded text), on the units whose type recurs in two or more documents only: the word-identity
    # (lexical) part removed, so a latent shared there is shared beyond word identity.
    pooling: str = "mean"  # mean | residual (word-type means removed: sharing beyond word identity)
    d_sae: int = 4096  # latents of the one dictionary both models share
    k: int = 32  # mean active latents per word unit (BatchTopK: top k x batch over the batch in training)
    epochs: float = 3.0  # passes over the training word units
    batch_size: int = 1024  # word units per step
    lr: float | None = None  # None: the SAE trainer's rule, 2.2e-3 / sqrt(d_sae / 16384)
    seed: int = 0  # weight init, data order and the held-out document split
    eval_fraction: float = 0.1  # share of documents (seeded) held out for the per-model FVU / L0 / dead figures
    # Relative decoder norm r = |d_B| / (|d_A| + |d_B|) per latent (norms in the common-norm space):
    exclusive_below: float = 0.1  # r < this: A-only; r > 1 - this: B-only (before the Latent Scaling check)
    shared_within: float = 0.2  # |r - 0.5| <= this: shared (r in [0.3, 0.7]); the rest "lean" to one side
    # Latent Scaling (Minder et al. 2025): a latent is called exclusive only when the other model's best
    # linear readout of its activation (fitted on that model's error and on its reconstruction by the other
    # latents) has a norm below this fraction of the own model's; else it is "exclusive by norm only".
    scaling_max: float = 0.3  # Latent Scaling: at most this many units fit each latent's scale
    min_corr: float = 0.3  # post-hoc: a latent's best-correlated SAE feature counts only at this correlation or above
    controls: bool = True  # also train crosscoders on the random-weights control pairs when their harvests exist
    n_disagreements: int = 10  # disagreements with the post-hoc view listed (with exemplar words) in the record
    # Latent pages: this many latents per group (seeded; 0: none), each group in order, a latent in its first
    # group only: exclusive here but on a post-hoc shared pair; shared here but on a post-hoc unshared pair;
    # the most-used A-only, B-only and exclusive-by-norm-only latents; the most one-sided leaning latents;
    # random shared latents. Each gets word-unit exemplar windows ([exemplars] sizes, counted in words) and,
    # with ``label_latents``, a label through [explain] / [llm] scored by the embedding scorer ([score]).
    latent_pages: int = 4  # latents per group given windows, labels and a page (0: none)
    label_latents: bool = True  # label and score the paged latents ([explain] labeller = "lexical": no LLM)
    checkpoint_every: int = 200  # steps between training checkpoints (resume after an interruption)
    device: str = "auto"  # auto: cuda if available, else cpu

    def validate(self) -> None:
        if self.d_sae < 2 or not 1 <= self.k < self.d_sae:
            raise UserError(f"[crosscode] d_sae = {self.d_sae}, k = {self.k}: need 1 <= k < d_sae")
        if not self.epochs > 0 or self.batch_size < 1:
            raise UserError(f"[crosscode] epochs = {self.epochs} and batch_size = {self.batch_size} must be positive")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"[crosscode] lr = {self.lr} must be positive")
        if not 0.0 < self.eval_fraction < 0.5:
            raise UserError(f"[crosscode] eval_fraction = {self.eval_fraction} must be in (0, 0.5)")
        if not 0.0 < self.exclusive_below < 0.5 or not 0.0 < self.shared_within < 0.5 - self.exclusive_below:
            raise UserError(f"[crosscode] exclusive_below = {self.exclusive_below}, shared_within = {self.shared_within}: "
                            "need 0 < exclusive_below < 0.5 and 0 < shared_within < 0.5 - exclusive_below")
        if not 0.0 < self.scaling_max < 1.0 or not 0.0 <= self.min_corr < 1.0:
            raise UserError(f"[crosscode] scaling_max = {self.scaling_max} must be in (0, 1), min_corr = {self.min_corr} in [0, 1)")
        if self.pooling not in POOLINGS:
            raise UserError(f"[crosscode] pooling = {self.pooling!r} is unknown; use {' or '.join(POOLINGS)}")
        if self.latent_pages < 0:
            raise UserError(f"[crosscode] latent_pages = {self.latent_pages} must be >= 0")
        if self.n_disagreements < 0 or self.checkpoint_every < 1:
            raise UserError("[crosscode] n_disagreements must be >= 0 and checkpoint_every >= 1")
