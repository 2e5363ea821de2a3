"""Whether the run already holds the SAE a config names: the train stage's record says which SAE a model's
``sae/`` directory holds (trained here, or a pretrained reference installed), and ``check_run_saes`` holds it
against the config (``sae = ...`` or ``--sae``) so stages never mix two SAEs' outputs.

What a reference names (files, format, layer/site) is read by ``autointerp.sae.pretrained.formats``.
"""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import UserError
from autointerp.rundir.layout import RunDir, SAEFiles
from autointerp.rundir.record import StageRecord
from autointerp.sae.pretrained.formats import describe, same_reference


def installed_reference(sae: SAEFiles) -> tuple[str, str | None]:
    """What the run's SAE of a model is, from the train stage's record: ("none", None) before ``autointerp
    train``, ("trained", None) for one trained here, ("pretrained", reference) for one installed."""
    record = StageRecord.load(sae.record)
    if record is None:
        return "none", None
    ref = record.settings.get("pretrained_sae")
    return ("pretrained", str(ref)) if ref is not None else ("trained", None)


def check_run_saes(run_path: Path, entries: list, stage: str, *, overwrite: bool = False) -> None:
    """The SAE each model's config (``sae = ...`` or ``--sae``) names vs the SAE the run already holds, so a
    stage never mixes outputs made with one SAE and outputs made with another; one line when they differ.

    ``stage``: "harvest" and "train" (also ``autointerp run``) may replace the SAE with ``--overwrite``; the
    stages after train ("use") read the installed SAE, so a config without ``sae`` adopts the installed
    reference (the controls then know it is pretrained) and one that names another SAE is refused."""
    run = RunDir(run_path)
    for entry in entries:
        if entry.random:
            continue
        kind, old = installed_reference(run.model(entry.slug).sae)
        sae_dir, new = run.model(entry.slug).sae.root, (None if entry.sae is None else describe(entry.sae))
        switch = {"use": f"run `autointerp train --model {entry.slug} --sae {new} --overwrite` to replace it (later "
                         "stages then redo their work), or use another --run-dir",
                  "harvest": "pass --overwrite here and to `autointerp train` to replace it, or use another --run-dir",
                  }.get(stage, "pass --overwrite to replace it (later stages then redo their work), or use another --run-dir")
        if new is None:
            if kind == "pretrained" and stage == "use":
                entry.sae = old
            elif kind == "pretrained" and stage == "train" and not overwrite:
                raise UserError(f"{entry.slug}'s SAE in {sae_dir} is the pretrained {old}, but this config trains one "
                                f"(no sae = ... for it); pass --sae {entry.slug}={old} to keep it, or --overwrite to train one")
            continue
        if overwrite and stage != "use":
            continue
        if kind == "none" and stage == "use":
            raise UserError(f"{entry.slug} has no SAE in {sae_dir} yet; run `autointerp train --model {entry.slug} "
                            f"--sae {new}` (or `autointerp run`) first")
        if kind == "trained":
            raise UserError(f"{entry.slug}'s SAE in {sae_dir} was trained here, not {new}; {switch}")
        if kind == "pretrained" and not same_reference(old, entry.sae):
            raise UserError(f"{entry.slug}'s SAE in {sae_dir} is {old} (installed by `autointerp train`), not {new}; {switch}")
