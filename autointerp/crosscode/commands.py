"""``autointerp crosscode``: the crosscoder as a stage (the work is in ``stage``)."""

from autointerp.stages import Stage

STAGE = Stage(
    name="crosscode",
    module="autointerp.crosscode.stage",
    help="One dictionary for both models: a BatchTopK crosscoder on word units, shared vs exclusive latents, against the post-hoc matches.",
    sections=("crosscode",),
    reads=("harvest", "compare", "controls"),
    models=False,  # the first two models, and the controls' pairs
    gate="crosscode.enabled",  # `autointerp run` crosscodes only when enabled; the command always does
    hide=("crosscode.enabled",),
)
