"""What the pages show beyond the mined exemplars, computed once and then only read.

Three derived artifacts, each keyed by the identity of what it was made from (SAE weights' sha256, the
harvest's identity and shards, the documents) and recomputed only when that changes or when a page
needs something the file lacks:

- ``<model>/activation_histogram.parquet``, ``compare/<A>__<B>/cache/pair_windows.parquet`` and, for three
  or more models, ``compare/cache/universal_windows.parquet`` (``universal_windows``) from one SAE pass over
  each harvest (``encode_pass``): seconds to tens of seconds on CPU, once;
- ``<model>/logit_effects.parquet`` for causal LMs (``exemplars.logit_effects``): the model is loaded
  only when some paged feature is missing from the file.

When the report is written elsewhere (``--out``) the run directory is only read: what is missing is
computed in memory and not stored (``persist=False``). Anything that cannot be computed (no harvest
shards, no model files offline) leaves a one-line note on the page instead of failing the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.exemplars import logit_effects as logits
from autointerp.io import file_sha256
from autointerp.report import pair_windows as pw
from autointerp.report import universal_windows as uw
from autointerp.report.artifacts import ModelInputs, RunInputs
from autointerp.report.histogram import read_histograms, write_histograms
from autointerp.rundir.layout import RunDir, ShardPaths

log = logging.getLogger("autointerp")


@dataclass
class PageData:
    histograms: dict[str, dict[int, tuple[np.ndarray, float]]] = field(default_factory=dict)
    logits: dict[str, dict[int, dict]] = field(default_factory=dict)  # model -> feature -> {"up": [...], "down": [...]}
    notes: dict[str, str] = field(default_factory=dict)  # model or pair key -> why something is not shown
    pairs: dict[str, pw.PairWindows] = field(default_factory=dict)  # pair key -> windows
    universal: uw.UniversalWindows | None = None  # the listed universal chains' windows (notes["universal"]: why not)


def _harvest_ready(m: ModelInputs) -> bool:
    files = m.files
    if not (m.manifest and m.manifest.get("complete") and files.sae.weights.is_file()):
        return False
    return all(ShardPaths.of(files.harvest, int(s["index"])).activations.is_file() for s in m.manifest.get("shards", []))


def _sha(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime): the SAE weights are hashed once per report."""
    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = file_sha256(path)
    return _SHA[key]


_SHA: dict[tuple, str] = {}


def _identity(m: ModelInputs) -> dict:
    return {"sae": _sha(m.files.sae.weights), "harvest": m.manifest.get("identity"), "shards": m.manifest.get("shards")}


def collect(run: RunInputs, pair_lists: dict[str, list[tuple[int, int]]], paged: dict[str, list[int]], persist: bool,
            chains: list[dict[str, int]] | None = None) -> PageData:
    """Histograms, pair windows, universal windows (of ``chains``: one feature per model) and logit effects for
    the pages, from the stored files or computed now."""
    data = PageData()
    ready = {m.slug: _harvest_ready(m) for m in run.models}
    ids = {m.slug: _identity(m) for m in run.models if ready[m.slug]}
    hist_todo = set()
    for m in run.models:
        if not ready[m.slug]:
            data.notes[m.slug] = "no activation histogram: the harvest shards or the SAE are missing"
            continue
        found = read_histograms(m.files.activation_histogram, ids[m.slug])
        if found is None and m.stats is not None:
            hist_todo.add(m.slug)
        elif found is not None:
            data.histograms[m.slug] = found
    run_dir = RunDir(run.run_dir)
    docs_sha = file_sha256(run_dir.documents) if run_dir.documents.is_file() else None
    pair_todo: dict[str, tuple] = {}
    for p in run.pairs:
        wanted = pair_lists.get(p.key, [])
        if not wanted:
            continue
        a, b = run.model(p.a), run.model(p.b)
        if not (ready.get(p.a) and ready.get(p.b) and docs_sha and a.level == "token" and b.level == "token"):
            data.notes[p.key] = "no side-by-side windows: both harvests (token level), SAEs and the corpus are needed"
            continue
        identity = {"a": ids[p.a], "b": ids[p.b], "documents": docs_sha, "params": pw.identity_params()}
        found = pw.read(run_dir.pair(p.a, p.b).pair_windows, identity, wanted)
        if found is not None:
            data.pairs[p.key] = found
        else:
            pair_todo[p.key] = (p, identity, wanted)
    chain_todo = _universal(run, chains or [], ready, ids, docs_sha, data)
    if hist_todo or pair_todo or chain_todo:
        _encode(run, hist_todo, pair_todo, data, persist, chain_todo)
    for m in run.models:
        _logit_effects(m, paged.get(m.slug, []), data, persist)
    return data


def _universal(run: RunInputs, chains: list[dict[str, int]], ready: dict, ids: dict, docs_sha: str | None, data: PageData) -> tuple | None:
    """The stored universal windows into ``data``; (identity, chains) when they must be computed; None otherwise."""
    if not chains:
        return None
    if not (docs_sha and all(ready.get(m) and run.model(m).level == "token" for m in chains[0])):
        data.notes["universal"] = "no windows: every model's harvest (token level), SAE and the corpus are needed"
        return None
    identity = {"models": {m: ids[m] for m in chains[0]}, "documents": docs_sha, "params": uw.identity_params()}
    data.universal = uw.read(RunDir(run.run_dir).universal_windows, identity, chains)
    return None if data.universal is not None else (identity, chains)


def _encode(run: RunInputs, hist_todo: set[str], pair_todo: dict[str, tuple], data: PageData, persist: bool,
            chain_todo: tuple | None = None) -> None:
    from autointerp.compare.units import WordIndex
    from autointerp.data.corpus import load_saved_documents
    from autointerp.report.encode_pass import encode_for_pages
    from autointerp.sae.saelens import load_sae

    run_dir = RunDir(run.run_dir)
    docs = load_saved_documents(run_dir.corpus)
    doc_index_of = {d.doc_id: i for i, d in enumerate(docs)}
    words = WordIndex.build(docs) if pair_todo or chain_todo else None
    features: dict[str, set[int]] = {}
    for p, _, wanted in pair_todo.values():
        features.setdefault(p.a, set()).update(fa for fa, _ in wanted)
        features.setdefault(p.b, set()).update(fb for _, fb in wanted)
    for chain in chain_todo[1] if chain_todo else []:
        for m, f in chain.items():
            features.setdefault(m, set()).add(int(f))
    encoded = {}
    for slug in sorted(hist_todo | set(features)):
        m = run.model(slug)
        stats = m.stats.set_index("feature")["max_act"] if m.stats is not None else None
        sae = load_sae(m.files.sae_dir)
        max_act = np.zeros(sae.cfg.d_sae, np.float32)
        if stats is not None:
            known = stats.index.to_numpy(np.int64)
            inside = known < len(max_act)
            max_act[known[inside]] = stats.to_numpy(np.float32)[inside]
        log.info("report: encoding the %s harvest for histograms and pair windows", slug)
        encoded[slug] = encode_for_pages(sae, m.files.harvest, m.manifest, doc_index_of, words, features.get(slug, ()), max_act)
        del sae
        if slug in hist_todo:
            e = encoded[slug]
            data.histograms[slug] = {f: (e.histogram[f], float(e.max_act[f])) for f in range(len(e.max_act))}
            if persist:
                write_histograms(m.files.activation_histogram, e.histogram, e.max_act, _identity(m))
    columns = {slug: (e.words.tocsc(), {int(f): i for i, f in enumerate(e.features)}) for slug, e in encoded.items() if e.words is not None}

    def column(slug: str, f: int) -> np.ndarray:
        matrix, col = columns[slug]
        return matrix[:, col[f]].toarray().ravel().astype(np.float64)

    for key, (p, identity, wanted) in pair_todo.items():
        result = pw.build(words, docs, wanted, lambda f: column(p.a, f), lambda f: column(p.b, f), encoded[p.a].covered & encoded[p.b].covered)
        data.pairs[key] = result
        if persist:
            pw.write(run_dir.pair(p.a, p.b).pair_windows, result, identity, wanted)
    if chain_todo:
        identity, chains = chain_todo
        covered = np.logical_and.reduce([encoded[m].covered for m in chains[0]])
        data.universal = uw.build(words, docs, chains, column, covered)
        if persist:
            uw.write(run_dir.universal_windows, data.universal, identity, chains)


def _model_config(m: ModelInputs) -> tuple[str | None, dict | None]:
    """(what to load, its config) from the harvest manifest's record of the model: a local directory, or a
    hub id already in the local cache (never the network); (None, None) when neither is here."""
    record = (m.manifest or {}).get("model") or {}
    path = record.get("path")
    if path and (Path(path) / "config.json").is_file():
        return path, json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    target = path or record.get("spec") or m.spec
    try:
        from transformers import AutoConfig

        return target, AutoConfig.from_pretrained(target, local_files_only=True).to_dict()
    except Exception:  # noqa: BLE001 - not cached / not a model id: the page says why there are no logit effects
        return None, None


def _is_causal(config: dict) -> bool:
    archs = config.get("architectures") or []
    return any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or bool(config.get("is_decoder"))


def _logit_effects(m: ModelInputs, paged: list[int], data: PageData, persist: bool) -> None:
    if not m.files.sae.weights.is_file():
        data.notes[f"logits:{m.slug}"] = "no logit effects: the SAE is missing"
        return
    sha = _sha(m.files.sae.weights)
    stored = logits.read_logit_effects(m.files.logit_effects, sha)
    have = set(stored["feature"].astype(int)) if stored is not None else set()
    missing = sorted(set(paged) - have)
    if not missing:
        data.logits[m.slug] = logits.by_feature(stored)
        return
    path, config = _model_config(m)
    if config is None:
        data.notes[f"logits:{m.slug}"] = (f"no logit effects: the model's files are not available here ({m.spec}); "
                                          "they need its unembedding and final norm")
        if stored is not None:
            data.logits[m.slug] = logits.by_feature(stored)
        return
    if not _is_causal(config):
        data.notes[f"logits:{m.slug}"] = f"no logit effects: {m.spec} is not a causal language model (no unembedding)"
        return
    from autointerp.models.load import load_model
    from autointerp.sae.saelens import load_sae

    log.info("report: logit effects of %d %s features", len(missing), m.slug)
    lm = load_model(path, device="cpu", dtype="float32")
    sae = load_sae(m.files.sae_dir)
    fresh = logits.logit_effects(lm.model, lm.blocks_path, lm.tokenizer, sae.W_dec.detach().float(), missing)
    del lm, sae
    frame = pd.concat([stored, fresh], ignore_index=True) if stored is not None else fresh
    if persist:
        logits.write_logit_effects(m.files.logit_effects, frame, sha)
    data.logits[m.slug] = logits.by_feature(frame)
