"""The window kinds and splits of ``exemplars.parquet``, free of heavy imports (the scorers and the report
read them without loading torch).

- ``top`` / ``quantile``: activating windows (the feature fires in them);
- ``random``: windows from contexts where the feature never fired;
- ``hard_negative``: held-out windows holding one of the feature's top words where it does not fire
  (``autointerp.exemplars.hard_negatives``). Not activating, although its kind is not "random": code that
  tells activating windows from negatives must test ``kind in ACTIVATING_KINDS``.
"""

from __future__ import annotations

HARD_NEGATIVE = "hard_negative"
KINDS = ("top", "quantile", "random", HARD_NEGATIVE)  # the miner stores kind i as KINDS[i]
SPLITS = ("train", "test")
ACTIVATING_KINDS = ("top", "quantile")
