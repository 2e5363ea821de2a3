"""Label export / import in delphi's and Neuronpedia's own layouts, through the CLI (no external packages:
tests/explain/test_interop_compat.py runs the same files through the real eai-delphi and neuronpedia)."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from autointerp.cli import app
from autointerp.explain.interop import RunHook
from autointerp.explain.labels import read_labels
from autointerp.io import write_json
from autointerp.rundir.layout import ModelDir
from helpers.runs import FAILED, LABELS, LEXICAL, MODELS, add_hook, add_labels, labelled_run

runner = CliRunner()
SLUG = "gemma-3-270m"


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "\n" not in text and text.startswith("error:"), text
    for needle in needles:
        assert needle in text, text


def test_delphi_module_is_the_path_in_the_base_model_delphi_loads(tmp_path):
    def module(hook, architecture=None):
        path = None
        if architecture:
            path = tmp_path / architecture
            write_json(path / "config.json", {"architectures": [architecture]})
        return RunHook(hook, 6, "resid", str(path) if path else None, None, 16384).delphi_module

    assert module("model.layers.6", "Gemma3ForCausalLM") == "layers.6"  # AutoModel -> Gemma3TextModel.layers
    assert module("model.layers.6.mlp", "Gemma3ForCausalLM") == "layers.6.mlp"
    assert module("encoder.layer.3", "BertModel") == "encoder.layer.3"  # loaded as the base model already
    assert module("transformer.h.6", "GPT2LMHeadModel") == "h.6"
    assert module("gpt_neox.layers.2", "GPTNeoXForCausalLM") == "layers.2"
    assert module("model.layers.2", "NotInTransformersForCausalLM") == "layers.2"  # unknown class: the usual wrapper name
    assert module("model.layers.6") == "layers.6" and module("encoder.layer.3") == "encoder.layer.3"  # no config.json
    assert RunHook(None, None, "resid", None, None, None).delphi_module is None


def test_source_set_names_the_sae_as_neuronpedia_does():
    hook = lambda site, fmt, width: RunHook("model.layers.6", 6, site, None, fmt, width).source_set
    assert hook("resid", None, 16384) == "autointerp-res-16k"
    assert hook("resid", None, 5120) == "autointerp-res-5k"
    assert hook("mlp", "gemma_scope", 65536) == "gemmascope-mlp-64k"
    assert hook("resid", "sparsify", 3000) == "sparsify-res-3000"


def test_delphi_export_writes_one_file_per_latent_named_by_module(tmp_path):
    run = labelled_run(tmp_path)
    out = tmp_path / "results"
    result = _cli("export-labels", out, "--run-dir", run, "--format", "delphi")
    assert result.exit_code == 0, result.output
    for slug, (_, _, _, module) in MODELS.items():
        folder = out / slug / "explanations"
        files = {p.name: p for p in folder.iterdir()}
        assert set(files) == {f"{module}_latent{f}.txt" for f in LABELS}  # failed labels are not exported
        for f, text in LABELS.items():
            data = files[f"{module}_latent{f}.txt"].read_bytes()
            assert json.loads(data) == text and data == json.dumps(text, ensure_ascii=False).encode()
    # one model into delphi's run folder; a second export is refused, --overwrite replaces (and drops stale latents)
    args = ["export-labels", tmp_path / "one", "--run-dir", run, "--model", SLUG, "--format", "delphi"]
    assert _cli(*args).exit_code == 0
    _one_line_error(_cli(*args), "already holds 6 delphi explanations for layers.6", "--overwrite")
    add_labels(run, SLUG, {0: "only this one"})
    assert _cli(*args, "--overwrite").exit_code == 0
    assert [p.name for p in (tmp_path / "one" / "explanations").iterdir()] == ["layers.6_latent0.txt"]
    # straight into an explanations folder, with the module given by hand
    assert _cli("export-labels", tmp_path / "x" / "explanations", "--run-dir", run, "--model", SLUG, "--format", "delphi",
                "--hookpoint", "layers.9").exit_code == 0
    assert [p.name for p in (tmp_path / "x" / "explanations").iterdir()] == ["layers.9_latent0.txt"]


def test_delphi_export_without_a_recorded_hook_asks_for_one(tmp_path):
    run = labelled_run(tmp_path)
    ModelDir(run / SLUG).manifest.unlink()
    ModelDir(run / SLUG).sae.cfg.unlink()
    _one_line_error(_cli("export-labels", tmp_path / "r", "--run-dir", run, "--model", SLUG, "--format", "delphi"), "--hookpoint")


def test_neuronpedia_export_records_carry_every_field_its_readers_need(tmp_path):
    run = labelled_run(tmp_path)
    out = tmp_path / "np.json"
    assert _cli("export-labels", out, "--run-dir", run, "--model", SLUG, "--format", "neuronpedia").exit_code == 0
    records = json.loads(out.read_text())
    assert [r["index"] for r in records] == sorted(LABELS)
    for r in records:
        text = LABELS[r["index"]]
        explainer = "lexical" if r["index"] in LEXICAL else "gemma-3-1b-it"
        assert r == {"modelId": SLUG, "model": SLUG, "source": "6-autointerp-res-16k", "layer": "6-autointerp-res-16k",
                     "index": r["index"], "description": text, "text": text, "typeName": "autointerp", "method": "autointerp",
                     "explanationModelName": explainer, "explainer_model": explainer}
    base = ["export-labels", out, "--run-dir", run, "--model", SLUG, "--format", "neuronpedia"]
    assert _cli(*base, "--source-set", "ai-res-16k", "--model-id", "gemma-3-270m-it", "--method", "np_max-act").exit_code == 0
    r = json.loads(out.read_text())[0]
    assert (r["source"], r["modelId"], r["model"], r["typeName"]) == ("6-ai-res-16k", "gemma-3-270m-it", "gemma-3-270m-it", "np_max-act")
    assert _cli(*base, "--hookpoint", "6-res-jb").exit_code == 0 and json.loads(out.read_text())[0]["source"] == "6-res-jb"
    _one_line_error(_cli(*base, "--hookpoint", "6-res-jb", "--source-set", "x"), "not both")
    _one_line_error(_cli(*base, "--source-set", "bad set/name"), "<layer>-<source set>")
    # several models: one <model>.json each in the folder, each with its own layer
    assert _cli("export-labels", tmp_path / "np", "--run-dir", run, "--format", "neuronpedia").exit_code == 0
    assert json.loads((tmp_path / "np" / "minilm-l6.json").read_text())[0]["source"] == "3-autointerp-res-16k"
    _one_line_error(_cli("export-labels", tmp_path / "np", "--run-dir", run, "--format", "neuronpedia", "--model-id", "x"), "--model")


def _delphi_folder(root, files: dict[str, bytes]):
    folder = root / "explanations"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return root


def _import(run, source, *extra):
    return _cli("import-labels", source, "--run-dir", run, "--model", SLUG, "--overwrite", *extra)


def test_import_records_failed_and_placeholder_explanations_as_failed_rows(tmp_path):
    run = labelled_run(tmp_path, (SLUG,))
    source = _delphi_folder(tmp_path / "delphi", {
        "layers.6_latent0.txt": b'"lava and volcanoes"', "layers.6_latent1.txt": b'"Explanation could not be parsed."',
        "layers.6_latent2.txt": b'"  "', "layers.6_latent3.txt": b"plain text, not JSON", "notes.txt": b"ignored",
    })
    result = _import(run, source)
    assert result.exit_code == 0, result.output
    assert "1 labels" in result.output and "3 refused" in result.output
    table = read_labels(run / SLUG).set_index("feature")
    assert table.loc[0, "status"] == "ok" and table.loc[0, "label"] == "lava and volcanoes"
    assert table.loc[[1, 2, 3], "status"].eq("failed").all() and table.loc[[1, 2, 3], "label"].isna().all()
    assert "failure placeholder" in table.loc[1, "error"] and "empty" in table.loc[2, "error"]
    assert "not a JSON string" in table.loc[3, "error"] and table.loc[3, "raw"] == "plain text, not JSON"
    # nothing usable at all: refused, nothing written
    only_failed = _delphi_folder(tmp_path / "bad", {"layers.6_latent1.txt": b'"No explanation found"', "layers.6_latent2.txt": b'""'})
    _one_line_error(_import(run, only_failed), "no usable label", "all 2 explanations failed")
    assert read_labels(run / SLUG).set_index("feature").loc[0, "label"] == "lava and volcanoes"


def test_import_of_mixed_hookpoints_needs_a_choice(tmp_path):
    run = labelled_run(tmp_path, (SLUG,))
    source = _delphi_folder(tmp_path / "delphi", {
        "layers.6_latent0.txt": b'"six zero"', "layers.6_latent1.txt": b'"six one"',
        "layers.8_latent0.txt": b'"eight zero"', "layers.8_latent2.txt": b'"eight two"', "layers.8_latent3.txt": b'"eight three"',
    })
    _one_line_error(_import(run, source), "mixes 2 hookpoints", "layers.6 (2)", "layers.8 (3)", "--hookpoint")
    _one_line_error(_import(run, source, "--hookpoint", "layers.9"), "no labels for hookpoint 'layers.9'", "layers.6 (2)")
    assert _import(run, source, "--hookpoint", "layers.6").exit_code == 0
    assert read_labels(run / SLUG).set_index("feature")["label"].to_dict() == {0: "six zero", 1: "six one"}
    # the only hookpoint, but not the run's: most likely another SAE's labels, imported only when named
    eight = _delphi_folder(tmp_path / "eight", {"layers.8_latent0.txt": b'"eight zero"'})
    _one_line_error(_import(run, eight), "labels layers.8", "module layers.6", "--hookpoint layers.8")
    assert _import(run, eight, "--hookpoint", "layers.8").exit_code == 0


def test_import_reads_neuronpedia_public_export_batches(tmp_path):
    run = labelled_run(tmp_path, (SLUG,))
    folder = tmp_path / "np-export"
    folder.mkdir()
    records = [{"modelId": SLUG, "layer": "6-res-jb", "index": "1", "description": "coffee and tea", "typeName": "oai"},
               {"modelId": SLUG, "layer": "6-res-jb", "index": "1", "description": "a second explanation", "typeName": "np"},
               {"modelId": SLUG, "layer": "6-res-jb", "index": "2", "description": "", "typeName": "oai"},
               {"modelId": SLUG, "layer": "6-res-jb", "index": "3", "description": None, "typeName": "oai"}]
    with gzip.open(folder / "batch-0.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    result = _import(run, folder)
    assert result.exit_code == 0, result.output
    table = read_labels(run / SLUG).set_index("feature")
    assert table.loc[1, "label"] == "coffee and tea" and table.loc[1, "explainer_model"] == "imported:neuronpedia"
    assert table.loc[[2, 3], "status"].eq("failed").all() and "empty" in table.loc[2, "error"] and "no explanation" in table.loc[3, "error"]
    # another layer's source: refused unless named; a list mixing sources needs --hookpoint
    other = tmp_path / "l20.json"
    other.write_text(json.dumps([{"modelId": SLUG, "source": "20-gemmascope-res-16k", "index": 0, "description": "x"}]))
    _one_line_error(_import(run, other), "layer 6", "--hookpoint 20-gemmascope-res-16k")
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([{"source": "6-a", "index": 0, "description": "x"}, {"source": "6-b", "index": 0, "description": "y"}]))
    _one_line_error(_import(run, mixed), "6-a (1), 6-b (1)")
    assert _import(run, mixed, "--hookpoint", "6-b").exit_code == 0
    assert read_labels(run / SLUG).set_index("feature").loc[0, "label"] == "y"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"source": "6-a", "description": "x"}]))
    _one_line_error(_import(run, broken), "record 0 has no latent index")
    _one_line_error(_import(run, mixed, "--format", "delphi"), "holds neuronpedia labels, not delphi")


@pytest.mark.parametrize("fmt", ["delphi", "neuronpedia"])
def test_export_then_import_round_trips(tmp_path, fmt):
    run = labelled_run(tmp_path, (SLUG,))
    add_labels(run, SLUG, {f: t for f, t in LABELS.items() if f < 4})  # make_run's SAE has 4 features
    out = tmp_path / ("results" if fmt == "delphi" else "np.json")
    assert _cli("export-labels", out, "--run-dir", run, "--model", SLUG, "--format", fmt).exit_code == 0
    result = _import(run, out)
    assert result.exit_code == 0, result.output
    table = read_labels(run / SLUG).set_index("feature")
    assert table["label"].to_dict() == {f: t.strip() for f, t in LABELS.items() if f < 4} and table["status"].eq("ok").all()
    assert not set(FAILED) & set(table.index)


def test_hook_falls_back_to_the_sae_config(tmp_path):
    run = labelled_run(tmp_path, (SLUG,))
    add_hook(run, SLUG, hook="model.layers.4.mlp", architecture=None, layer=4, d_sae=4096, site="mlp", sae_format="gemma_scope")
    ModelDir(run / SLUG).manifest.unlink()  # a pretrained SAE's cfg.json still says where it reads
    out = tmp_path / "np.json"
    assert _cli("export-labels", out, "--run-dir", run, "--model", SLUG, "--format", "neuronpedia").exit_code == 0
    assert json.loads(out.read_text())[0]["source"] == "4-gemmascope-mlp-4k"
    assert _cli("export-labels", tmp_path / "d", "--run-dir", run, "--model", SLUG, "--format", "delphi").exit_code == 0
    assert (tmp_path / "d" / "explanations" / "layers.4.mlp_latent0.txt").is_file()
