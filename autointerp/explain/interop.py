"""Labels in other tools' own layouts: export for delphi / Neuronpedia, import what they (or others) wrote.

Why: labels made elsewhere (a bigger explainer, delphi's pipeline, Neuronpedia's published explanations) can
then be scored and compared here without re-labelling, and ours can be scored by delphi or shown on
Neuronpedia. Each layout is the one the tool's own code reads and writes; tests/explain/test_interop_compat.py checks
them against the real eai-delphi and neuronpedia packages.

- ``delphi``: one file per latent, ``explanations/<module>_latent<N>.txt``, holding the explanation as a JSON
  string (delphi writes it with ``orjson.dumps``; ``explanation_loader`` and ``--explainer none`` read it back).
  ``<module>`` is the hooked module's path in the *base* model delphi loads with ``AutoModel``: ``layers.6``
  for Gemma 3, ``encoder.layer.3`` for BERT-style models. autointerp records the hook in the model it loads
  (``model.layers.6`` inside Gemma's causal-LM wrapper), so the wrapper's ``base_model_prefix`` is dropped.
- ``neuronpedia``: a JSON list, one record per label, read as it is by neuronpedia's
  ``Explanation.from_np_db_json`` (``modelId``, ``source``, ``index``, ``description``, ``typeName``,
  ``explanationModelName``), its pydantic ``NPFeature`` (``model``, ``source``, ``index``), its ``Explanation``
  dataclass (``text``, ``method``, ``explainer_model``: what ``upload_batch`` sends) and the public
  explanation export (``layer`` = the source id). A source is ``<layer>-<source set>`` (``20-gemmascope-res-16k``);
  the default set says the SAE: ``<autointerp|gemmascope|llamascope|sparsify|saelens>-<res|mlp>-<width>``.

An import is strict (autointerp.explain.interop_read): failed or placeholder explanations become failed rows
with the reason, never labels; a source mixing hookpoints, or holding another hookpoint than the run's, needs
``--hookpoint``. It replaces ``labels.parquet`` (refused over existing labels without ``overwrite``), records
the source in labels.json and adds lexical labels from the profile so the three-kind scores still work.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from autointerp.errors import UserError
from autointerp.explain.interop_read import DELPHI_NAME, FORMATS, External, read_external
from autointerp.io import atomic_path, file_sha256, parquet_errors, read_parquet, write_json
from autointerp.rundir.layout import ModelDir

__all__ = ["FORMATS", "RunHook", "export_labels", "import_labels", "read_external", "run_hook"]

_CAUSAL = ("ForCausalLM", "LMHeadModel")  # as autointerp.models.load decides to load AutoModelForCausalLM
_USUAL_PREFIXES = ("model", "transformer", "gpt_neox")  # causal-LM wrappers' base_model_prefix, when config.json is gone
_SET_PREFIX = {"gemma_scope": "gemmascope", "llama_scope": "llamascope", "sparsify": "sparsify", "saelens": "saelens"}
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LAYER_OF_SOURCE = re.compile(r"^(\d+)-")


def _json_or_empty(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _base_model_prefix(model_path: str | None) -> str | None:
    """The attribute under which the loaded model holds delphi's ``AutoModel`` ("" when autointerp loaded the
    base model itself, None when config.json cannot say)."""
    config = _json_or_empty(Path(model_path) / "config.json") if model_path else {}
    if not config:
        return None
    architectures = config.get("architectures") or []
    if not (any(str(a).endswith(_CAUSAL) for a in architectures) or config.get("is_decoder")):
        return ""
    try:
        import transformers

        return str(getattr(transformers, architectures[0]).base_model_prefix)
    except Exception:  # an architecture this transformers does not know: HF heads keep the base model first
        return None


@dataclass(frozen=True)
class RunHook:
    """Where a run model's SAE reads, from harvest.json (or the SAE's cfg.json): what exports are named by."""

    hook_name: str | None  # the module path in the model autointerp loaded, e.g. model.layers.6
    layer: int | None
    site: str  # resid | mlp
    model_path: str | None
    sae_format: str | None  # a pretrained SAE's format (None: trained here)
    width: int | None

    @property
    def delphi_module(self) -> str | None:
        """``layers.6`` for Gemma 3 (``model.layers.6`` here), ``encoder.layer.3`` for BERT (the same here)."""
        if not self.hook_name:
            return None
        head, _, rest = self.hook_name.partition(".")
        prefix = _base_model_prefix(self.model_path)
        if prefix is None:
            prefix = head if head in _USUAL_PREFIXES else ""
        return rest if prefix and head == prefix and rest else self.hook_name

    @property
    def source_set(self) -> str:
        """Neuronpedia's naming (``gemmascope-res-16k``): who made the SAE, the site, the width."""
        width = self.width or 0
        size = f"{width // 1024}k" if width >= 1024 and width % 1024 == 0 else str(width)
        return f"{_SET_PREFIX.get(self.sae_format or '', 'autointerp')}-{'mlp' if self.site == 'mlp' else 'res'}-{size}"


def run_hook(model: ModelDir) -> RunHook:
    """The model's hook as recorded by the harvest (harvest.json), else by its SAE (cfg.json metadata)."""
    manifest = _json_or_empty(model.manifest)
    cfg = _json_or_empty(model.sae.cfg)
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = manifest.get("hook_name") or meta.get("hook_name") or cfg.get("hook_name")
    identity = manifest.get("identity") or {}
    layer = identity.get("layer", meta.get("hook_layer", cfg.get("hook_layer")))
    if layer is None and hook and (m := re.search(r"\.(\d+)(?:\.mlp)?$", hook)):
        layer = m.group(1)
    width = cfg.get("d_sae")
    if not width and model.feature_stats.is_file():
        import pyarrow.parquet as pq

        with parquet_errors(model.feature_stats):
            width = pq.ParquetFile(model.feature_stats).metadata.num_rows
    return RunHook(hook_name=str(hook) if hook else None, layer=int(layer) if layer is not None else None,
                   site=identity.get("site") or ("mlp" if str(hook or "").endswith(".mlp") else "resid"),
                   model_path=(manifest.get("model") or {}).get("path"), sae_format=meta.get("sae_format"),
                   width=int(width) if width else None)


def _final_labels(model: ModelDir) -> list[tuple[int, str, str]]:
    """(feature, label, explainer) of every ok label; a lexical final label's explainer is "lexical"."""
    from autointerp.explain.labels import read_labels, read_meta

    table = read_labels(model.root)
    table = table[(table["status"] == "ok") & table["label"].notna()]
    if table.empty:
        raise UserError(f"{model.labels} has no labels to export; run `autointerp explain` first")
    default = read_meta(model.root).get("explainer_model") or "autointerp"
    out = []
    for row in table.to_dict("records"):
        text = str(row["label"]).strip()
        model_name = row.get("explainer_model")
        explainer = "lexical" if row.get("label_source") in ("lexical", "word") else (model_name if isinstance(model_name, str) and model_name else default)
        if text:
            out.append((int(row["feature"]), text, explainer))
    return sorted(out)


def delphi_bytes(text: str) -> bytes:
    """An explanation file's bytes as delphi's writer makes them (``orjson.dumps``: compact, UTF-8, not ASCII-escaped)."""
    return json.dumps(text, ensure_ascii=False).encode("utf-8")


def _delphi_folder(out: Path) -> Path:
    """``OUT/explanations`` (OUT = delphi's run folder, ``results/<name>``), or OUT when it is the explanations folder."""
    return out if out.name == "explanations" else out / "explanations"


def _export_delphi(model: ModelDir, out: Path, labels: list[tuple[int, str, str]], module: str | None, overwrite: bool) -> Path:
    module = module or run_hook(model).delphi_module
    if not module:
        raise UserError(f"{model.slug} has no recorded hook (no {model.manifest} or SAE cfg.json); pass --hookpoint, "
                        "the module delphi hooks (e.g. layers.6)")
    if not DELPHI_NAME.match(f"{module}_latent0") or module.startswith("/") or ".." in module.split("/"):
        raise UserError(f"--hookpoint {module!r} is not a module path delphi can name files by (e.g. layers.6)")
    folder = _delphi_folder(Path(out))
    existing = set()
    for file in folder.rglob("*.txt") if folder.is_dir() else ():
        m = DELPHI_NAME.match(file.relative_to(folder).as_posix()[: -len(".txt")])
        if m and m["hook"] == module:
            existing.add(file)
    if existing and not overwrite:
        raise UserError(f"{folder} already holds {len(existing)} delphi explanations for {module}; pass --overwrite to replace them")
    written = set()
    for feature, text, _ in labels:
        dest = folder / f"{module}_latent{feature}.txt"
        with atomic_path(dest) as tmp:
            tmp.write_bytes(delphi_bytes(text))
        written.add(dest)
    for stale in existing - written:  # latents labelled before and not now: delphi would still read them
        stale.unlink()
    return folder


def _np_records(model: ModelDir, labels: list[tuple[int, str, str]], model_id: str | None, source: str | None,
                source_set: str | None, method: str) -> list[dict]:
    if source is not None and source_set is not None:
        raise UserError("give --hookpoint (the whole Neuronpedia source, e.g. 6-res-jb) or --source-set, not both")
    if source is None:
        hook = run_hook(model)
        if hook.layer is None:
            raise UserError(f"{model.slug} has no recorded layer (no {model.manifest} or SAE cfg.json); pass --hookpoint "
                            "with the whole Neuronpedia source, e.g. 6-res-jb")
        source = f"{hook.layer}-{source_set or hook.source_set}"
    if not _SOURCE.match(source) or not _SOURCE.match(method):
        raise UserError(f"Neuronpedia names a source <layer>-<source set> in letters, digits and hyphens; {source!r} / "
                        f"method {method!r} is not one")
    mid = model_id or model.slug
    return [{"modelId": mid, "model": mid, "source": source, "layer": source, "index": feature,
             "description": text, "text": text, "typeName": method, "method": method,
             "explanationModelName": explainer, "explainer_model": explainer} for feature, text, explainer in labels]


def export_labels(model_dir: Path, out: Path, fmt: str, *, model_id: str | None = None, hookpoint: str | None = None,
                  source_set: str | None = None, method: str = "autointerp", overwrite: bool = False) -> tuple[int, Path]:
    """Write the model's ok (final) labels for ``fmt``; (how many, where). delphi: ``out`` is delphi's run folder
    (files go to ``out/explanations/``) or the explanations folder; neuronpedia: ``out`` is the JSON file."""
    if fmt not in FORMATS:
        raise UserError(f"unknown label format {fmt!r}; use {' or '.join(FORMATS)}")
    model = ModelDir(Path(model_dir))
    labels = _final_labels(model)
    if fmt == "delphi":
        return len(labels), _export_delphi(model, Path(out), labels, hookpoint, overwrite)
    write_json(Path(out), _np_records(model, labels, model_id, hookpoint, source_set, method))
    return len(labels), Path(out)


@dataclass(frozen=True)
class Imported:
    """What an import wrote: the usable labels and the refused explanations (feature -> reason)."""

    fmt: str
    hookpoint: str
    n_labels: int
    failed: dict[int, str]


def _check_run_hook(model: ModelDir, ext: External, path: Path) -> None:
    """A single hookpoint that is not the run's (delphi module, or the layer of a Neuronpedia source) is most
    likely another SAE's file: refused unless the user names it with --hookpoint."""
    hook = run_hook(model)
    if ext.fmt == "delphi":
        ours, theirs = hook.delphi_module, ext.hookpoint
    else:
        m = _LAYER_OF_SOURCE.match(ext.hookpoint)
        ours, theirs = hook.layer, int(m.group(1)) if m else None
    if ours is not None and theirs is not None and ours != theirs:
        what = "module" if ext.fmt == "delphi" else "layer"
        raise UserError(f"{path} labels {ext.hookpoint} but {model.slug}'s SAE reads {what} {ours}; is it another SAE's "
                        f"file? pass --hookpoint {ext.hookpoint} to import it anyway")


def import_labels(model_dir: Path, path: Path, fmt: str | None = None, *, hookpoint: str | None = None,
                  overwrite: bool = False) -> Imported:
    """Make ``labels.parquet`` from an external source: its usable explanations as ok labels, its failed ones as
    failed rows with the reason (features beyond the SAE's width are a UserError, so is a source with no usable one)."""
    from autointerp.explain.labels import empty_table, merge_rows, read_labels, write_labels, write_meta
    from autointerp.explain.lexical import lexical_label

    model = ModelDir(Path(model_dir))
    if not model.feature_stats.is_file():
        raise UserError(f"no exemplars in {model.root}; run `autointerp exemplars` first (imported labels are scored on them)")
    if not read_labels(model.root).empty and not overwrite:
        raise UserError(f"{model.labels} already holds labels; pass --overwrite to replace them with {path}")
    ext = read_external(Path(path), fmt, hookpoint)
    if hookpoint is None:
        _check_run_hook(model, ext, Path(path))
    width = len(read_parquet(model.feature_stats, columns=["feature"]))
    beyond = sorted(f for f in {*ext.labels, *ext.failed} if not 0 <= f < width)
    if beyond:
        raise UserError(f"{path} labels latent(s) {beyond[:5]} but the SAE of {model.slug} has {width}; is it the file for another SAE?")
    if not ext.labels:
        reasons = sorted({reason for _, reason in ext.failed.values()})
        raise UserError(f"{path} holds no usable label for {ext.hookpoint or 'its latents'}: all {len(ext.failed)} explanations "
                        f"failed ({'; '.join(reasons[:2])})")
    profiles = {}
    if model.lexical_profile.is_file():
        from autointerp.exemplars.profile import read_profiles

        profiles = read_profiles(model.lexical_profile, sorted({*ext.labels, *ext.failed}))
    source = f"imported:{ext.fmt}"
    base = {"explainer_model": source, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    rows = [{"feature": f, "label": text, "raw": text, "status": "ok", "error": None, **base, "label_source": "llm",
             "llm_label": text, "lexical_label": lexical_label(profiles.get(f))} for f, text in ext.labels.items()]
    rows += [{"feature": f, "label": None, "raw": raw, "status": "failed", "error": f"imported explanation refused: {reason}",
              **base, "label_source": None, "llm_label": None, "lexical_label": lexical_label(profiles.get(f))}
             for f, (raw, reason) in ext.failed.items()]
    write_labels(model.root, merge_rows(empty_table(), sorted(rows, key=lambda r: r["feature"])))
    digest = file_sha256(Path(path)) if Path(path).is_file() else str(path)
    settings = {"imported": ext.fmt, "sha256": digest, "hookpoint": ext.hookpoint, "n_failed": len(ext.failed)}
    write_meta(model.root, {"explain_identity": {"settings": settings, "inputs": {}}, "scorers": {}, "explainer_model": source})
    return Imported(ext.fmt, ext.hookpoint, len(ext.labels), {f: reason for f, (_, reason) in ext.failed.items()})
