"""``[controls]``: the same-model ceiling and the random-weights floor. Free of heavy imports."""

from __future__ import annotations

from dataclasses import dataclass

from autointerp.errors import UserError

FLOOR_CHOICES = ("first", "last", "all", "none")

# name -> "module:Class" (a ``controls.base.Control``), imported when the controls stage runs; the order is the
# order they run in and the order of their rows. ``controls.registry.register_control`` adds one from outside.
CONTROL_REGISTRY: dict[str, str | type] = {
    "ceiling": "autointerp.controls.ceiling:SeedCeiling",
    "floor": "autointerp.controls.floor:RandomWeightsFloor",
}


@dataclass
class ControlsConfig:
    ceiling: bool = True  # per model, a second SAE (same harvest, same settings, another seed) matched against the first: the same-model ceiling
    ceiling_seed: int = 1  # the second SAE's seed is [train] seed + this
    floor: str = "last"  # models that get a random-weights control (same architecture and tokenizer, fresh weights), each matched against the other real model(s): "first", "last", "all", "none", or a model's name
    floor_seed: int = 0  # seed of the random initialisation
    floor_epochs: float = 1.0  # passes of the floor's SAE over its harvest (ignored when [train] total_tokens is set); on the embedded default 1 epoch gave 32.6% of Gemma's features shared against 32.2% with 2 (stable), for half the training
    floor_representation: bool = True  # the raw-activation baselines (CKA, SVCCA, mutual kNN with their nulls) for the floor pairs too

    def validate(self) -> None:
        if self.ceiling_seed == 0:
            raise UserError("[controls] ceiling_seed = 0 would train the same SAE twice; use another offset, e.g. 1")
        if not self.floor_epochs > 0:
            raise UserError(f"[controls] floor_epochs = {self.floor_epochs} must be positive (e.g. [train] epochs, the real SAEs' setting)")
        if not self.floor.strip():
            raise UserError(f"[controls] floor = \"\": use one of {', '.join(FLOOR_CHOICES)} or a model's name")

    def floor_models(self, slugs: list[str]) -> list[str]:
        """The models (by directory name) that get a random-weights control."""
        if self.floor == "none" or len(slugs) < 2:
            return []
        if self.floor == "all":
            return list(slugs)
        if self.floor in ("first", "last"):
            return [slugs[0] if self.floor == "first" else slugs[-1]]
        if self.floor not in slugs:
            raise UserError(f"[controls] floor = {self.floor!r} is not a model of this run ({', '.join(slugs)}); "
                            f"use one of {', '.join(FLOOR_CHOICES)} or one of those names")
        return [self.floor]
