"""Hard negatives (issue 23): windows holding a feature's main words where it does not fire, mined by the real
exemplars stage and scored by every scorer next to the random negatives.

The run is written through the real writers (corpus, harvest shards and manifest, a TopK SAE in the SAELens
layout) and mined by the real ``exemplars_stage``. Its "model" puts activation on SAE latents by design:

- 0 contextual: fires on "bank" only right after "north" (every other "bank" is silent);
- 1 token: fires on every "apple", and on "stone" only right after "cold" (so its main words are "apple"
  and "stone", and its hard negatives hold "stone");
- 2 every: fires on every "violin", its only word: no hard negative can exist;
- 3 dead.

Tolerances. The embedding scorer ranks 16 held-out activating windows against 16 hard negatives: under the
null that the label does not tell them apart the AUROC has standard deviation sqrt(33 / (12 * 256)) = 0.10.
Measured over 8 seeds of this run (MiniLM): the word-only label "bank" on the contextual feature 0.97-1.00
against random windows but 0.16-0.40 against hard negatives (at or below chance: the "north" in every
activating window pulls it away from a label naming only "bank"); "apple" on the token feature 0.79-0.91
against hard negatives (its held-out "cold stone" windows hold no "apple"); "bank" right after "north"
0.87-0.98. The thresholds (< 0.6, > 0.65, gaps > 0.3) sit 1.4 standard deviations or more beyond those ranges.

The LLM scorers run through the real score stage with the keyword reader of test_scorers.py (an LLM stand-in
that says a word fires iff the label holds it; not under test). A word-only label ("bank") then says yes to
every hard negative, so detection and fuzzing score exactly chance (0.5) against them, and simulation loses
the correlation its predictions on the hard negatives' "bank" tokens cost; "apple" loses nothing, because no
hard negative of its feature holds an "apple".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from autointerp.config import ModelEntry, RunConfig
from autointerp.data.corpus import Document
from autointerp.eval.config import ScoreConfig
from autointerp.eval.scorers import make_scorer
from autointerp.exemplars.config import ExemplarConfig
from autointerp.exemplars.profile import read_profiles, word_at, word_spans
from autointerp.exemplars.stage import exemplars_stage
from autointerp.harvest.shards import read_shard
from autointerp.rundir.layout import RunDir
from autointerp.rundir.windows import load_windows
from autointerp.sae.saelens import load_sae
from helpers.runs import save_identity_sae, write_documents, write_piece_harvest

SLUG = "toy"
CONTEXTUAL, TOKEN, EVERY, DEAD = 0, 1, 2, 3
D = 4
FILLER = ["a", "of", "and", "to", "in", "was", "it", "for", "on", "with", "as", "at", "by", "from", "this", "that", "some",
          "many", "day", "year", "time", "place", "people", "city", "road", "house", "light", "music", "story", "table"]
EVENTS = {"north bank": 0.45, "bank": 0.45, "apple": 0.4, "cold stone": 0.2, "stone": 0.45, "violin": 0.3}  # per document
EXEMPLARS = ExemplarConfig(n_top=6, n_quantiles=4, per_quantile=8, n_random=16, window_before=6, window_after=1)
QUOTA = 16  # held-out activating windows per feature: round(0.5 * 4 * 8)


def _fires(words: list[str], i: int) -> dict[int, float]:
    """The designed latents on word i (one token per word)."""
    word, before = words[i], words[i - 1] if i else ""
    if word == "bank" and before == "north":
        return {CONTEXTUAL: 2.0 + (i % 3) * 0.3}
    if word == "apple":
        return {TOKEN: 2.5}
    if word == "stone" and before == "cold":
        return {TOKEN: 1.0}
    return {EVERY: 1.5} if word == "violin" else {}


def _documents(n_docs: int, rng: np.random.Generator) -> list[list[str]]:
    docs = []
    for _ in range(n_docs):
        words = [str(w) for w in rng.choice(FILLER, size=44)]
        for event, p in EVENTS.items():
            if rng.random() < p:
                at = int(rng.integers(1, len(words)))
                words[at:at] = event.split()
        docs.append(words)
    return docs


def make_designed_run(root, n_docs: int = 260, ctx_len: int = 24, shard_contexts: int = 120, seed: int = 0) -> RunConfig:
    """The run directory above, harvested and with its SAE saved (not yet mined)."""
    rng = np.random.default_rng(seed)
    model = RunDir(root).model(SLUG)
    words = _documents(n_docs, rng)

    def vector(doc: int, i: int) -> np.ndarray:
        x = np.zeros(D, np.float32)
        for latent, value in _fires(words[doc], i).items():
            x[latent] = value
        return x

    pieces = {f"toy/d{d:03d}": [w if i == 0 else " " + w for i, w in enumerate(ws)] for d, ws in enumerate(words)}  # one token per word
    texts = write_piece_harvest(model, pieces, vector, d_model=D, ctx_len=ctx_len, shard_contexts=shard_contexts)
    write_documents(root, [Document(k, v) for k, v in texts.items()], "toy")
    save_identity_sae(model.sae_dir, D, 2, SLUG)
    cfg = RunConfig(run_dir=str(root), models=[ModelEntry(SLUG)])
    cfg.exemplars = EXEMPLARS
    return cfg


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = make_designed_run(tmp_path_factory.mktemp("hard_negatives") / "run")
    outcome = exemplars_stage(cfg, cfg.models[0], progress=False)
    return cfg, RunDir(cfg.run_path).model(SLUG), outcome


def _dense(model) -> tuple[np.ndarray, pd.DataFrame]:
    """Brute force (tests only): every harvest row's SAE latents, and the harvest index."""
    sae = load_sae(model.sae_dir).eval()
    manifest = json.loads(model.manifest.read_text())
    parts = [read_shard(model.harvest, s["index"]) for s in manifest["shards"]]
    x = torch.cat([p[0] for p in parts]).float()
    with torch.no_grad():
        out = sae.encode(x)
    dense = torch.zeros(x.shape[0], D).scatter(1, out.top_indices, out.top_acts.float()).clamp_min(0).numpy()
    return dense, pd.concat([p[1] for p in parts], ignore_index=True)


def _word_of_peak(row) -> str:
    base = row.char_start[0]
    spans = word_spans(row.text)
    k = word_at(row.text, spans, [s for s, _ in spans], row.char_start[row.max_index] - base, row.char_end[row.max_index] - base)
    return row.text[spans[k][0]:spans[k][1]].lower()


def test_hard_negatives_hold_a_main_word_and_never_fire(designed):
    cfg, model, outcome = designed
    ex = pd.read_parquet(model.exemplars)
    stats = pd.read_parquet(model.feature_stats).set_index("feature")
    profiles = read_profiles(model.lexical_profile)
    assert profiles[CONTEXTUAL].main_words() == ["bank"] and profiles[TOKEN].main_words() == ["apple", "stone"]
    assert profiles[EVERY].main_words() == ["violin"]
    hard = ex[ex.kind == "hard_negative"]
    assert len(hard) and (hard.split == "test").all() and (hard.max_act == 0).all()
    dense, index = _dense(model)
    row_of = {(d, s): i for i, (d, s) in enumerate(zip(index["doc_id"], index["char_start"]))}
    for row in hard.itertuples():
        # the peak token is (the last token of) one of the feature's main words, cut from the document text
        assert _word_of_peak(row) in profiles[row.feature].main_words(), (row.feature, row.text)
        # zero on the whole window: in the file, and re-encoded from the harvest by brute force
        assert not np.any(row.acts)
        rows = [row_of[(row.doc_id, s)] for s in row.char_start]
        assert not dense[rows, row.feature].any(), (row.feature, row.text)
    # disjoint from the feature's other windows, at most one per context
    assert not ex.duplicated(["feature", "context_id"]).any()
    # as many as the held-out activating windows; none for the feature that fires on every occurrence of its word
    held_out = ex[ex.kind.isin(["top", "quantile"]) & (ex.split == "test")].groupby("feature").size()
    n_hard = hard.groupby("feature").size().reindex(range(D), fill_value=0)
    assert held_out[CONTEXTUAL] == held_out[TOKEN] == QUOTA and n_hard[CONTEXTUAL] == n_hard[TOKEN] == QUOTA
    assert n_hard[EVERY] == 0 and held_out[EVERY] == QUOTA and n_hard[DEAD] == 0
    assert (stats["n_hard_negatives"] == n_hard).all()
    # the token feature's hard negatives hold "stone" (every "apple" fires), never after "cold"
    token = hard[hard.feature == TOKEN]
    assert {_word_of_peak(r) for r in token.itertuples()} == {"stone"}
    assert all(r.tokens[r.max_index - 1].strip() != "cold" for r in token.itertuples())
    # counted, in exemplars.json and in the stage's summary
    meta = json.loads(model.exemplars_meta.read_text())
    assert meta["hard_negatives"] == {"mined": True, "n_windows": 2 * QUOTA, "n_features_with": 2, "n_features_without": 1}
    assert outcome.counts["n_without_hard_negatives"] == 1 and "hard_negative" in meta["definitions"]


def test_hard_negatives_are_seeded_and_leave_the_other_windows_alone(designed, tmp_path):
    from autointerp.data.corpus import load_saved_documents
    from autointerp.exemplars.mine import mine_exemplars

    cfg, model, _ = designed
    docs = load_saved_documents(RunDir(cfg.run_path).corpus)
    again = mine_exemplars(load_sae(model.sae_dir), model.harvest, docs, tmp_path / "again", EXEMPLARS, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(again.exemplars_path), pd.read_parquet(model.exemplars))
    other = mine_exemplars(load_sae(model.sae_dir), model.harvest, docs, tmp_path / "other", dataclasses.replace(EXEMPLARS, seed=1), progress=False)
    first, second = pd.read_parquet(model.exemplars), pd.read_parquet(other.exemplars_path)
    assert set(first[first.kind == "hard_negative"].context_id) != set(second[second.kind == "hard_negative"].context_id)


def test_a_word_only_label_is_at_chance_against_hard_negatives_only_for_a_contextual_feature(designed):
    _, model, _ = designed
    windows = load_windows(model.exemplars, [CONTEXTUAL, TOKEN], splits=("test",))
    scorer = make_scorer("embedding", ScoreConfig())
    contextual = asyncio.run(scorer.score(None, windows[CONTEXTUAL], 'the word "bank"'))
    token = asyncio.run(scorer.score(None, windows[TOKEN], 'the word "apple"'))
    assert contextual.n_hard == token.n_hard == QUOTA
    assert contextual.value > 0.9, contextual  # against random windows the word looks like a fine label
    assert contextual.hard < 0.6, contextual  # against hard negatives it says nothing: chance or below
    assert token.hard > 0.65 and token.hard > contextual.hard + 0.3, token  # "apple" does say where the token feature fires
    said = asyncio.run(scorer.score(None, windows[CONTEXTUAL], 'the word "bank" right after "north"'))
    assert said.hard > contextual.hard + 0.3, said  # saying when it fires is what the hard negatives reward


def test_every_scorer_scores_every_label_kind_against_hard_negatives(designed):
    from helpers.keyword_oracle import KeywordOracle

    from autointerp.eval.stage import plan_scores, run_score, scorer_identity
    from autointerp.explain.labels import read_labels, write_labels
    from autointerp.explain.lexical import lexical_label

    cfg, model, _ = designed
    words = {CONTEXTUAL: "bank", TOKEN: "apple", EVERY: "violin"}
    profiles = read_profiles(model.lexical_profile)
    features = sorted(words)
    write_labels(model.root, pd.DataFrame({
        "feature": np.asarray(features, np.int32), "label": [words[f] for f in features], "raw": "", "status": "ok", "error": None,
        "explainer_model": "fixture", "prompt_tokens": np.zeros(3, np.int64), "completion_tokens": np.zeros(3, np.int64), "cost_usd": np.zeros(3),
        "llm_label": [words[f] for f in features], "lexical_label": [lexical_label(profiles[f]) for f in features], "label_source": "llm"}))
    names = ["simulation", "detection", "fuzzing", "embedding"]
    settings = dataclasses.replace(cfg.score, scorers=names)
    identities = {n: scorer_identity(n, settings, None, "fixture", None) for n in names}
    plan = plan_scores(model.root, settings, names, identities, overwrite=False)
    asyncio.run(run_score(KeywordOracle(), model.root, plan, settings, None, names, identities, concurrency=2, label=SLUG))
    table = read_labels(model.root).set_index("feature")
    for s in names:
        hard = [f"{kind}_{s}_hard" for kind in ("score", "lexical", "baseline", "final")]
        assert table.loc[[CONTEXTUAL, TOKEN], hard].notna().all().all(), s  # every label kind, against hard negatives
        assert table.loc[EVERY, hard].isna().all() and math.isfinite(table.loc[EVERY, f"score_{s}"]), s  # NaN, never chance
    assert list(table["n_hard_negatives"]) == [QUOTA, QUOTA, 0]
    assert table["hard_negatives_missing"].isna().tolist() == [True, True, False]
    assert "fires wherever its main words occur" in table.loc[EVERY, "hard_negatives_missing"]
    # what a word-only label is worth to the keyword reader: all of it against random windows, nothing against hard negatives
    for s in ("detection", "fuzzing"):
        assert table.loc[CONTEXTUAL, f"score_{s}"] == 1.0 and table.loc[CONTEXTUAL, f"score_{s}_hard"] == 0.5, s
        assert table.loc[TOKEN, f"score_{s}_hard"] == pytest.approx(table.loc[TOKEN, f"score_{s}"]), s
    assert table.loc[CONTEXTUAL, "score_simulation_hard"] < table.loc[CONTEXTUAL, "score_simulation"] - 0.1
    assert table.loc[TOKEN, "score_simulation_hard"] == pytest.approx(table.loc[TOKEN, "score_simulation"], abs=0.01)
    assert table.loc[CONTEXTUAL, "score_embedding_hard"] < 0.6 < table.loc[TOKEN, "score_embedding_hard"]
    pd.testing.assert_series_equal(table["final_detection_hard"], table["score_detection_hard"], check_names=False)  # label_source llm

    # the report's label-quality table: each kind against random and, next to it, against hard negatives
    from autointerp.report.artifacts import load_model_inputs
    from autointerp.report.label_quality import kind_table

    text = "\n".join(kind_table(load_model_inputs(cfg, cfg.run_path, cfg.models[0]), names))
    lines = text.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("| detection | LLM labels | random |")))
    mean = table["score_detection_hard"].mean()  # over the two features that have hard negatives
    assert lines[at + 1].startswith(f"| detection | LLM labels | hard | 2 | {mean:.3f} |") and mean < table["score_detection"].mean() - 0.2
    assert "| detection | shuffled labels | hard |" in text and "detection against hard negatives:" in text
    assert "1 of 3 scored features have none" in text and "- Why: none in the harvest: the feature fires wherever" in text

