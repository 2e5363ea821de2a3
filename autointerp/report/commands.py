"""``autointerp report``: the report stage as its command and ``autointerp run`` see it (the work is in ``stage``)."""

from pathlib import Path
from typing import Optional

from autointerp.stages import Stage, option

STAGE = Stage(
    name="report",
    module="autointerp.report.stage",
    help="Write the markdown report (with plots) and HTML feature pages from a run's artifacts.",
    sections=("report",),
    reads=("harvest", "train", "exemplars", "explain", "score", "compare", "controls", "crosscode", "sweep"),
    models=False,  # every model of the run
    saves_config=False,  # it only reads the run; its own settings are recorded in report.json
    options=(option("out", Optional[Path], "--out", "-o", help="Write report.md, plots/ (and pages/) into this directory "
                    "instead of the run directory, e.g. reports/."),),
)
