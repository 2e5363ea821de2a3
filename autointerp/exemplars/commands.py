"""``autointerp exemplars``: the exemplars stage as its command and ``autointerp run`` see it (work in ``stage``)."""

from autointerp.stages import Stage

STAGE = Stage(
    name="exemplars",
    module="autointerp.exemplars.stage",
    help="Mine per-feature exemplars (top, quantile and random windows, train/test split) with the trained SAEs.",
    sections=("exemplars",),
    reads=("harvest", "train"),
)
