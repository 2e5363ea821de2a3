"""``[sweep]``: which layers of two models correspond. Free of heavy imports (read with the config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from autointerp.errors import UserError

METRICS = ("cka", "svcca", "mutual_knn")


@dataclass
class SweepConfig:
    max_units: int = 20_000  # word units of the seeded document subsample (whole documents, until this many)
    seed: int = 0  # document subsample, mutual-kNN subsample and the best cell's null
    metrics: list[str] = field(default_factory=lambda: list(METRICS))  # representation metrics computed for every pair of layers
    knn_max_units: int = 4096  # seeded subsample of units for mutual kNN (quadratic); CKA and SVCCA use every unit
    knn_k: int = 10  # neighbours per unit of mutual kNN
    null_permutations: int = 19  # document derangements for the null of the best cell of each metric (p down to 1/20; 0: none)
    in_run: bool = False  # also run the sweep as a stage of `autointerp run` (before the report, which names the best-aligned layers)

    def validate(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise UserError(f"[sweep] metrics = {self.metrics}: use one or more of {', '.join(METRICS)}")
        if self.max_units < 4:
            raise UserError(f"[sweep] max_units = {self.max_units} must be at least 4 (--max-units)")
        if self.knn_k < 1 or self.knn_max_units <= self.knn_k:
            raise UserError(f"[sweep] knn_k = {self.knn_k} must be >= 1 and below knn_max_units = {self.knn_max_units}")
        if self.null_permutations < 0:
            raise UserError(f"[sweep] null_permutations = {self.null_permutations} must be >= 0")
