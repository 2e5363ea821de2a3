"""Two synthetic "models" with a known answer, written as real run-directory artifacts.

A ground-truth sparse code lives on word units of synthetic documents: each concept is switched on for
a random subset of documents and fires on a random share of their words. Model A sees the shared
concepts plus its own; model B the shared ones plus a different set of its own. Each model writes its
codes through a random orthonormal dictionary into its own activation space (different widths), with
noise, and its SAE is that dictionary saved as a TopK SAE (features in a random order). Tokenizations
differ: A has one token per word; B splits every word into two tokens (the first carrying the preceding
space and a weakened code), so only max-pooling onto words re-aligns them. The harvests go through the
real shard writer (contexts shuffled across shards, as length-sorted harvesting does), the SAEs through
the real save, the corpus through the real corpus writer.

``truth`` holds the pairs (feature of A, feature of B) that encode the same concept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autointerp.data.corpus import CorpusConfig, CorpusStats, Document, corpus_fingerprint, save_documents
from autointerp.io import write_json
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.saelens import save_sae
from autointerp.explain.labels import write_labels as write_labels_table
from autointerp.harvest.shards import write_shard
from autointerp.rundir.layout import RunDir


@dataclass
class SyntheticSpec:
    n_docs: int = 60
    words_per_doc: tuple[int, int] = (60, 140)
    n_shared: int = 32
    n_a_only: int = 32
    n_b_only: int = 48
    d_a: int = 64  # >= n_shared + n_a_only
    d_b: int = 96  # >= n_shared + n_b_only
    doc_rate: float = 0.3  # a concept is on in this share of documents
    word_rate: float = 0.15  # and then fires on this share of their words
    noise: float = 0.05
    k: int = 12
    ctx_a: int = 32
    ctx_b: int = 48
    shard_rows: int = 2000
    seed: int = 0
    docs_model_b: int | None = None  # harvest only the first N documents for B (a different corpus)
    n_dead_a: int = 0  # extra SAE latents that never fire
    n_dead_b: int = 0
    n_entities: int = 20  # doc_ids synth/e<entity>/s<n>: documents d and d + n_entities share an entity
    entity_level_a_only: bool = False  # A's own concepts fire in the documents of a single entity only


@dataclass
class SyntheticRun:
    run_dir: Path
    slugs: tuple[str, str]
    truth: set[tuple[int, int]]  # (feature_a, feature_b) encoding the same concept
    concept_of_a: np.ndarray  # concept id per feature of A
    concept_of_b: np.ndarray
    n_units: int
    docs: list[Document] = field(default_factory=list)


def _orthonormal(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q[:n].astype(np.float32)  # n unit-norm, mutually orthogonal rows


def _documents(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[list[Document], list[np.ndarray]]:
    """Texts and the char span [start, end) of every word unit (words and punctuation runs)."""
    docs, spans = [], []
    for d in range(spec.n_docs):
        n = int(rng.integers(*spec.words_per_doc))
        parts, text_spans, pos = [], [], 0
        for i in range(n):
            word = "w" + "".join(rng.choice(list("abcdefgh"), size=int(rng.integers(1, 6))))
            sep = "" if i == 0 else " "
            parts.append(sep + word)
            pos += len(sep)
            text_spans.append((pos, pos + len(word)))
            pos += len(word)
            if rng.random() < 0.08 and i < n - 1:  # a punctuation unit glued to the word
                parts.append(",")
                text_spans.append((pos, pos + 1))
                pos += 1
        docs.append(Document(f"synth/e{d % spec.n_entities:02d}/s{d // spec.n_entities}", "".join(parts)))
        spans.append(np.array(text_spans, np.int64))
    return docs, spans


def _codes(spec: SyntheticSpec, n_units_per_doc: list[int], n_concepts: int, rng: np.random.Generator) -> np.ndarray:
    on = rng.random((len(n_units_per_doc), n_concepts)) < spec.doc_rate
    if spec.entity_level_a_only:
        entity = np.arange(len(n_units_per_doc)) % spec.n_entities
        for c in range(spec.n_shared, spec.n_shared + spec.n_a_only):
            on[:, c] = entity == rng.integers(spec.n_entities)
    blocks = []
    for n, on_doc in zip(n_units_per_doc, on):
        fires = (rng.random((n, n_concepts)) < spec.word_rate) & on_doc
        blocks.append(np.where(fires, rng.uniform(0.5, 2.0, (n, n_concepts)), 0.0).astype(np.float32))
    return np.concatenate(blocks)


def _tokens(spans: list[np.ndarray], split: bool) -> pd.DataFrame:
    """Token rows: doc index, unit index (global), char span, weight of the unit's code on this token."""
    rows = []
    offset = 0
    for d, sp in enumerate(spans):
        for u, (s, e) in enumerate(sp):
            if split and e - s >= 2:
                mid = (s + e) // 2
                rows.append((d, offset + u, max(s - 1, 0), mid, 0.6))  # first piece takes the leading space
                rows.append((d, offset + u, mid, e, 1.0))
            else:
                rows.append((d, offset + u, s, e, 1.0))
        offset += len(sp)
    return pd.DataFrame(rows, columns=["doc", "unit", "char_start", "char_end", "weight"])


def _write_model(run_dir: Path, slug: str, docs: list[Document], tokens: pd.DataFrame, codes: np.ndarray,
                 features: np.ndarray, d_in: int, spec: SyntheticSpec, ctx_len: int, rng: np.random.Generator,
                 fingerprint: str, n_dead: int) -> None:
    n_feat = len(features)
    w_dec = _orthonormal(rng, n_feat + n_dead, d_in)  # SAE feature j writes direction w_dec[j] for concept features[j]
    x = (codes[tokens["unit"].to_numpy()][:, features] * tokens["weight"].to_numpy()[:, None]) @ w_dec[:n_feat]
    x += spec.noise * rng.standard_normal(x.shape).astype(np.float32)
    sae = create_sae(SAEConfig(d_in=d_in, d_sae=n_feat + n_dead, architecture="topk", k=spec.k,
                               metadata={"model_name": slug, "hook_name": "synthetic", "level": "token"}))
    with torch.no_grad():
        sae.W_dec.copy_(torch.from_numpy(w_dec))
        sae.W_enc.copy_(torch.from_numpy(w_dec.T.copy()))
        sae.b_enc.fill_(-3 * spec.noise)
        sae.b_enc[n_feat:] = -100.0  # dead latents: never positive
        sae.b_dec.zero_()
    save_sae(sae, RunDir(run_dir).model(slug).sae_dir)

    # contexts never cross documents; harvested in a shuffled (not document) order
    tokens = tokens.assign(position=tokens.groupby("doc").cumcount())
    tokens["context_id"] = -1
    contexts, _next_id = [], 0
    for _, group in tokens.groupby("doc", sort=True):
        for s in range(0, len(group), ctx_len):
            contexts.append(group.index[s : s + ctx_len].to_numpy())
    order = rng.permutation(len(contexts))
    hdir = RunDir(run_dir).model(slug).harvest
    shards, rows, current = [], [], []
    for c in order:
        current.append(c)
        rows.append(len(contexts[c]))
        if sum(rows) >= spec.shard_rows:
            shards.append(current)
            current, rows = [], []
    if current:
        shards.append(current)
    manifest_shards = []
    for index, members in enumerate(shards):
        idx = np.concatenate([contexts[c] for c in members])
        ctx = np.concatenate([np.full(len(contexts[c]), c, np.int64) for c in members])
        part = tokens.loc[idx]
        text = [docs[d].text[s:e] for d, s, e in zip(part["doc"], part["char_start"], part["char_end"])]
        frame = pd.DataFrame({
            "doc_id": [docs[d].doc_id for d in part["doc"]], "position": part["position"].to_numpy(np.int64),
            "token_id": np.zeros(len(part), np.int64), "token": text,
            "char_start": part["char_start"].to_numpy(np.int64), "char_end": part["char_end"].to_numpy(np.int64),
            "context_id": ctx, "ctx_pos": np.concatenate([np.arange(len(contexts[c])) for c in members]).astype(np.int32),
        })
        write_shard(hdir, index, torch.from_numpy(np.ascontiguousarray(x[idx])), frame, {"model": slug})
        manifest_shards.append({"index": index, "rows": len(idx), "contexts": len(members)})
    write_json(RunDir(run_dir).model(slug).manifest, {
        "complete": True, "d_model": d_in, "hook_name": "synthetic", "n_documents": len(docs),
        "n_contexts": len(contexts), "n_shards": len(shards), "shards": manifest_shards,
        "identity": {"model": slug, "layer": 0, "site": "resid", "level": "token", "ctx_len": ctx_len,
                     "pool": "last", "keep_special": False, "dtype": "float32", "compute_dtype": "float32",
                     "corpus": fingerprint},
    })


def make_synthetic_run(run_dir: Path, spec: SyntheticSpec | None = None, slugs: tuple[str, str] = ("synth-a", "synth-b")) -> SyntheticRun:
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    docs, spans = _documents(spec, rng)
    save_documents(RunDir(run_dir).corpus, docs, CorpusStats(n_seen=len(docs), n_kept=len(docs)), CorpusConfig(dataset="synthetic"))
    n_concepts = spec.n_shared + spec.n_a_only + spec.n_b_only
    codes = _codes(spec, [len(s) for s in spans], n_concepts, rng)
    shared = np.arange(spec.n_shared)
    concepts_a = rng.permutation(np.concatenate([shared, spec.n_shared + np.arange(spec.n_a_only)]))
    concepts_b = rng.permutation(np.concatenate([shared, spec.n_shared + spec.n_a_only + np.arange(spec.n_b_only)]))
    fingerprint = corpus_fingerprint(docs)
    _write_model(run_dir, slugs[0], docs, _tokens(spans, split=False), codes, concepts_a, spec.d_a, spec, spec.ctx_a, rng, fingerprint, spec.n_dead_a)
    docs_b = docs[: spec.docs_model_b] if spec.docs_model_b else docs
    fp_b = corpus_fingerprint(docs_b)
    _write_model(run_dir, slugs[1], docs, _tokens(spans[: len(docs_b)], split=True), codes, concepts_b, spec.d_b, spec, spec.ctx_b, rng, fp_b, spec.n_dead_b)
    where_b = {int(c): j for j, c in enumerate(concepts_b)}
    truth = {(j, where_b[int(c)]) for j, c in enumerate(concepts_a) if int(c) in where_b}
    return SyntheticRun(run_dir, slugs, truth, concepts_a, concepts_b, len(codes), docs)


def write_labels(model_dir: Path, labels: dict[int, str | None]) -> Path:
    """A labels.parquet in the agreed contract, through explain's own writer."""
    features = sorted(labels)
    ok = [labels[f] is not None for f in features]
    frame = pd.DataFrame({
        "feature": np.asarray(features, np.int32), "label": [labels[f] for f in features],
        "raw": [labels[f] or "" for f in features], "status": ["ok" if o else "failed" for o in ok],
        "error": [None if o else "synthetic failure" for o in ok], "explainer_model": "synthetic",
        "prompt_tokens": np.zeros(len(features), np.int64), "completion_tokens": np.zeros(len(features), np.int64),
        "cost_usd": np.zeros(len(features)),
    })
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    return write_labels_table(model_dir, frame)


def controls_config(run_dir: Path, spec: SyntheticSpec, epochs: float):
    """The run config the controls tests use on a synthetic run: both models' SAEs from the real trainer, the
    same-model ceiling on, no floor (the synthetic models have no weights to randomise), word level only."""
    from autointerp.config import ModelEntry, RunConfig
    from autointerp.controls.config import ControlsConfig
    from autointerp.sae.config import TrainConfig

    cfg = RunConfig(run_dir=str(run_dir), models=[ModelEntry("synth-a"), ModelEntry("synth-b")],
                    sae=SAEConfig(expansion_factor=1, k=spec.k), train=TrainConfig(epochs=epochs, batch_size=512, ce_contexts=0),
                    controls=ControlsConfig(ceiling=True, floor="none"))
    cfg.compare.document_level = False
    cfg.compare.representation = False
    return cfg


def save_identity_sae(sae_dir: Path, d: int, k: int, slug: str) -> None:
    """A TopK SAE whose latent i is input dimension i (encoder and decoder the identity), saved for real."""
    sae = create_sae(SAEConfig(d_in=d, d_sae=d, architecture="topk", k=k, metadata={"model_name": slug, "hook_name": "toy", "level": "token"}))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    save_sae(sae, sae_dir)
