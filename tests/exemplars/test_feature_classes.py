"""Feature classes (token / contextual / topical) on planted features through the real harvest -> SAE -> mine path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autointerp.data.corpus import Document, corpus_fingerprint
from autointerp.exemplars.config import ExemplarConfig
from autointerp.exemplars.feature_classes import ClassStats
from autointerp.exemplars.mine import mine_exemplars
from autointerp.io import read_json
from autointerp.rundir.layout import RunDir
from autointerp.sae.saelens import load_sae
from helpers.runs import SyntheticSpec, token_table, write_documents, write_synthetic_model

N_EACH = 8  # planted features per class
VOCAB = [f"w{i:03d}" for i in range(300)]


def _planted(seed: int = 0, n_docs: int = 90, words: tuple[int, int] = (120, 200)):
    """Documents of random words, and a code per word unit: token features fire on every occurrence of their
    word, contextual ones on their word only right after their trigger word, topical ones on a random 40% of the
    words of the documents of their topic (3 documents each)."""
    rng = np.random.default_rng(seed)
    token_words = VOCAB[:N_EACH]
    ctx_words, triggers = VOCAB[N_EACH : 2 * N_EACH], VOCAB[2 * N_EACH : 3 * N_EACH]
    topic_docs = rng.permutation(n_docs)[: 3 * N_EACH].reshape(N_EACH, 3)
    common = np.array(VOCAB[3 * N_EACH :])
    docs, spans, codes = [], [], []
    for d in range(n_docs):
        seq = list(rng.choice(common, size=int(rng.integers(*words))))
        for i in range(N_EACH):  # the planted words, each a few times per document
            for w in [token_words[i]] * int(rng.integers(0, 3)) + [ctx_words[i]] * int(rng.integers(2, 6)):
                seq.insert(int(rng.integers(0, len(seq) + 1)), w)
            if rng.random() < 0.5:  # the contextual word after its trigger: a minority of its occurrences
                at = int(rng.integers(0, len(seq) + 1))
                seq[at:at] = [triggers[i], ctx_words[i]]
        text, sp, pos = [], [], 0
        for j, w in enumerate(seq):
            pos += 1 if j else 0
            sp.append((pos, pos + len(w)))
            pos += len(w)
        docs.append(Document(f"planted/e{d:03d}/s0", " ".join(seq)))
        spans.append(np.array(sp, np.int64))
        code = np.zeros((len(seq), 3 * N_EACH), np.float32)
        value = lambda: rng.uniform(0.5, 2.0)  # noqa: E731
        for j, w in enumerate(seq):
            for i in range(N_EACH):
                if w == token_words[i]:
                    code[j, i] = value()
                if w == ctx_words[i] and j and seq[j - 1] == triggers[i]:
                    code[j, N_EACH + i] = value()
        for i in range(N_EACH):
            if d in topic_docs[i]:
                fires = rng.random(len(seq)) < 0.4
                code[fires, 2 * N_EACH + i] = rng.uniform(0.5, 2.0, int(fires.sum()))
        codes.append(code)
    truth = ["token"] * N_EACH + ["contextual"] * N_EACH + ["topical"] * N_EACH
    return docs, spans, np.concatenate(codes), truth


def test_planted_classes_are_recovered_through_harvest_sae_and_mine(tmp_path):
    docs, spans, codes, truth = _planted()
    run = RunDir(tmp_path)
    write_documents(tmp_path, docs, "planted")
    spec = SyntheticSpec(noise=0.02, k=8, shard_rows=3000)
    rng = np.random.default_rng(1)
    features = rng.permutation(len(truth))  # SAE latent j encodes concept features[j]
    write_synthetic_model(tmp_path, "planted", docs, token_table(spans, split=False), codes, features, len(truth) + 8, spec, 48, rng,
                 corpus_fingerprint(docs), 0)
    model = run.model("planted")
    result = mine_exemplars(load_sae(model.sae_dir), model.harvest, docs, model.root, ExemplarConfig(), progress=False)
    stats = pd.read_parquet(result.stats_path)
    got = stats.set_index("feature")["feature_class"]
    expected = pd.Series([truth[c] for c in features], index=range(len(features)))
    correct = (got.loc[expected.index] == expected)
    print(pd.crosstab(expected, got.loc[expected.index]))
    assert correct.mean() >= 0.9, f"{correct.mean():.0%} classified correctly"
    for cls in ("token", "contextual", "topical"):  # each class, not only the overall share
        assert correct[expected == cls].mean() >= 0.75, cls
    meta = read_json(model.exemplars_meta)
    assert meta["feature_classes"]["counts"]["topical"] >= 0.75 * N_EACH
    assert "token" in meta["feature_classes"]["rule"]
    # contextual features: hard negatives exist and fire on a minority of their word's occurrences
    ctx = [j for j, c in enumerate(features) if truth[c] == "contextual"]
    assert (stats.loc[ctx, "n_hard_negatives"] > 0).all()
    assert (stats.loc[ctx, "word_fire_rate"] <= 0.5).all()
    tok = [j for j, c in enumerate(features) if truth[c] == "token"]
    assert (stats.loc[tok, "word_eta2"] >= 0.5).all() and (stats.loc[tok, "word_fire_rate"] > 0.9).all()


def test_class_statistics_against_a_direct_computation():
    """word_eta2 and doc_concentration from the streaming accumulator equal a direct pandas computation."""
    rng = np.random.default_rng(3)
    n, d_sae = 4000, 5
    index = pd.DataFrame({"token": rng.choice(["▁a", "▁B", "▁c", "d", "▁e"], n), "doc_id": rng.choice([f"doc{i}" for i in range(12)], n)})
    acts = np.where(rng.random((n, d_sae)) < 0.2, rng.uniform(0.1, 1, (n, d_sae)), 0.0)
    acts[:, 0] = np.where(index["token"] == "▁a", 1.0, 0.0)  # a pure token detector
    stats = ClassStats(d_sae)
    for part in (index.iloc[:1500], index.iloc[1500:]):  # two shards
        word, doc = stats.shard(part)
        rows, feats = np.nonzero(acts[part.index] > 0)
        stats.add(feats.astype(np.int32), acts[part.index][rows, feats].astype(np.float32), word[rows], doc[rows])
    out = stats.classify(acts.sum(0), None)
    words = index["token"].str.replace("▁", "").str.lower()
    for f in range(d_sae):
        a = pd.Series(acts[:, f])
        total = ((a - a.mean()) ** 2).sum()
        between = (a.groupby(words).transform("mean") - a.mean()).pow(2).sum()
        groups = words.nunique()
        adjusted = max(0.0, 1 - (1 - between / total) * (n - 1) / (n - groups))
        assert out.loc[f, "word_eta2"] == pytest.approx(adjusted, abs=1e-4)
        p = a.groupby(index["doc_id"]).sum() / a.sum()
        q = index["doc_id"].value_counts(normalize=True)
        m = a.sum() ** 2 / (a ** 2).sum()
        expected = (q ** 2).sum() + (1 - (q ** 2).sum()) / m
        assert out.loc[f, "doc_concentration"] == pytest.approx((p ** 2).sum() / expected, rel=1e-4)
    assert out.loc[0, "feature_class"] == "token" and out.loc[0, "word_fire_rate"] == pytest.approx(1.0)
