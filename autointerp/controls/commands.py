"""``autointerp controls``: the same-model ceiling and random-weights floor as a stage (the work is in ``stage``)."""

from autointerp.stages import Stage

STAGE = Stage(
    name="controls",
    module="autointerp.controls.stage",
    help="What the sharing fraction is read against: each model vs itself (other SAE seed) and vs random weights.",
    sections=("controls",),
    reads=("harvest", "train", "compare"),
    models=False,  # the controls of every configured model (a pretrained SAE gets no same-model ceiling)
)
