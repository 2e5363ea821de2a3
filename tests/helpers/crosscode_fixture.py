"""The trained synthetic crosscoder shared by tests/crosscode/test_crosscode.py and test_crosscode_latents.py
(session scope, registered in conftest.py: trained once per test run).

The synthetic pair (helpers/runs.py's make_synthetic_run) is built from a shared part and two exclusive parts of a known
dictionary, written into each model's space through its own random rotation, with different tokenizations
(B splits every word in two). Every document also carries a hostile markup fragment (its punctuation and
words are ordinary word units with codes), so the latent pages must render it inert.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from autointerp.compare.tables import MATCHES_SCHEMA, write_parquet
from autointerp.compare.units import WORD_PATTERN
from autointerp.config import ModelEntry, RunConfig
from autointerp.crosscode.config import CrosscodeConfig
from autointerp.crosscode.stage import crosscode_stage
from autointerp.data.corpus import Document
from autointerp.io import write_json
from autointerp.rundir.layout import RunDir
from helpers.runs import SyntheticSpec, make_synthetic_run, synthetic_documents

SPEC = SyntheticSpec(n_docs=60)
HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)">'


def _config(run) -> RunConfig:
    cfg = RunConfig(run_dir=str(run.run_dir), models=[ModelEntry(s) for s in run.slugs])
    cfg.crosscode = CrosscodeConfig(d_sae=192, k=6, epochs=12, batch_size=256, latent_pages=2)
    cfg.explain = dataclasses.replace(cfg.explain, labeller="lexical")  # the explain path without an LLM
    cfg.exemplars = dataclasses.replace(cfg.exemplars, n_top=6, n_quantiles=4, per_quantile=2, n_random=6)  # small: test time
    return cfg


def _write_matches(run, extra_unshared: int = 5) -> None:
    """matches.parquet and stats.json in compare's contract: the true shared pairs shared (combined rank
    first, so they get feature and pair pages), a few wrong pairs unshared."""
    truth = sorted(run.truth)
    wrong = [(a, (b + 1) % len(run.concept_of_b)) for a, b in truth[:extra_unshared]]
    rows = [{"feature_a": a, "feature_b": b, "method": "activation", "activation_corr": 0.9 if i < len(truth) else 0.05,
             "label_similarity": np.nan, "p_value": 0.001, "shared": i < len(truth), "combined_score": 0.0, "combined_rank": i + 1,
             "label_a": None, "label_b": None, "domain": None, "activation_confidence": 0.99, "label_confidence": np.nan,
             "kind": "contextual" if i < len(truth) else "unshared", "contextual_corr": 0.5, "lexical_null_corr": 0.1,
             "word_share_a": 0.2, "word_share_b": 0.2} for i, (a, b) in enumerate(truth + wrong)]
    pair = RunDir(run.run_dir).pair(*run.slugs)
    pair.root.mkdir(parents=True, exist_ok=True)
    write_parquet(pd.DataFrame(rows), pair.matches, MATCHES_SCHEMA)
    write_json(pair.stats, {"unit": "word", "null": {"threshold": 0.3, "alpha": 0.01, "method": "derangement", "n_samples": 100}})


def hostile_documents(spec, rng):
    """The synthetic documents with ``HOSTILE`` in the middle of each: more word units (its punctuation
    runs and words), spans recomputed with compare's own word pattern."""
    docs, _spans = synthetic_documents(spec, rng)
    out_docs, out_spans = [], []
    for doc in docs:
        words = list(WORD_PATTERN.finditer(doc.text))
        cut = words[len(words) // 2].end()
        text = doc.text[:cut] + " " + HOSTILE + doc.text[cut:]
        out_docs.append(Document(doc.doc_id, text))
        out_spans.append(np.array([m.span() for m in WORD_PATTERN.finditer(text)], np.int64))
    return out_docs, out_spans


@pytest.fixture(scope="session")
def crosscoded(tmp_path_factory):
    run = make_synthetic_run(tmp_path_factory.mktemp("cc") / "run", SPEC, documents=hostile_documents)
    _write_matches(run)
    cfg = _config(run)
    (summary, reused), = crosscode_stage(cfg, progress=False)
    return run, cfg, summary, reused

def _chosen(run) -> list[tuple[int, str]]:
    from autointerp.io import read_json

    rec = read_json(RunDir(run.run_dir).crosscoder(*run.slugs).latent_exemplars_record)["summary"]
    return list(zip(rec["latents"], rec["groups"]))
