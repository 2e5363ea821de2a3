"""Labels in other tools' shapes: export to Delphi / Neuronpedia JSON, and import such files as labels.

Why: labels made elsewhere (a bigger explainer, Neuronpedia's published explanations) can then be scored
and compared here without re-labelling, and ours can be read by those tools.

Shapes (one JSON file per model):

- ``neuronpedia``: the explanation export's list of objects ``{"modelId", "layer", "index", "description",
  "explanationModelName", "typeName"}`` (``layer`` is the SAE id, e.g. ``6-res-jb``; ``index`` a string).
- ``delphi``: Delphi keeps one file per latent, ``<hookpoint>_latent<N>.txt`` holding the explanation as a
  JSON string; the export gathers them into one object ``{"<hookpoint>_latent<N>": "<explanation>"}``.
  The import reads that object, or a directory of Delphi's per-latent files.

An import replaces ``labels.parquet`` (refused over existing labels without ``overwrite``), records the
source file in labels.json, and adds lexical labels from the profile so the three-kind scores still work.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from autointerp.errors import UserError
from autointerp.io import file_sha256, write_json
from autointerp.rundir.layout import ModelDir

FORMATS = ("neuronpedia", "delphi")
_DELPHI_KEY = re.compile(r"^(?P<hook>.*?)_?latent(?P<index>\d+)(?:\.txt)?$")


def export_labels(model_dir: Path, out: Path, fmt: str, *, model_id: str | None = None, sae_id: str | None = None) -> int:
    """Write the model's ok (final) labels to ``out`` in ``fmt``; returns how many were written."""
    from autointerp.explain.labels import read_labels, read_meta

    if fmt not in FORMATS:
        raise UserError(f"unknown label format {fmt!r}; use {' or '.join(FORMATS)}")
    model = ModelDir(Path(model_dir))
    table = read_labels(model.root)
    table = table[(table["status"] == "ok") & table["label"].notna()]
    if table.empty:
        raise UserError(f"{model.labels} has no labels to export; run `autointerp explain` first")
    explainer = read_meta(model.root).get("explainer_model") or "autointerp"
    sae_id = sae_id or f"{model.slug}-sae"
    if fmt == "neuronpedia":
        payload = [{"modelId": model_id or model.slug, "layer": sae_id, "index": str(int(f)), "description": str(label),
                    "explanationModelName": explainer, "typeName": "autointerp"} for f, label in zip(table["feature"], table["label"])]
    else:
        payload = {f"{sae_id}_latent{int(f)}": str(label) for f, label in zip(table["feature"], table["label"])}
    write_json(Path(out), payload)
    return len(table)


def read_external(path: Path, fmt: str | None = None) -> tuple[dict[int, str], str]:
    """{feature: label} and the format, from a Neuronpedia export, a Delphi object or a Delphi directory."""
    path = Path(path)
    if path.is_dir():
        labels = {}
        for file in sorted(path.glob("*latent*.txt")):
            m = _DELPHI_KEY.match(file.name)
            text = file.read_text(encoding="utf-8").strip()
            try:
                text = json.loads(text)
            except json.JSONDecodeError:
                pass
            if m and isinstance(text, str) and text.strip():
                labels[int(m.group("index"))] = text.strip()
        if not labels:
            raise UserError(f"{path} holds no Delphi explanation files (<hookpoint>_latent<N>.txt); point at the explanations folder")
        return labels, "delphi"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read labels from {path}: {exc}; give a Neuronpedia or Delphi explanations JSON file") from exc
    if isinstance(data, list) and (fmt in (None, "neuronpedia")):
        labels = {}
        for item in data:
            if isinstance(item, dict) and "index" in item and isinstance(item.get("description"), str) and item["description"].strip():
                labels.setdefault(int(item["index"]), item["description"].strip())  # the first explanation per latent
        if labels:
            return labels, "neuronpedia"
    if isinstance(data, dict) and (fmt in (None, "delphi")):
        labels = {}
        for key, text in data.items():
            m = _DELPHI_KEY.match(str(key))
            if m and isinstance(text, str) and text.strip():
                labels[int(m.group("index"))] = text.strip()
        if labels:
            return labels, "delphi"
    raise UserError(f"{path} is neither a Neuronpedia explanation export (a list of {{index, description}}) nor a Delphi "
                    f"explanations object ({{\"<hookpoint>_latent<N>\": text}}); convert it to one of them")


def import_labels(model_dir: Path, path: Path, fmt: str | None = None, *, overwrite: bool = False) -> int:
    """Make ``labels.parquet`` from an external file (features beyond the SAE's width are a UserError)."""
    from autointerp.explain.labels import empty_table, merge_rows, read_labels, write_labels, write_meta
    from autointerp.explain.lexical import lexical_label

    model = ModelDir(Path(model_dir))
    if not model.feature_stats.is_file():
        raise UserError(f"no exemplars in {model.root}; run `autointerp exemplars` first (imported labels are scored on them)")
    if not read_labels(model.root).empty and not overwrite:
        raise UserError(f"{model.labels} already holds labels; pass --overwrite to replace them with {path}")
    labels, found = read_external(Path(path), fmt)
    width = len(pd.read_parquet(model.feature_stats, columns=["feature"]))
    beyond = sorted(f for f in labels if not 0 <= f < width)
    if beyond:
        raise UserError(f"{path} labels latent(s) {beyond[:5]} but the SAE of {model.slug} has {width}; is it the file for another SAE?")
    profiles = {}
    if model.lexical_profile.is_file():
        from autointerp.exemplars.profile import read_profiles

        profiles = read_profiles(model.lexical_profile, sorted(labels))
    rows = [{"feature": f, "label": text, "raw": text, "status": "ok", "error": None, "explainer_model": f"imported:{found}",
             "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "label_source": "llm", "llm_label": text,
             "lexical_label": lexical_label(profiles.get(f))} for f, text in sorted(labels.items())]
    write_labels(model.root, merge_rows(empty_table(), rows))
    write_meta(model.root, {"explain_identity": {"settings": {"imported": found, "sha256": file_sha256(Path(path)) if Path(path).is_file() else str(path)},
                                                 "inputs": {}}, "scorers": {}, "explainer_model": f"imported:{found}"})
    return len(rows)
