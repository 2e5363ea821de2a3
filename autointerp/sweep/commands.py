"""``autointerp sweep``: the layer sweep as a stage (the work is in ``stage``)."""

from autointerp.stages import Stage

STAGE = Stage(
    name="sweep",
    module="autointerp.sweep.stage",
    help="Which layers correspond: CKA / SVCCA / mutual kNN of every layer of the first two models against every layer of the other.",
    sections=("sweep",),
    reads=("harvest",),  # the corpus; every layer is read afresh
    models=False,
    sae=False,
    checks_sae=False,
    gate="sweep.in_run",  # `autointerp run` sweeps only when in_run; the command always does
    hide=("sweep.in_run",),
)
