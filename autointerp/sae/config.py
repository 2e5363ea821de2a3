"""``[sae]`` and ``[train]``: the SAE's shape (``SAEConfig``) and its optimisation (``TrainConfig``).

One dataclass per TOML section, used directly by the train stage: the section's keys are the fields, with
one set of defaults (those of the default run). Fields marked ``metadata={"toml": False}`` are not user
settings: the train stage fills them from the data (``SAEConfig.for_input``, ``TrainConfig.for_rows``).
Free of heavy imports (torch), so reading a config stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from autointerp.errors import UserError

# Every architecture's name -> whether k sets its sparsity (``SparseAutoencoder.uses_k``): the two facts a
# config is checked with as it is read, kept here because this module may not import torch. The classes in
# autointerp.sae.registry own them: the registry asserts this table matches them, and its ``register`` adds an
# architecture defined elsewhere (a plugin, a test).
ARCHITECTURE_USES_K: dict[str, bool] = {"topk": True, "batchtopk": True, "relu": False, "jumprelu": False}
DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")
B_DEC_INITS = ("geometric_median", "mean", "none")
# SAELens spells ReLU+L1 "standard"; older SAELens TopK SAEs are "standard" + activation_fn_str "topk".
ARCHITECTURE_ALIASES = {"standard": "relu", "batch_topk": "batchtopk"}
NOT_TOML = {"toml": False}  # field metadata: set by the code from the data, never a TOML key


@dataclass
class SAEConfig:
    architecture: str = "topk"  # topk | batchtopk | relu
    expansion_factor: int = 8  # d_sae = expansion_factor * d_model unless d_sae is set
    d_sae: int | None = None  # None: expansion_factor * d_in (set when the input width is known)
    k: int = 32  # actives per token (TopK) or mean actives per token (BatchTopK); unused by relu
    # L1 penalty = l1_coefficient * sum_n sum_i f_ni ||d_i|| / sum_n ||x_n - mean(x)||, i.e. the L1 of
    # the code in units of the mean centred token norm, so it is invariant to input scale.
    l1_coefficient: float | None = None  # None: 0.2 for relu, none for TopK (parity config: TopK + 1e-3)
    # Off by default: Adam's weight updates are scale-free, but shrinking e.g. Gemma's residual (norm ~3000)
    # 130x makes the biases move 130x faster relative to the codes, which killed latents (held-out dead 29%
    # raw vs 35% scaled, FVU 0.035 vs 0.040).
    normalize_activations: bool = False  # true: train on inputs scaled to mean norm sqrt(d_in), folded back at save
    d_in: int = field(default=0, metadata=NOT_TOML)  # input width; 0: not known yet (set by for_input)
    apply_b_dec_to_input: bool = field(default=True, metadata=NOT_TOML)  # SAELens: encode(x - b_dec); some set False
    dtype: str = field(default="float32", metadata=NOT_TOML)
    metadata: dict[str, Any] = field(default_factory=dict, metadata=NOT_TOML)  # model_name, hook_name, context_size, ...

    def __post_init__(self) -> None:
        self.architecture = ARCHITECTURE_ALIASES.get(self.architecture, self.architecture)
        self.dtype = str(self.dtype).removeprefix("torch.")
        if self.d_in and self.d_sae is None:
            self.d_sae = self.expansion_factor * self.d_in
        self.validate()

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURE_USES_K:
            raise UserError(f"[sae] architecture = {self.architecture!r} is an unknown SAE architecture; "
                            f"use one of {sorted(ARCHITECTURE_USES_K)}")
        if self.expansion_factor < 1:
            raise UserError(f"[sae] expansion_factor = {self.expansion_factor} must be >= 1")
        if self.d_in < 0 or (self.d_sae is not None and self.d_sae < 1):
            raise UserError(f"SAE sizes must be positive (d_in={self.d_in}, d_sae={self.d_sae}); fix [sae] d_sae")
        if ARCHITECTURE_USES_K[self.architecture]:
            if self.k < 1:
                raise UserError(f"[sae] k = {self.k} must be >= 1 (active latents per token)")
            if self.d_sae is not None and self.k >= self.d_sae:
                raise UserError(f"[sae] k = {self.k} must be in [1, d_sae={self.d_sae}); lower k or raise d_sae")
        if self.l1_coefficient is not None and self.l1_coefficient < 0:
            raise UserError(f"[sae] l1_coefficient = {self.l1_coefficient} must be >= 0")
        if self.dtype not in DTYPE_NAMES:
            raise UserError(f"unsupported SAE dtype {self.dtype!r}; use one of {sorted(DTYPE_NAMES)}")

    def for_input(self, d_in: int, metadata: dict[str, Any] | None = None) -> SAEConfig:
        """The resolved copy an SAE module is built from: input width known, d_sae set (k checked against it)."""
        return dataclasses.replace(self, d_in=d_in, metadata=dict(metadata or {}))

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


@dataclass
class TrainConfig:
    epochs: float = 2.0  # passes over the training shards (used when total_tokens is unset)
    total_tokens: int | None = None  # None: epochs x training rows (set by for_rows)
    batch_size: int = 1024  # tokens per step
    lr: float | None = None  # None: 2.2e-3 / sqrt(d_sae / 16384) (see TrainConfig.resolved_lr)
    warmup_steps: int | None = None  # linear warmup from 0; None: min(1000, total_steps // 20)
    decay_fraction: float = 0.2  # linear decay to 0 over this final fraction of steps
    b_dec_init: str = "geometric_median"  # geometric_median | mean | none (from the first batch)
    auxk_alpha: float = 1 / 32  # weight of the auxiliary TopK loss that revives dead latents
    # A latent is dead once it has not fired for this many tokens. None: min(10M, total_tokens / 10),
    # so short runs still revive latents (10M is the literature default for long runs).
    dead_tokens_threshold: int | None = None  # a latent silent for this many training tokens counts as dead (the AuxK loss revives it)
    checkpoint_every: int = 200  # steps; a checkpoint is also written at the end
    log_every: int = 50  # steps between history entries
    seed: int = 0  # recorded and checked on resume; seeds the data order and the SAE init
    device: str = "auto"  # auto: cuda if available, else cpu
    n_eval_shards: int = 1  # the last shard(s) of the harvest are held out for evaluation
    ce_contexts: int = 16  # held-out contexts for CE loss recovered (causal LMs; full forward passes); 0 = skip
    # (0.8, 0.99), not Adam's (0.9, 0.999): runs here are 100-1000 steps, where the moments must follow the
    # loss quickly; measured held-out FVU 0.160 -> 0.152 (MiniLM, 97 steps, same lr), 0.0402 -> 0.0383 (Gemma).
    adam_betas: tuple[float, float] = (0.8, 0.99)  # Adam's moment decays (beta1, beta2)

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"[train] batch_size = {self.batch_size} must be >= 1")
        if self.total_tokens is not None and self.total_tokens < self.batch_size:
            raise UserError(f"[train] total_tokens = {self.total_tokens} must be >= batch_size = {self.batch_size}; "
                            "raise total_tokens or lower batch_size")
        if not self.epochs > 0:
            raise UserError(f"[train] epochs = {self.epochs} must be positive")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise UserError(f"[train] decay_fraction = {self.decay_fraction} must be in [0, 1]")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise UserError("[train] checkpoint_every and log_every must be >= 1 step")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"[train] lr = {self.lr} must be positive")
        for name in ("warmup_steps", "dead_tokens_threshold"):
            if (getattr(self, name) or 0) < 0:
                raise UserError(f"[train] {name} = {getattr(self, name)} must be >= 0")
        if self.b_dec_init not in B_DEC_INITS:
            raise UserError(f"[train] b_dec_init = {self.b_dec_init!r} is unknown; use one of {', '.join(B_DEC_INITS)}")
        if self.auxk_alpha < 0 or self.ce_contexts < 0:
            raise UserError("[train] auxk_alpha and ce_contexts must be >= 0")
        if self.n_eval_shards < 1:
            raise UserError(f"[train] n_eval_shards = {self.n_eval_shards} must be >= 1 (held-out shards)")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise UserError(f"[train] adam_betas = {list(self.adam_betas)} must be two numbers in [0, 1)")

    def for_rows(self, train_rows: int) -> TrainConfig:
        """The resolved copy for ``train_rows`` training rows: total_tokens (default epochs x rows) rounded
        down to whole batches, at least one."""
        total = self.total_tokens or int(self.epochs * train_rows)
        return dataclasses.replace(self, total_tokens=max(self.batch_size, total - total % self.batch_size))

    def _total(self) -> int:
        if self.total_tokens is None:
            raise ValueError("TrainConfig.total_tokens is unset; resolve it with for_rows(train_rows)")
        return self.total_tokens

    @property
    def total_steps(self) -> int:
        return self._total() // self.batch_size

    def resolved_lr(self, d_sae: int) -> float:
        """sparsify's 1/sqrt(width) rule with base 2.2e-3 instead of its 2e-4: that base is tuned for runs of
        billions of tokens, runs here are 0.1-10M. Measured (held-out FVU, dead on held-out tokens), raw inputs:
        MiniLM L3, 100k tokens: 0.181/0% at 1e-3 -> 0.138/1.4% at 2.2e-3 (with the betas above);
        Gemma L6, 227k tokens: 0.048/12% -> 0.037/9%. Higher still lowers FVU but kills many more latents."""
        return self.lr if self.lr is not None else 2.2e-3 / math.sqrt(d_sae / 2**14)

    def resolved_warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(1000, self.total_steps // 20)

    def resolved_dead_threshold(self) -> int:
        if self.dead_tokens_threshold is not None:
            return self.dead_tokens_threshold
        return max(min(10_000_000, self._total() // 10), self.batch_size)
