"""``autointerp train``: the train stage as its command and ``autointerp run`` see it (the work is in ``stage``)."""

from autointerp.stages import Stage

STAGE = Stage(
    name="train",
    module="autointerp.sae.stage",
    help="Train one SAE per model on its harvested activations (resumable; prints metrics); a model with a pretrained "
         "SAE (`sae = ...` or --sae) gets that one installed instead, checked against its harvest.",
    sections=("sae", "train"),
    reads=("harvest",),
    checks_sae=False,  # train installs the SAE --sae names (checked against the run's in the stage)
    model_help="Train only these configured models (name or spec).",
)
