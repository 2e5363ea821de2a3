"""The label exports against the real eai-delphi and neuronpedia packages, both directions.

(a) every label ``export-labels --format delphi`` writes is found by delphi's own ``explanation_loader`` (and its
    ``--explainer none`` reader) with no flags, byte for byte what delphi's own writer makes of the same text;
(b) every record ``export-labels --format neuronpedia`` writes is accepted by neuronpedia's
    ``Explanation.from_np_db_json``, its ``Explanation`` dataclass and its pydantic ``NPFeature`` models, and
    scripts/neuronpedia_upload.py turns them into the package's own ``upload_batch`` payload (HTTP captured);
    the old record shape is kept as a control that these checks do fail;
(c) explanation files written by delphi's own explainer + writer import here, the parse failure as a failed
    row, and a folder mixing two modules needs ``--hookpoint``.

The two packages live in a separate venv built on demand by ``scripts/interop_env.sh`` (``.venv-interop/``,
self-gitignored; ~3 min on a fresh machine, instant once built) without their GPU dependencies; all their
calls happen in one ``scripts/interop_probe.py`` subprocess. Skipped only when the package registry cannot
serve the two packages; any other build failure fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autointerp.cli import app
from autointerp.explain.labels import read_labels
from helpers.runs import FAILED, LABELS, LEXICAL, MODELS, labelled_run
from helpers import ROOT, peer_envs

pytestmark = pytest.mark.slow

PROBE = ROOT / "scripts" / "interop_probe.py"
VENV = peer_envs.venv("interop")
SPECS = ("eai-delphi==0.1.3", "neuronpedia==1.2.1")
SLUG = "gemma-3-270m"
# delphi's explainer answers (what an LLM would say) -> the explanation delphi parses out of them
ANSWERS = {0: "[EXPLANATION]: lava and volcanoes", 1: "I am not sure what this latent does.",
           2: '[EXPLANATION]: drinks — "coffee", café', 3: "Reasoning first.\n[EXPLANATION]: soldiers\nand ships"}
PARSED = {0: "lava and volcanoes", 2: 'drinks — "coffee", café', 3: "soldiers\nand ships"}
runner = CliRunner()


def _registry_problem(tmp: Path) -> str | None:
    """Why the registry cannot serve the two packages (None when it can: a build failure is then real)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(tmp), *SPECS],
                          check=False, capture_output=True, text=True, timeout=300)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["pip download failed"])[-1]


@pytest.fixture(scope="module")
def interop_python(request, tmp_path_factory) -> Path:
    """Build (or reuse) the delphi + neuronpedia venv (started in the background when the session collected
    these tests: ``helpers.peer_envs``); skip only when the registry is unreachable."""
    build = peer_envs.wait("interop")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[interop env setup {build.seconds:.1f}s, waited {build.waited:.1f}s] " + " | ".join(build.stdout.strip().splitlines()[-2:]))
    if build.returncode != 0:
        problem = _registry_problem(tmp_path_factory.mktemp("registry"))
        if problem is not None:
            pytest.skip(f"the package registry cannot serve {' and '.join(SPECS)}: {problem}")
    assert build.returncode == 0, f"scripts/interop_env.sh failed ({build.seconds:.0f}s):\n{build.stdout[-2000:]}\n{build.stderr[-4000:]}"
    return VENV / "bin" / "python"


def _cli(*args) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def compat(interop_python, tmp_path_factory) -> dict[str, Any]:
    """Export both models' labels both ways, then run every delphi / neuronpedia check in one probe."""
    work = tmp_path_factory.mktemp("interop_compat")
    run = labelled_run(work)
    for fmt, out in (("delphi", work / "results"), ("neuronpedia", work / "np")):
        result = _cli("export-labels", out, "--run-dir", run, "--format", fmt)
        assert result.exit_code == 0, result.output
    legacy = work / "legacy.json"  # the shape autointerp wrote before: the control that the checks can fail
    legacy.write_text(json.dumps([{"modelId": SLUG, "layer": "gemma-3-270m-sae", "index": "0", "description": "x",
                                   "explanationModelName": "m", "typeName": "autointerp"}]))
    unlabelled = FAILED[0]
    plan = {
        "delphi_read": [{"dir": str(work / "results" / slug / "explanations"),
                         "latents": [[module, f] for f in [*LABELS, unlabelled]]} for slug, (_, _, _, module) in MODELS.items()],
        "delphi_write": [{"dir": str(work / "delphi-run" / "explanations"), "module": "layers.6", "answers": list(ANSWERS.items())},
                         {"dir": str(work / "delphi-mixed" / "explanations"), "module": "layers.6", "answers": list(ANSWERS.items())},
                         {"dir": str(work / "delphi-mixed" / "explanations"), "module": "layers.8", "answers": [[0, ANSWERS[0]]]}],
        "delphi_dump": [{"dir": str(work / "dump"), "items": [["layers.6", f, text] for f, text in LABELS.items()]}],
        "neuronpedia": [{"file": str(work / "np" / f"{slug}.json")} for slug in MODELS] + [{"file": str(legacy)}],
    }
    (work / "plan.json").write_text(json.dumps(plan))
    proc = subprocess.run([str(interop_python), str(PROBE), str(work / "plan.json")], check=False, capture_output=True,
                          text=True, timeout=600, cwd=work)
    assert proc.returncode == 0, f"interop_probe.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"interop probe: {results['versions']}")
    assert results["versions"]["eai-delphi"] == "0.1.3" and results["versions"]["neuronpedia"] == "1.2.1"
    return {"work": work, "run": run, "results": results}


def test_delphi_loader_reads_every_exported_label(compat):
    for (slug, (_, _, _, module)), found in zip(MODELS.items(), compat["results"]["delphi_read"]):
        by_latent = {row["latent"]: row for row in found}
        for f, text in LABELS.items():
            row = by_latent[f"{module}_latent{f}"]
            assert row["loader"] == text and row["none_explainer"] == text, (slug, row)
        missing = by_latent[f"{module}_latent{FAILED[0]}"]  # a failed label is not exported: delphi's miss
        assert missing["loader"] == "No explanation found" and missing["none_explainer"].startswith("ERROR FileNotFoundError")
    ours, theirs = compat["work"] / "results" / SLUG / "explanations", compat["work"] / "dump"
    for f in LABELS:  # the same bytes as delphi's own writer (orjson.dumps) makes of the same text
        name = f"layers.6_latent{f}.txt"
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def test_neuronpedia_accepts_every_exported_record(compat):
    *ours, legacy = compat["results"]["neuronpedia"]
    for (slug, (_, _, layer, _)), checks in zip(MODELS.items(), ours):
        source = f"{layer}-autointerp-res-16k"
        expected = [{"modelId": slug, "source": source, "index": f, "text": text, "method": "autointerp",
                     "explainer_model": "lexical" if f in LEXICAL else "gemma-3-1b-it"} for f, text in sorted(LABELS.items())]
        for check in ("from_np_db_json", "dataclass"):
            assert [r.get("value") for r in checks[check]] == expected, (slug, check, checks[check][:2])
        for model in ("common", "util", "steer"):
            assert [r.get("value") for r in checks[f"np_feature_{model}"]] == [
                {"model": slug, "source": source, "index": f} for f in sorted(LABELS)], (slug, model)
        upload = checks["upload"]
        assert upload["ok"], upload
        new_set, batch = upload["requests"]
        assert (new_set["endpoint"], new_set["uri"], new_set["json"]["name"], new_set["json"]["modelId"]) == (
            "source-set", "new", "autointerp-res-16k", slug)
        body = batch["json"]
        assert (batch["endpoint"], batch["uri"], body["modelId"], body["source"]) == ("feature", "upload-batch", slug, source)
        assert [(x["index"], x["explanations"]) for x in body["features"]] == [
            (e["index"], [{"text": e["text"], "methodName": "autointerp", "modelName": e["explainer_model"]}]) for e in expected]
    # the control: the old shape is refused by the same checks (so they are not vacuous)
    assert legacy["from_np_db_json"][0] == {"ok": False, "error": "KeyError: 'source'"}
    assert not legacy["np_feature_common"][0]["ok"] and "model" in legacy["np_feature_common"][0]["error"]


def test_files_written_by_delphi_import_with_failures_refused(compat):
    assert compat["results"]["delphi_write"][0] == {f"layers.6_latent{f}": PARSED.get(f, "Explanation could not be parsed.")
                                                    for f in ANSWERS}
    run, work = compat["run"], compat["work"]
    result = _cli("import-labels", work / "delphi-run", "--run-dir", run, "--model", SLUG, "--overwrite")
    assert result.exit_code == 0, result.output
    table = read_labels(run / SLUG).set_index("feature")
    assert table.loc[table["status"] == "ok", "label"].to_dict() == PARSED
    assert table.loc[1, "status"] == "failed" and "Explanation could not be parsed." in table.loc[1, "error"]
    assert table["explainer_model"].eq("imported:delphi").all()
    mixed = _cli("import-labels", work / "delphi-mixed" / "explanations", "--run-dir", run, "--model", SLUG, "--overwrite")
    assert mixed.exit_code == 2 and "layers.6 (4), layers.8 (1)" in mixed.output and "--hookpoint" in mixed.output
    chosen = _cli("import-labels", work / "delphi-mixed", "--run-dir", run, "--model", SLUG, "--overwrite", "--hookpoint", "layers.6")
    assert chosen.exit_code == 0, chosen.output
    assert read_labels(run / SLUG).set_index("feature").loc[[0, 2, 3], "label"].to_dict() == PARSED
