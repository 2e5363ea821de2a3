"""Every run directory the tests build: the builders here, the pieces they share in ``helpers.run_parts``
(re-exported here), the report run in ``helpers.report_run``.

Everything is written through the package's own writers and paths (``RunDir``, ``save_documents``,
``write_shard``, ``save_sae``, the exemplar miner and ``write_exemplars``, ``write_labels``/``write_meta``,
compare's ``write_parquet``), so a test reads a run exactly as a real one is read. No stubs.

The shared pieces:
  ``write_documents``      the corpus (documents.parquet), every document kept
  ``write_harvest``        harvest shards + harvest.json as the harvest stage records them
  ``write_piece_harvest``  a harvest of documents given as token pieces, one activation vector per token
  ``save_tied_topk_sae``   a TopK SAE with a chosen dictionary (encoder = decoder transposed), saved for real
  ``save_identity_sae``    the same with the identity dictionary (latent i is input dimension i)
  ``mine``                 the real exemplar miner with a small ExemplarConfig

The builders (each builds a different run; use the one whose contents your test reads):
  ``make_synthetic_run``   two synthetic models sharing part of a ground-truth dictionary, with a known answer
                           (harvests, SAEs, corpus); ``write_labels``, ``controls_config`` go with it
  ``make_exemplar_run``    exemplars.parquet + feature_stats.parquet of three known features (no SAE): explain/score
  ``labelled_run``         ``make_exemplar_run`` plus hooks and a labels table with awkward texts: label export/import
  ``make_report_run``      a small but complete run (every stage's files, contents chosen by hand): the report
  ``make_mined_toy_run``   a one-shard toy harvest, an identity SAE and the real miner's exemplars: lexical profiles
  ``make_word_harvest``    a bare harvest of words w0..w39 (token id t fires dimension t): the miner's brute-force checks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from autointerp.data.corpus import Document, corpus_fingerprint
from autointerp.exemplars.mine import EXEMPLAR_SCHEMA
from autointerp.exemplars.profile import write_profiles
from autointerp.explain.labels import empty_table, merge_rows, write_labels as write_labels_table, write_meta
from autointerp.io import write_json
from autointerp.rundir.layout import ModelDir, RunDir
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.saelens import load_sae
from helpers.run_parts import write_documents, write_harvest, write_piece_harvest, save_tied_topk_sae, save_identity_sae, mine  # noqa: F401 - re-exported: tests import them from here


# ============================================================================= the synthetic pair (known answer)
# Two synthetic "models" with a known answer, written as real run-directory artifacts.
#
# A ground-truth sparse code lives on word units of synthetic documents: each concept is switched on for
# a random subset of documents and fires on a random share of their words. Model A sees the shared
# concepts plus its own; model B the shared ones plus a different set of its own. Each model writes its
# codes through a random orthonormal dictionary into its own activation space (different widths), with
# noise, and its SAE is that dictionary saved as a TopK SAE (features in a random order). Tokenizations
# differ: A has one token per word; B splits every word into two tokens (the first carrying the preceding
# space and a weakened code), so only max-pooling onto words re-aligns them. The harvests go through the
# real shard writer (contexts shuffled across shards, as length-sorted harvesting does), the SAEs through
# the real save, the corpus through the real corpus writer.
#
# ``truth`` holds the pairs (feature of A, feature of B) that encode the same concept.


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


def synthetic_documents(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[list[Document], list[np.ndarray]]:
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


def synthetic_codes(spec: SyntheticSpec, n_units_per_doc: list[int], n_concepts: int, rng: np.random.Generator) -> np.ndarray:
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


def token_table(spans: list[np.ndarray], split: bool) -> pd.DataFrame:
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


def write_synthetic_model(run_dir: Path, slug: str, docs: list[Document], tokens: pd.DataFrame, codes: np.ndarray,
                 features: np.ndarray, d_in: int, spec: SyntheticSpec, ctx_len: int, rng: np.random.Generator,
                 fingerprint: str, n_dead: int) -> None:
    n_feat = len(features)
    w_dec = _orthonormal(rng, n_feat + n_dead, d_in)  # SAE feature j writes direction w_dec[j] for concept features[j]
    x = (codes[tokens["unit"].to_numpy()][:, features] * tokens["weight"].to_numpy()[:, None]) @ w_dec[:n_feat]
    x += spec.noise * rng.standard_normal(x.shape).astype(np.float32)
    b_enc = np.full(n_feat + n_dead, -3 * spec.noise, np.float32)
    b_enc[n_feat:] = -100.0  # dead latents: never positive
    save_tied_topk_sae(RunDir(run_dir).model(slug).sae_dir, w_dec, spec.k, {"model_name": slug, "hook_name": "synthetic", "level": "token"}, b_enc)

    # contexts never cross documents; harvested in a shuffled (not document) order
    tokens = tokens.assign(position=tokens.groupby("doc").cumcount())
    tokens["context_id"] = -1
    contexts = []
    for _, group in tokens.groupby("doc", sort=True):
        for s in range(0, len(group), ctx_len):
            contexts.append(group.index[s : s + ctx_len].to_numpy())
    order = rng.permutation(len(contexts))
    groups, rows, current = [], [], []
    for c in order:
        current.append(c)
        rows.append(len(contexts[c]))
        if sum(rows) >= spec.shard_rows:
            groups.append(current)
            current, rows = [], []
    if current:
        groups.append(current)
    shards = []
    for members in groups:
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
        shards.append((torch.from_numpy(np.ascontiguousarray(x[idx])), frame))
    write_harvest(RunDir(run_dir).model(slug).harvest, shards, {
        "d_model": d_in, "hook_name": "synthetic", "n_documents": len(docs), "n_contexts": len(contexts),
        "identity": {"model": slug, "layer": 0, "site": "resid", "level": "token", "ctx_len": ctx_len,
                     "pool": "last", "keep_special": False, "dtype": "float32", "compute_dtype": "float32",
                     "corpus": fingerprint},
    }, {"model": slug})


def make_synthetic_run(run_dir: Path, spec: SyntheticSpec | None = None, slugs: tuple[str, str] = ("synth-a", "synth-b"), *,
                       documents=None, codes=None) -> SyntheticRun:
    """The synthetic pair under ``run_dir``. ``documents`` / ``codes``: replacements for ``synthetic_documents`` /
    ``synthetic_codes`` (same signatures), for worlds built on this one (hostile markup, lexical concepts)."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    docs, spans = (documents or synthetic_documents)(spec, rng)
    write_documents(run_dir, docs, "synthetic")
    n_concepts = spec.n_shared + spec.n_a_only + spec.n_b_only
    codes = (codes or synthetic_codes)(spec, [len(s) for s in spans], n_concepts, rng)
    shared = np.arange(spec.n_shared)
    concepts_a = rng.permutation(np.concatenate([shared, spec.n_shared + np.arange(spec.n_a_only)]))
    concepts_b = rng.permutation(np.concatenate([shared, spec.n_shared + spec.n_a_only + np.arange(spec.n_b_only)]))
    fingerprint = corpus_fingerprint(docs)
    write_synthetic_model(run_dir, slugs[0], docs, token_table(spans, split=False), codes, concepts_a, spec.d_a, spec, spec.ctx_a, rng, fingerprint, spec.n_dead_a)
    docs_b = docs[: spec.docs_model_b] if spec.docs_model_b else docs
    fp_b = corpus_fingerprint(docs_b)
    write_synthetic_model(run_dir, slugs[1], docs, token_table(spans[: len(docs_b)], split=True), codes, concepts_b, spec.d_b, spec, spec.ctx_b, rng, fp_b, spec.n_dead_b)
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


def lexical_codes(unit_texts: list[str], types: list[str], rng: np.random.Generator) -> np.ndarray:
    """Word-detector concepts to add to ``synthetic_codes``: concept i fires on every occurrence of word ``types[i]``
    (and nowhere else)."""
    texts = np.asarray(unit_texts, dtype=object)
    return np.stack([np.where(texts == t, rng.uniform(0.8, 1.2, len(texts)), 0.0) for t in types], axis=1).astype(np.float32)


# ================================================================================ toy harvests and mined runs
def make_mined_toy_run(root: Path, documents: list[list[str]], latent_of, rng: np.random.Generator, d: int = 8,
                       entities: Callable[[int], str | None] | None = None) -> ModelDir:
    """A one-shard harvest of ``documents`` (token pieces, one per word, the separator in the piece; one context
    each; doc ids ``toy/d<n>``), each token's vector from ``latent_of(piece) -> (latent, low, high)`` (that latent
    at a uniform value in [low, high)), an identity SAE, and the real miner's exemplars; returns the model's
    directory. ``entities(n)``: document n's corpus entity, handed to the miner as ``Document``s (else a
    doc_id -> text mapping, which names none)."""
    model = RunDir(root).model("toy")

    def vector(doc: int, i: int) -> np.ndarray:
        latent, low, high = latent_of(documents[doc][i])
        v = np.zeros(d, np.float32)
        v[latent] = rng.uniform(low, high)
        return v

    texts = write_piece_harvest(model, {f"toy/d{n}": pieces for n, pieces in enumerate(documents)}, vector, d_model=d, ctx_len=64, split=False)
    save_identity_sae(model.sae_dir, d, 1, "toy")
    if entities is not None:
        texts = [Document(doc_id, text, entities(int(doc_id.rsplit("d", 1)[1]))) for doc_id, text in texts.items()]
    result = mine(load_sae(model.sae_dir), model.harvest, texts, model.root, n_top=6, n_quantiles=4, per_quantile=2, n_random=6, window_before=4, window_after=2)
    write_profiles(result.profile, model.lexical_profile)  # the miner's profile, written as the exemplars stage writes it
    return model


def make_word_harvest(root: Path, n_docs: int = 24, ctx_len: int = 8, contexts_per_shard: int = 9, seed: int = 0, d: int = 32,
                      n_words: int = 40) -> tuple[Path, dict[str, str]]:
    """A bare harvest under ``root/harvest``: words w0..w{n_words-1} as tokens; the activation of a token with id
    t < d is a noisy copy of e_t, scaled. Returns the harvest folder and the documents' texts."""
    rng = np.random.default_rng(seed)
    docs, contexts = {}, []
    for n in range(n_docs):
        ids = rng.integers(0, n_words, size=int(rng.integers(5, 30)))
        words = [f"w{i}" for i in ids]
        text, spans = "", []
        for w in words:
            spans.append((len(text), len(text) + len(w)))
            text += w + " "
        docs[f"doc{n:03d}"] = text.rstrip()
        for s in range(0, len(ids), ctx_len):
            contexts.append((f"doc{n:03d}", np.arange(s, min(s + ctx_len, len(ids))), ids, words, spans))
    shards = []
    for s in range(0, len(contexts), contexts_per_shard):
        rows, acts = [], []
        for c, (doc_id, positions, ids, words, spans) in enumerate(contexts[s : s + contexts_per_shard], start=s):
            for j, p in enumerate(positions):
                x = 0.3 * rng.standard_normal(d)
                if ids[p] < d:
                    x[ids[p]] += 1.0 + 2.0 * rng.random()
                acts.append(x)
                rows.append({"doc_id": doc_id, "position": int(p), "token_id": int(ids[p]), "token": words[p], "char_start": spans[p][0],
                             "char_end": spans[p][1], "context_id": c, "ctx_pos": j})
        shards.append((torch.tensor(np.array(acts), dtype=torch.float32), pd.DataFrame(rows)))
    hdir = root / "harvest"
    write_harvest(hdir, shards, {"identity": {"level": "token", "layer": 1}, "d_model": d})
    return hdir, docs


def word_harvest_sae(d_sae: int = 64, k: int = 4, d: int = 32):
    """For ``make_word_harvest``: latent j < d reads coordinate j (so fires on token w_j); latents >= d never fire."""
    sae = create_sae(SAEConfig(d_in=d, d_sae=d_sae, k=k), seed=0)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[:, :d] = torch.eye(d)
    return sae.eval()


# ==================================================== the exemplar run (explain / score: known features, no SAE)
# feature -> (words it fires on, sentences where they occur, sentences without them)
FEATURES = {
    0: ({"volcano", "lava", "eruption", "magma"}, [
        "the volcano erupted and lava flowed into the sea", "a violent eruption sent magma down the slopes",
        "the old volcano near the town is still active", "hot lava and ash covered the village",
        "scientists measured magma below the volcano", "the eruption lasted three days",
        "lava fields stretch across the island", "the volcano last erupted in 1902",
    ], ["the bank raised interest rates again", "farmers grow wheat and barley here", "the parliament passed a new budget law",
        "the national football team won the cup", "exports of coffee rose last year", "the railway links the two largest cities"]),
    1: ({"coffee", "tea", "cocoa"}, [
        "exports of coffee and tea rose sharply", "the country grows cocoa for export", "coffee is the main cash crop",
        "tea plantations cover the hills", "cocoa prices fell in the spring", "coffee and cocoa make up most exports",
        "local tea is sold at the market", "the coffee harvest was poor",
    ], ["the volcano erupted last year", "the navy has four frigates", "the constitution was amended in 2010",
        "the river floods every spring", "the capital has two universities", "the president serves a five year term"]),
    2: ({"navy", "army", "frigates", "soldiers"}, [
        "the navy operates six frigates", "the army has about 5000 soldiers", "soldiers patrol the northern border",
        "the navy and army held joint drills", "new frigates were bought from abroad", "the army was founded in 1950",
        "two frigates guard the coast", "the navy recruits young soldiers",
    ], ["tea plantations cover the hills", "the bank cut interest rates", "tourism brings many visitors each summer",
        "the lake is the largest in the region", "rice is the staple food", "the census counted two million people"]),
}


def _exemplar_window(feature: int, split: str, kind: str, rank: int, context_id: int, text: str, words: set[str], scale: float) -> dict:
    tokens, starts, ends, acts = [], [], [], []
    pos = 0
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        tokens.append(piece)
        starts.append(pos)
        ends.append(pos + len(piece))
        acts.append(scale if word in words else 0.0)
        pos += len(piece)
    acts_arr = np.asarray(acts, dtype=np.float32)
    max_index = int(np.argmax(acts_arr)) if acts_arr.max() > 0 else len(tokens) // 2
    return {
        "feature": feature, "split": split, "kind": kind, "rank_or_quantile": rank, "context_id": context_id,
        "doc_id": f"doc{context_id}", "max_act": float(acts_arr.max()), "max_index": max_index, "tokens": tokens,
        "token_ids": list(range(len(tokens))), "acts": acts_arr.tolist(), "char_start": starts, "char_end": ends, "text": text,
    }


def make_exemplar_run(root: Path, models: tuple[str, ...] = ("gemma-3-270m",)) -> Path:
    """A run directory whose models each have exemplars.parquet + feature_stats.parquet for FEATURES (no SAE):
    windows written as the miner writes them, the first four active sentences of each feature its top (train)
    windows, the rest quantile (test) windows, the inactive ones random windows of both splits."""
    for slug in models:
        rows, ctx = [], 0
        for feature, (words, active, inactive) in FEATURES.items():
            for i, text in enumerate(active):
                split, kind = ("train", "top") if i < 4 else ("test", "quantile")
                rows.append(_exemplar_window(feature, split, kind, i, ctx, text, words, 1.0 + 0.1 * (i % 3)))
                ctx += 1
            for i, text in enumerate(inactive):
                rows.append(_exemplar_window(feature, "train" if i % 2 == 0 else "test", "random", i, ctx, text, set(), 0.0))
                ctx += 1
        folder = root / slug
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=EXEMPLAR_SCHEMA), folder / "exemplars.parquet")
        stats = pd.DataFrame({"feature": [0, 1, 2, 3], "n_active_tokens": [10, 10, 10, 0], "density": [0.01, 0.02, 0.03, 0.0],
                              "max_act": [1.2, 1.2, 1.2, 0.0], "mean_act": [1.0, 1.0, 1.0, 0.0], "n_contexts_active": [8, 8, 8, 0],
                              "dead": [False, False, False, True]})
        stats.to_parquet(folder / "feature_stats.parquet")
    return root


# ========================================================= the labelled run (label export / import in other layouts)
# make_exemplar_run's exemplars plus the records an export reads (harvest.json's hook, the model's config.json,
# the SAE's cfg.json) and a labels table with awkward texts.
# feature -> final label: quotes, non-ASCII, a newline, JSON-looking text (all must survive every format)
LABELS = {0: "volcanoes, lava and eruptions", 1: 'drinks: "coffee" & tea — café ☕', 2: "the army\nand the navy",
          5: "[1, 2] {\"not\": \"json\"}", 17: "numbers written as words", 40: "a lexical label: \"sea\""}
LEXICAL = {40}  # final labels that came from the lexical labeller
FAILED = (7,)  # features whose labelling failed (never exported)
MODELS = {  # slug -> (hook recorded here, HF architecture, layer, delphi's module)
    "gemma-3-270m": ("model.layers.6", "Gemma3ForCausalLM", 6, "layers.6"),
    "minilm-l6": ("encoder.layer.3", "BertModel", 3, "encoder.layer.3"),
}


def add_hook(run: Path, slug: str, *, hook: str, architecture: str | None, layer: int, d_sae: int = 16384,
             site: str = "resid", sae_format: str | None = None) -> None:
    """Record a hook as the harvest and the train stage do (architecture None: no config.json on disk)."""
    model = ModelDir(run / slug)
    config_dir = run.parent / f"{slug}-hf"
    if architecture is not None:
        write_json(config_dir / "config.json", {"architectures": [architecture]})
    write_json(model.manifest, {"hook_name": hook, "identity": {"layer": layer, "site": site, "level": "token"},
                                "model": {"path": str(config_dir), "blocks": hook.rsplit(".", 1)[0], "spec": slug}})
    meta = {"hook_name": hook, "hook_layer": layer} | ({"sae_format": sae_format} if sae_format else {})
    write_json(model.sae.cfg, {"d_sae": d_sae, "metadata": meta})


def add_labels(run: Path, slug: str, labels: dict[int, str] = LABELS) -> None:
    rows = [{"feature": f, "label": text, "raw": text, "status": "ok", "error": None, "explainer_model": "gemma-3-1b-it",
             "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.0, "label_source": "lexical" if f in LEXICAL else "llm",
             "llm_label": text, "lexical_label": text} for f, text in labels.items()]
    rows += [{"feature": f, "label": None, "raw": "", "status": "failed", "error": "timeout", "explainer_model": "gemma-3-1b-it",
              "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "label_source": None, "llm_label": None,
              "lexical_label": None} for f in FAILED]
    write_labels_table(run / slug, merge_rows(empty_table(), rows))
    write_meta(run / slug, {"explainer_model": "gemma-3-1b-it"})


def labelled_run(root: Path, slugs: tuple[str, ...] = tuple(MODELS)) -> Path:
    run = make_exemplar_run(root / "run", slugs)
    for slug in slugs:
        hook, architecture, layer, _ = MODELS[slug]
        add_hook(run, slug, hook=hook, architecture=architecture, layer=layer)
        add_labels(run, slug)
    return run
