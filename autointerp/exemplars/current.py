"""Whether a model's exemplars may be read by the stages after them (explain, score).

Labels and scores describe the features whose windows they were made from: exemplars mined from another SAE
than the one now in ``<model>/sae`` (retrained, or replaced) would give labels of other features under the
same ids, so both readers refuse them here, with the command that fixes it.
"""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import DamagedArtifact, UserError
from autointerp.io import file_sha256
from autointerp.rundir.layout import ModelDir
from autointerp.rundir.record import StageRecord


def require_exemplars(model_dir: Path) -> None:
    """Exemplars must exist and come from the SAE now in ``<model>/sae`` (else labels describe other features)."""
    model = ModelDir(model_dir)
    if not model.exemplars.is_file():
        raise UserError(f"no exemplars in {model_dir}; run `autointerp exemplars` first")
    record = StageRecord.load(model.exemplars_record)
    if record is None and model.exemplars_record.is_file():  # damaged: which SAE mined them is unknown
        raise DamagedArtifact(model.exemplars_record, "not a stage record", "re-run `autointerp exemplars --overwrite`")
    if record is not None and model.sae.weights.is_file():
        mined_with = record.inputs.get("sae_sha256")
        if mined_with and mined_with != file_sha256(model.sae.weights):
            raise UserError(f"the exemplars in {model_dir} were mined from a different SAE than {model.sae_dir} holds now; run `autointerp exemplars --overwrite` first")
