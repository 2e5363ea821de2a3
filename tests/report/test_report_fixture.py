"""The report tests' fixture run (helpers/runs.py's ``make_report_run``) honours the contract the report validates."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from autointerp.errors import UserError
from autointerp.exemplars.mine import EXEMPLAR_SCHEMA
from autointerp.rundir.layout import RunDir
from helpers.report_run import SCORERS, make_report_run


# ------------------------------------------------------------------ the fixture honours the contract
def test_fixture_loads_as_contract(tmp_path):
    from autointerp.report.artifacts import load_run_inputs

    run = load_run_inputs(make_report_run(tmp_path))
    assert [m.slug for m in run.models] == ["alpha", "beta"]
    assert all(not m.missing for m in run.models) and not run.pairs[0].missing
    assert run.models[0].scorers == [s for s in ("simulation", "detection", "fuzzing", "embedding") if s in SCORERS]
    assert pq.read_schema(run.models[0].exemplars_path).equals(EXEMPLAR_SCHEMA)


def test_contract_violation_names_file_and_column(tmp_path):
    from autointerp.report.artifacts import load_run_inputs

    cfg = make_report_run(tmp_path)
    path = RunDir(cfg.run_path).pair("alpha", "beta").matches
    pd.read_parquet(path).rename(columns={"combined_rank": "rank"}).to_parquet(path, index=False)
    with pytest.raises(UserError, match=r"matches\.parquet lacks column\(s\) combined_rank"):
        load_run_inputs(cfg)
