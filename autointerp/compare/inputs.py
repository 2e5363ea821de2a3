"""Find and check what comparing two models needs, and say which command to run when something is missing.

Both harvests must come from the same documents: the harvest manifest records a fingerprint of the corpus
it was made on (``identity.corpus``), and the run's ``corpus/documents.parquet`` must be that same corpus,
because word units are cut from its text with the token character offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autointerp.config import ModelEntry
from autointerp.data.corpus import Document, corpus_fingerprint, load_saved_documents
from autointerp.errors import UserError
from autointerp.explain.names import FeatureName, feature_names
from autointerp.io import file_sha256, read_json, read_parquet
from autointerp.rundir.layout import ModelDir, RunDir, SAEFiles


@dataclass
class ComparedModel:
    """One side of a comparison: its paths (from ``ModelDir``) and harvest manifest, checked for what
    matching needs. (The report's ``ModelInputs`` is the other view of a model directory: every artifact
    loaded, with a hint for each missing one.)"""

    slug: str
    model_dir: Path
    harvest_dir: Path
    sae_dir: Path
    manifest: dict
    labels_path: Path | None  # None until `autointerp explain` has run
    exemplars_path: Path | None

    @property
    def level(self) -> str:
        return (self.manifest.get("identity") or {}).get("level", "token")

    @property
    def corpus(self) -> str | None:
        return (self.manifest.get("identity") or {}).get("corpus")


def _missing(files: ModelDir, sae_files: SAEFiles) -> tuple[str | None, dict | None]:
    """(what is missing first: "harvest" / "incomplete" / "sae", else None; the harvest manifest once read)."""
    if not files.manifest.is_file():
        return "harvest", None
    manifest = read_json(files.manifest)
    if not manifest.get("complete"):
        return "incomplete", manifest
    return ("sae" if not sae_files.weights.is_file() else None), manifest


def model_inputs(run_dir: Path, entry: ModelEntry, *, model: ModelDir | None = None, sae: SAEFiles | None = None,
                 slug: str | None = None) -> ComparedModel:
    """The artifacts of one model in the run, or a UserError naming the command that makes them. The
    controls pass their own model directory (random weights), SAE (another seed) and name."""
    files = model or RunDir(run_dir).model(entry.slug)
    model_dir, harvest_dir, sae_dir = files.root, files.harvest, (sae.root if sae else files.sae_dir)
    slug = slug or entry.slug
    missing, manifest = _missing(files, sae or files.sae)
    if missing == "harvest":
        raise UserError(f"{entry.slug} has no harvest in {harvest_dir}; run `autointerp harvest --run-dir {run_dir}` first")
    if missing == "incomplete":
        raise UserError(f"the harvest of {entry.slug} in {harvest_dir} is incomplete; run `autointerp harvest --run-dir {run_dir}` to finish it")
    if missing == "sae":
        raise UserError(f"{slug} has no trained SAE in {sae_dir}; run `autointerp train --run-dir {run_dir}` first")
    labels, exemplars = files.labels, files.exemplars
    own = sae is None  # labels and exemplars belong to the model's own SAE, not to another seed's
    return ComparedModel(slug, model_dir, harvest_dir, sae_dir, manifest,
                         labels if own and labels.is_file() else None, exemplars if own and exemplars.is_file() else None)


def ready_inputs(model: ModelDir, slug: str) -> ComparedModel | None:
    """A model's harvest and SAE when both are complete, else None (no error: for optional sides, such as the
    crosscoder's random-weights controls). Labels and exemplars are left out: only activations are read."""
    missing, manifest = _missing(model, model.sae)
    if missing is not None:
        return None
    return ComparedModel(slug, model.root, model.harvest, model.sae_dir, manifest, None, None)


def check_same_corpus(run_dir: Path, a: ComparedModel, b: ComparedModel) -> list[Document]:
    """The run's documents, after checking both harvests were made on exactly them."""
    if a.corpus != b.corpus:
        raise UserError(
            f"{a.slug} and {b.slug} were harvested on different corpora (fingerprints {str(a.corpus)[:12]} vs "
            f"{str(b.corpus)[:12]}, {a.manifest.get('n_documents')} vs {b.manifest.get('n_documents')} documents); "
            f"re-harvest one of them on this run's corpus: `autointerp harvest --run-dir {run_dir} -m <model> --overwrite`")
    run = RunDir(run_dir)
    if not run.documents.is_file():
        raise UserError(f"{run.documents} is missing; run `autointerp harvest --run-dir {run_dir}` to rebuild the corpus")
    docs = load_saved_documents(run.corpus)
    if a.corpus is not None and corpus_fingerprint(docs) != a.corpus:
        raise UserError(f"{run.documents} is not the corpus {a.slug} and {b.slug} were harvested on; "
                        f"restore it or re-harvest both models with `autointerp harvest --run-dir {run_dir} --overwrite`")
    return docs


def load_labels(inputs: ComparedModel) -> pd.DataFrame | None:
    """feature -> label for the features whose labelling succeeded; None when explain has not run."""
    if inputs.labels_path is None:
        return None
    frame = read_parquet(inputs.labels_path)
    missing = [c for c in ("feature", "label", "status") if c not in frame.columns]
    if missing:
        raise UserError(f"{inputs.labels_path} lacks column(s) {', '.join(missing)}; re-run `autointerp explain --overwrite`")
    ok = frame[(frame["status"] == "ok") & frame["label"].notna()]
    ok = ok[ok["label"].astype(str).str.strip() != ""]
    return ok[["feature", "label"]].drop_duplicates("feature").astype({"feature": "int64"}).reset_index(drop=True)


def input_identity(a: ComparedModel, b: ComparedModel) -> dict:
    """What the activation results depend on (hashes, not paths) — unchanged identity means a no-op re-run."""
    def one(m: ComparedModel) -> dict:
        return {"sae": file_sha256(SAEFiles(m.sae_dir).weights), "harvest": m.manifest.get("identity"),
                "shards": m.manifest.get("shards")}
    return {"a": one(a), "b": one(b)}


def profile_path(m: ComparedModel) -> Path | None:
    """The model's lexical profile when it belongs to this SAE's exemplars (names of unlabelled features)."""
    path = ModelDir(m.model_dir).lexical_profile
    return path if m.exemplars_path is not None and path.is_file() else None


def extra_identity(a: ComparedModel, b: ComparedModel) -> dict:
    """Labels, exemplars and lexical profiles: they change the label/abstraction/domain results but not the
    correlation matrices."""
    digest = lambda p: file_sha256(p) if p is not None else None
    return {"labels_a": digest(a.labels_path), "labels_b": digest(b.labels_path),
            "exemplars_a": digest(a.exemplars_path), "exemplars_b": digest(b.exemplars_path),
            "profile_a": digest(profile_path(a)), "profile_b": digest(profile_path(b))}


def model_names(m: ComparedModel) -> dict[int, FeatureName]:
    """Every feature's name (final label, else lexical-profile name: ``explain.names``); {} for a side whose
    exemplars are not its own (a control's second-seed SAE, a random-weights model)."""
    if m.exemplars_path is None:
        return {}
    return feature_names(load_labels(m), profile_path(m))
