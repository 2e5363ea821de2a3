"""Concept domains over every live matchable feature of a comparison, not only the labelled few.

Why: domains of the dozen labelled features say nothing about what two dictionaries cover. Every feature
that takes part in matching (not dead, not rare: ``LevelResult``) gets a domain from its *text*: its name
(``autointerp.explain.names``: the final label, else the name made from its lexical profile) followed by
the words around the peak of its best top window. The text is embedded with the [compare] embedder and the
domain is the one whose description embeds closest (cosine, argmax) — ``METHOD`` says so in stats.json.

A side without exemplars (a control's second-seed SAE or random-weights model) has no texts, so none of its
features gets a domain; its counts are ``None`` and the shared pairs are counted by the real side's domain.

Texts are short (``CONTEXT_TOKENS`` around the peak) and their embeddings are cached per model
(``ModelDir.text_embeddings``, keyed by embedder and text), so the pair, the model's ceiling and floors and
any re-run embed each text once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import NamedTuple

import numpy as np

from autointerp.compare.inputs import ComparedModel, model_names
from autointerp.models.embedder import embed_texts, embed_texts_cached
from autointerp.rundir.layout import ModelDir
from autointerp.rundir.windows import load_windows

log = logging.getLogger("autointerp")
CONTEXT_TOKENS = 3  # tokens kept either side of the peak of the feature's best top window (short texts embed fast)
BATCH = 128  # texts per embedding batch (sorted by length by the embedder, so little padding)
METHOD = ("zero-shot on every live matchable feature (not dead, not rare): the embedding of the feature's name "
          "(final label, else its lexical-profile name) + the words around the peak of its best top window, "
          "nearest [compare] domains description by cosine (argmax)")


class SideDomains(NamedTuple):
    """One side's domain per feature, and how many of its live matchable features got none (no text)."""

    domains: dict[int, str]
    n_live: int
    n_unassigned: int
    available: bool  # False: the side has no exemplars (a control), nothing was assigned


def feature_texts(m: ComparedModel, features: list[int]) -> dict[int, str]:
    """feature -> "name: words around the peak" for ``features`` with a name or a top window."""
    if m.exemplars_path is None or not features:
        return {}
    names = model_names(m)
    windows = load_windows(m.exemplars_path, features, kinds=("top",), n_top=1, n_quantile=0)
    out = {}
    for f in features:
        parts = [names[f].text] if f in names else []
        if windows.get(f):
            parts.append(" ".join(windows[f][0].trimmed(CONTEXT_TOKENS, CONTEXT_TOKENS).text.split()))
        if parts:
            out[f] = ": ".join(parts)
    return out


def nearest_domains(texts: list[str], domains: dict[str, str], embedder: str, cache=None) -> list[str]:
    """The nearest domain (by description embedding) of each text; ``cache``: an embeddings cache file."""
    if not texts:
        return []
    embeddings = embed_texts_cached(texts, embedder, cache, BATCH) if cache is not None else embed_texts(texts, embedder, BATCH)
    names = list(domains)
    centres = embed_texts([domains[n] for n in names], embedder)
    return [names[i] for i in np.argmax(embeddings @ centres.T, axis=1)]


def side_domains(m: ComparedModel, live: np.ndarray, domains: dict[str, str], embedder: str) -> SideDomains:
    """Domains of the live matchable features (``live``: bool per feature) of one side."""
    features = np.flatnonzero(live).tolist()
    if m.exemplars_path is None:
        return SideDomains({}, len(features), len(features), False)
    started = time.perf_counter()
    texts = feature_texts(m, features)
    keys = sorted(texts)
    found = nearest_domains([texts[f] for f in keys], domains, embedder, ModelDir(m.model_dir).text_embeddings)
    log.info("domains of %s: %d live matchable features, %d with a text, %.1f s", m.slug, len(features), len(keys),
             time.perf_counter() - started)
    return SideDomains(dict(zip(keys, found)), len(features), len(features) - len(keys), True)


def domain_counts(names: list[str], a: SideDomains, b: SideDomains, shared_domains) -> dict:
    """The stats' ``domains`` record: per model the live matchable features per domain, and the shared pairs by
    ``shared_domains`` (matches.parquet ``domain``: the A feature's domain, else the B feature's)."""
    def count(side: SideDomains) -> dict | None:
        if not side.available:
            return None
        c = Counter(side.domains.values())
        return {n: int(c.get(n, 0)) for n in names}

    pair_domains = Counter(d if isinstance(d, str) else None for d in shared_domains)
    return {"names": names, "method": METHOD, "counts_a": count(a), "counts_b": count(b),
            "counts_shared": {n: int(pair_domains.get(n, 0)) for n in names},
            "n_live_a": a.n_live, "n_live_b": b.n_live, "n_unassigned_a": a.n_unassigned, "n_unassigned_b": b.n_unassigned,
            "n_shared_unassigned": int(pair_domains.get(None, 0))}
