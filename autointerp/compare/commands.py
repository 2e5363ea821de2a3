"""``autointerp compare``: the compare stage as its command and ``autointerp run`` see it (the work is in ``stage``)."""

from autointerp.stages import Stage

STAGE = Stage(
    name="compare",
    module="autointerp.compare.stage",
    help="Match features across models by activation correlation (with a null) and by label similarity.",
    sections=("compare",),
    reads=("harvest", "train", "exemplars"),  # labels too when explain ran (label matching); an activation-only compare runs before explain
    names={"compare.null_alpha": ("--null-alpha", "--alpha")},
)
