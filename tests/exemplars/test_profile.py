"""Lexical profiles: a feature built to fire on one word gets that word, through the real harvest -> mine path.

The run is written through the real writers (shards, SAE in the SAELens layout, the exemplar miner); the
"model" puts activation on SAE latent 0 exactly at the word "per", and on other latents at random words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from autointerp.exemplars.profile import KINDS, LexicalProfile, compute_profiles, read_profiles, write_profiles
from autointerp.explain.lexical import lexical_label, word_label
from helpers.runs import make_mined_toy_run

VOCAB = ["the", "rate", "growth", "people", "capita", "dollars", "cases", "land", "income", "water", "area", "total"]
D = 8


def _one_word_run(root, word: str = "per", n_docs: int = 40, seed: int = 0, entities=None):
    """Documents of random words with ``word`` sprinkled in; latent 0 fires on ``word`` only."""
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(n_docs):
        words = [word if rng.random() < 0.12 else str(rng.choice(VOCAB)) for _ in range(int(rng.integers(30, 60)))]
        documents.append([w if i == 0 else " " + w for i, w in enumerate(words)])  # the leading space in the token (GPT-2 style)
    return make_mined_toy_run(root, documents, lambda piece: (0, 1.5, 3.0) if piece.strip() == word else (1 + rng.integers(D - 1), 0.5, 2.0), rng, d=D,
                              entities=entities)


def test_a_feature_that_fires_on_one_word_gets_that_word_as_its_lexical_label(tmp_path):
    model = _one_word_run(tmp_path)
    frame = compute_profiles(model.exemplars)
    write_profiles(frame, model.lexical_profile)
    schema = pq.read_schema(model.lexical_profile)
    assert [(f.name, str(f.type)) for f in schema] == [("feature", "int64"), ("kind", "string"), ("text", "string"), ("share", "double"), ("count", "int64")]
    profiles = read_profiles(model.lexical_profile)
    per = profiles[0]
    assert per.top("word", 1)[0][:2] == ("per", 1.0)  # all of latent 0's mass is on "per"
    assert per.top("token", 1)[0][0] == "per"  # the token " per" without its space
    assert lexical_label(per).startswith('the word "per"')
    assert per.summary().startswith('"per" 100%')
    # the other latents fire on many words: none of them is labelled "per", each names its own words
    for feature in range(1, D):
        assert "per" not in [w for w, _, _ in profiles[feature].top("word", 10)]
        assert lexical_label(profiles[feature]).startswith("the words ")
    # shares are fractions of the mass (they sum to 1 over all word types, and the file keeps the top ones)
    for feature, prof in profiles.items():
        assert sum(s for _, s, _ in prof.rows["word"]) <= 1.0 + 1e-9
        assert [s for _, s, _ in prof.rows["word"]] == sorted((s for _, s, _ in prof.rows["word"]), reverse=True)
    assert list(frame["kind"].unique()) == [k for k in KINDS if k in set(frame["kind"])]


def test_profile_reads_training_windows_only(tmp_path):
    model = _one_word_run(tmp_path)
    table = pq.read_table(model.exemplars).to_pandas()
    table.loc[table["split"] == "test", "acts"] = table.loc[table["split"] == "test", "acts"].map(lambda a: np.full(len(a), 9.0, np.float32))
    before = compute_profiles(model.exemplars)
    pq.write_table(pq.read_table(model.exemplars).from_pandas(table, schema=pq.read_schema(model.exemplars), preserve_index=False), model.exemplars)
    pd.testing.assert_frame_equal(before, compute_profiles(model.exemplars))


def test_context_and_entity_rows_and_summary():
    prof = LexicalProfile(3, {"word": [("per", 0.71, 40), ("capita", 0.09, 5), ("the", 0.01, 2)], "left": [("US dollars", 0.4, 8)],
                              "right": [("100", 0.3, 6)], "entity": [("Nigeria", 0.6, 20)]})
    assert prof.summary() == '"per" 71%, "capita" 9%; left "US dollars"; right "100"; mostly Nigeria'
    assert lexical_label(prof) == 'the word "per" (in "US dollars per", "per 100"), mostly in Nigeria'
    spread = LexicalProfile(4, {"word": [("est", 0.3, 9), ("July", 0.2, 5), ("(", 0.1, 4), ("x", 0.01, 1)]})
    assert lexical_label(spread) == 'the words "est", "July", "("'
    assert lexical_label(None) is None and lexical_label(LexicalProfile(5)) is None


def _entity_rows(profile: LexicalProfile) -> list[tuple[str, float]]:
    return [(t, round(s, 6)) for t, s, _ in profile.top("entity", 10)]


def test_entities_come_from_the_corpus_and_a_document_id_is_never_one(tmp_path):
    """A corpus without an entity field (every document its own entity) gives no entity rows, so no label ends in
    "mostly in toy/d3"; an entity field's value is named; a heading shared by an entity's documents ("Sylvania:
    Economy") names it instead of its code; the miner (Documents with entities) and the stage (the saved
    corpus frame) agree."""
    model = _one_word_run(tmp_path, entities=lambda n: "statistics")
    assert _entity_rows(read_profiles(model.lexical_profile)[0]) == [("statistics", 1.0)]  # the miner's profile
    doc_ids = sorted(set(pq.read_table(model.exemplars, columns=["doc_id"]).column("doc_id").to_pylist()))
    plain = pd.DataFrame({"doc_id": doc_ids, "text": ["words words words"] * len(doc_ids)})

    def profile(documents):
        return read_profiles(write_profiles(compute_profiles(model.exemplars, documents), tmp_path / "p.parquet"))[0]

    for documents in (None, plain, plain.assign(entity=None)):  # no entities: nothing named, never a doc id
        per = profile(documents)
        assert per.top("entity") == [] and "mostly" not in lexical_label(per) + per.summary()
    titled = profile(plain.assign(entity="statistics"))
    assert _entity_rows(titled) == [("statistics", 1.0)] and lexical_label(titled).endswith(", mostly in statistics")
    n = np.array([int(d.rsplit("d", 1)[1]) for d in doc_ids])
    codes = np.where(n % 2 == 0, "fr", "sy")
    headed = plain.assign(entity=codes, text=[("Freedonia" if c == "fr" else "Sylvania") + ": Economy\nwords" for c in codes])
    assert {t for t, _ in _entity_rows(profile(headed))} == {"Freedonia", "Sylvania"}
    mixed = headed.assign(text=[f"Section {i}: Economy\nwords" for i in range(len(doc_ids))])  # headings that differ within an entity
    assert {t for t, _ in _entity_rows(profile(mixed))} == {"fr", "sy"}
    half = profile(plain.assign(entity=np.where(n % 2 == 0, "statistics", None)))  # shares are of all the mass
    assert len(half.top("entity")) == 1 and 0.2 < half.top("entity")[0][1] < 0.8


def test_sentence_position_is_profiled_and_named(tmp_path):
    """A feature firing on "Note" only where it starts a line is labelled so; one firing on "note" inside
    sentences is not; the window's first word counts only when the window starts the document."""
    rng = np.random.default_rng(1)
    documents = []
    for _ in range(30):
        pieces = []
        for i in range(6):
            line = [" " + str(rng.choice(VOCAB)) for _ in range(int(rng.integers(4, 9)))]
            pieces += [("\n" if i else "") + "Note"] + line + [" note", " " + str(rng.choice(VOCAB))]
        documents.append(pieces)

    def latent_of(piece: str):  # latent 0: "Note" at a line start; latent 1: "note" inside a line; others at random
        return {"Note": (0, 1.5, 3.0), "note": (1, 1.5, 3.0)}.get(piece.strip(), (2 + rng.integers(D - 2), 0.5, 2.0))

    model = make_mined_toy_run(tmp_path, documents, latent_of, rng, d=D)
    write_profiles(compute_profiles(model.exemplars), model.lexical_profile)
    profiles = read_profiles(model.lexical_profile)
    line, inside = profiles[0], profiles[1]
    assert line.top("position", 1)[0][0] == "at the start of a line" and line.top("position", 1)[0][1] >= 0.5
    assert ', at the start of a line' in lexical_label(line)  # 'the word "Note" (in "Note the", ...), at the start of a line'
    assert "start of" not in word_label(line)  # the word-only baseline stays word-only
    assert inside.top("position", 1)[0][0] == "inside a sentence"
    assert "start of" not in lexical_label(inside)
