"""Scorers at sequence level (one activation per document): they judge WHOLE documents.

Synthetic sequence-level exemplars, written and read back like the miner's (one window per document: one
token whose span is the whole text, ``max_index`` 0): 16 features, each a topic with four words. A feature's
activation on a document is known by construction, ``k`` in 1..4 = how many of its topic words the document
holds (0 for the random documents, which hold none). Every document also carries two words of two other
features' topics, drawn independently of ``k``, so a label shuffled in from another feature is related to the
documents only by chance.

The LLM is an in-process reader (``DocumentReader``, the same role as ``KeywordOracle`` in test_scorers.py):
it rates / answers from how many label words a document holds, with real log-probabilities. It is not under
test (the scorers, their prompts' parsing and the pipeline are); it gives them a reader whose answers are
known. ``position_bias`` makes it rate documents shown earlier in a prompt higher, the failure mode of a
weak LLM that made the old per-token scoring at sequence level reward shuffled labels.

Tolerance for "shuffled labels score near chance": the mean over the 16 features must be within 3 standard
errors of chance under the null that a label says nothing about the documents. Per feature, simulation
correlates n = 24 documents (12 activating, 12 random): null standard deviation about 1 / sqrt(n - 1) = 0.21;
detection and embedding rank 12 activating vs 12 random documents: sqrt((n1 + n2 + 1) / (12 n1 n2)) = 0.12
for the AUROC; fuzzing asks 12 pairs (6 true marks, 6 decoys): 0.17. The mean of 16 independent features has
standard error 0.052, 0.030 and 0.043, hence tolerances 0.16 (r), 0.09 and 0.13 (AUROC). The embedding scorer
uses a real sentence embedder, which finds some topics related (a shuffled "bank loans" label is not exactly
unrelated to a "coffee exports" document), so its per-feature spread is wider than the rank null: 0.23
measured here, standard error 0.058, tolerance 0.17. Measured means of the shuffled labels: simulation -0.05,
detection 0.49, fuzzing 0.48 (0.50 without logprobs), embedding 0.48; correct labels: 1.00 (embedding 0.99).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autointerp.errors import UserError
from autointerp.eval.config import ScoreConfig
from autointerp.eval.pipeline import baseline_labels, score_features
from autointerp.eval.scorers import make_scorer
from autointerp.eval.scorers.base import document_text
from autointerp.exemplars.mine import EXEMPLAR_SCHEMA
from autointerp.llm.base import Completion, LLMClient, TokenLogprob, Usage
from autointerp.rundir.windows import load_windows

TOPICS = [
    ("volcano", "lava", "eruption", "magma"), ("coffee", "tea", "cocoa", "espresso"), ("navy", "frigates", "sailors", "admiral"),
    ("football", "goalkeeper", "striker", "stadium"), ("guitar", "violin", "orchestra", "melody"), ("hospital", "surgeon", "vaccine", "patients"),
    ("rain", "storm", "thunder", "snowfall"), ("bank", "loans", "interest", "mortgage"), ("railway", "train", "locomotive", "station"),
    ("fishing", "trawler", "salmon", "nets"), ("mine", "copper", "miners", "ore"), ("church", "priest", "prayer", "cathedral"),
    ("election", "ballot", "voters", "candidate"), ("telescope", "planet", "galaxy", "orbit"), ("recipe", "oven", "baking", "kitchen"),
    ("chess", "checkmate", "pawn", "grandmaster"),
]
DISTRACTORS = [("roses", "tulips", "garden", "compost"), ("chair", "table", "sofa", "wardrobe"),
               ("jacket", "shirt", "trousers", "scarf"), ("beetle", "ant", "butterfly", "wasp")]
FILLER = ["the", "and", "of", "near", "with", "a", "by", "for"]
N_DOCS = 12  # activating and random held-out documents per feature (and as many for training)
SETTINGS = ScoreConfig(n_activating=N_DOCS, n_random=N_DOCS)
TOL = {"simulation": 0.16, "detection": 0.09, "fuzzing": 0.13, "embedding": 0.17}  # 3 standard errors of the 16-feature mean under the null (docstring)
CHANCE = {"simulation": 0.0, "detection": 0.5, "embedding": 0.5, "fuzzing": 0.5}


def label_of(feature: int) -> str:
    return " ".join(TOPICS[feature])


def _document(rng, feature: int, k: int) -> str:
    """k words of the feature's topic, 4 - k distractor words, one word each of two other topics, fillers between."""
    content = [str(rng.choice(TOPICS[feature])) for _ in range(k)]
    content += [str(rng.choice(DISTRACTORS[int(rng.integers(len(DISTRACTORS)))])) for _ in range(4 - k)]
    others = rng.choice([t for t in range(len(TOPICS)) if t != feature], size=2, replace=False)
    content += [str(rng.choice(TOPICS[int(t)])) for t in others]
    rng.shuffle(content)
    words = []
    for word in content:
        words += [str(rng.choice(FILLER)), word]
    return " ".join(words).capitalize() + "."


def _row(feature: int, split: str, kind: str, rank: int, context: int, text: str, act: float) -> dict:
    """One sequence-level window as the miner writes it: one token (the document's last) spanning the whole text."""
    return {"feature": feature, "split": split, "kind": kind, "rank_or_quantile": rank, "context_id": context,
            "doc_id": f"doc{context}", "max_act": act, "max_index": 0, "tokens": [text.split()[-1]], "token_ids": [context],
            "acts": [act], "char_start": [0], "char_end": [len(text)], "text": text}


def write_sequence_exemplars(path, n_features: int = len(TOPICS), seed: int = 0) -> dict[int, dict[str, float]]:
    """exemplars.parquet of sequence-level windows; returns {feature: {document text: activation}} of the test split."""
    rng = np.random.default_rng(seed)
    rows, truth, context = [], {}, 0
    for feature in range(n_features):
        truth[feature] = {}
        for split in ("train", "test"):
            for i in range(N_DOCS):
                k = 1 + i % 4
                text = _document(rng, feature, k)
                act = float(k) + 0.01 * i  # distinct, ordered by k
                rows.append(_row(feature, split, "top" if split == "train" else "quantile", i, context, text, act))
                context += 1
                negative = _document(rng, feature, 0)
                rows.append(_row(feature, split, "random", i, context, negative, 0.0))
                context += 1
                if split == "test":
                    truth[feature][" ".join(text.split())] = act
                    truth[feature][" ".join(negative.split())] = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=EXEMPLAR_SCHEMA), path)
    return truth


def _count(label: str, text: str) -> int:
    words = set(label.lower().split())
    return sum(w in words for w in re.findall(r"[a-z]+", text.lower()))


class DocumentReader(LLMClient):
    """Rates a document 2 x (label words it holds), capped at 10; says yes to a document holding a label word, and
    that the marked document of a pair is the right one when it holds more label words than the other.

    With ``position_bias`` the n-th document of a prompt (n = 0, 1, ...) is rated ``max(0, 8 - n)`` higher: a
    reader that prefers what comes first, whatever the label. Every prompt is kept in ``prompts``.
    """

    model_name = "document-reader"

    def __init__(self, *, logprobs: bool = True, position_bias: bool = False):
        self.supports_logprobs = logprobs
        self.position_bias = position_bias
        self.usage = Usage()
        self.prompts: list[str] = []

    def _rating(self, label: str, text: str, position: int) -> int:
        bias = max(0, 8 - position) if self.position_bias else 0
        return min(10, 2 * _count(label, text) + bias)

    @staticmethod
    def _answer(p_yes: float) -> Completion:
        word = " yes" if p_yes > 0.5 else " no"
        return Completion(word, Usage(prompt_tokens=10, completion_tokens=1, calls=1),
                          [TokenLogprob(word, 0.0, {" yes": math.log(p_yes), " no": math.log(1 - p_yes)})])

    async def chat(self, messages, *, max_tokens=256, temperature=0.0, logprobs=None):
        return await self.complete(messages[-1]["content"], max_tokens=max_tokens, logprobs=logprobs)

    async def complete(self, prompt, *, max_tokens=256, temperature=0.0, logprobs=None, echo=False, echo_at=None):
        self.prompts.append(prompt)
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=1, calls=1)
        if echo:  # the token-level simulation prompt: one slot per window line (the old scoring of documents)
            return self._echo(prompt, usage)
        label = re.findall(r"Neuron B detects: (.*)", prompt)[-1]
        tail = prompt.rsplit("Neuron B detects:", 1)[1]
        if "Activation:" in tail:  # sequence-level simulation: one document, one rating
            rating = self._rating(label, re.search(r"Document: (.*)", tail).group(1), 0)
            top = {str(rating): math.log(0.9), "0": math.log(0.1)} if rating else {"0": 0.0}
            if logprobs:
                return Completion(str(rating), usage, [TokenLogprob(str(rating), 0.0, top)])
            return Completion(f" {rating}\n", usage)
        pair = re.findall(r"Document \d: (.*)", tail)
        if pair:  # sequence-level fuzzing: is the marked document of the two the firing one?
            marked = next(t for t in pair if t.startswith("<<"))
            other = next(t for t in pair if not t.startswith("<<"))
            a, b = _count(label, marked), _count(label, other)
            p_yes = 0.9 if a > b else 0.1 if a < b else 0.5
        else:  # sequence-level detection
            count = _count(label, re.search(r"Document: (.*)", tail).group(1))
            p_yes = min(0.95, 0.5 + 0.15 * count) if count else 0.1
        out = self._answer(p_yes)
        return out if logprobs else Completion(out.text, out.usage)

    def _echo(self, prompt: str, usage: Usage) -> Completion:
        label = re.search(r"detects: (.*)", prompt).group(1)
        records, pos, n = [], 0, 0
        for line in prompt.splitlines(keepends=True):
            if "\t" in line and not line.startswith(("the\t", "capital\t", "Paris\t")):
                text, rest = line.split("\t", 1)
                rating = self._rating(label, text, n)
                n += 1
                records.append(TokenLogprob(text + "\t", -1.0, {}, pos))
                records.append(TokenLogprob(rest, -1.0, {str(rating): 0.0}, pos + len(text) + 1))
            else:
                records.append(TokenLogprob(line, -1.0, {}, pos))
            pos += len(line)
        return Completion(prompt, usage, records)


@pytest.fixture(scope="module")
def sequence_windows(tmp_path_factory):
    path = tmp_path_factory.mktemp("sequence") / "exemplars.parquet"
    truth = write_sequence_exemplars(path)
    return load_windows(path, list(truth)), truth


def _score_all(scorer, client, windows) -> pd.DataFrame:
    """Every feature with its own label and a shuffled one, through the scoring pipeline."""
    labels = {f: label_of(f) for f in windows}
    rows = []
    asyncio.run(score_features(client, scorer, windows, labels, baseline_labels(labels, seed=0), sorted(windows),
                               concurrency=4, on_done=rows.append, description="test"))
    return pd.DataFrame(rows).set_index("feature")


MODES = {"completions": dict(chat=False), "chat": dict(chat=True), "no-logprobs": dict(use_logprobs=False)}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", ["simulation", "detection", "fuzzing"])
def test_llm_scorers_judge_whole_documents(sequence_windows, name, mode):
    windows, _ = sequence_windows
    scorer = make_scorer(name, dataclasses.replace(SETTINGS, **MODES[mode]), level="sequence")
    assert scorer.sequence and scorer.template.name.endswith("_sequence")
    scores = _score_all(scorer, DocumentReader(logprobs=mode != "no-logprobs"), windows)
    assert (scores[f"status_{name}"] == "ok").all()
    own, shuffled = scores[f"score_{name}"], scores[f"baseline_{name}"]
    assert (own > shuffled).all(), scores[[f"score_{name}", f"baseline_{name}"]]
    assert own.mean() > 0.9
    assert abs(shuffled.mean() - CHANCE[name]) < TOL[name], (name, mode, shuffled.mean())


def test_embedding_scorer_judges_whole_documents(sequence_windows):
    windows, _ = sequence_windows
    scorer = make_scorer("embedding", SETTINGS, level="sequence")
    scores = _score_all(scorer, None, windows)
    own, shuffled = scores["score_embedding"], scores["baseline_embedding"]
    assert own.mean() > 0.85 and (own > shuffled).mean() >= 0.9
    assert abs(shuffled.mean() - CHANCE["embedding"]) < TOL["embedding"], shuffled.mean()
    assert asyncio.run(scorer.score(None, windows[0], label_of(0))).details["n_documents"] == 2 * N_DOCS


def test_simulation_rates_each_whole_document_once(sequence_windows):
    """Truth is the document's activation; each document gets one prompt holding only the label and its text."""
    windows, truth = sequence_windows
    scorer = make_scorer("simulation", SETTINGS, level="sequence")
    client = DocumentReader()
    result = asyncio.run(scorer.score(client, windows[3], label_of(3)))
    assert len(client.prompts) == 2 * N_DOCS == result.details["n_documents"] and result.details["documents_without_rating"] == 0
    shown = [re.findall(r"Document: (.*)", p)[-1] for p in client.prompts]
    assert set(shown) == set(truth[3])  # whole documents, every held-out one of the feature
    assert all(p.endswith("Activation:\t") and p.count(label_of(3)) == 1 for p in client.prompts)
    predicted = [2 * _count(label_of(3), d) * 0.9 for d in shown]  # what the reader's logprobs give
    assert result.value == pytest.approx(np.corrcoef(predicted, [truth[3][d] for d in shown])[0, 1])


def test_no_position_artefact(sequence_windows):
    """The old artefact: scored per token, the documents of a feature sit one per line in one prompt, in order of
    activation, so a reader preferring early lines rewards any label. Scored per document it cannot."""
    windows, _ = sequence_windows
    biased = DocumentReader(position_bias=True)
    old = _score_all(make_scorer("simulation", SETTINGS, level="token"), biased, windows)
    new = _score_all(make_scorer("simulation", SETTINGS, level="sequence"), biased, windows)
    assert old["baseline_simulation"].mean() > 0.5  # the artefact, reproduced: shuffled labels score high
    assert abs(new["baseline_simulation"].mean()) < TOL["simulation"]
    assert (new["score_simulation"] > new["baseline_simulation"]).all() and new["score_simulation"].mean() > 0.8  # ratings cap at 10


def _worded_window(feature: int, kind: str, rank: int, text: str, act: float, at: int) -> dict:
    """A multi-token window (one token per word) whose single activation sits on word ``at``."""
    words = text.split(" ")
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]).tolist()
    acts = [0.0] * len(words)
    if act:
        acts[at] = act
    return {"feature": feature, "split": "test", "kind": kind, "rank_or_quantile": rank, "context_id": 1000 * at + rank,
            "doc_id": f"d{rank}", "max_act": act, "max_index": at, "tokens": [(" " if i else "") + w for i, w in enumerate(words)],
            "token_ids": list(range(len(words))), "acts": acts, "char_start": starts,
            "char_end": [s + len(w) for s, w in zip(starts, words)], "text": text}


def test_where_the_activation_sits_does_not_change_the_prediction(tmp_path):
    """Two scoring sets that differ only in which token of each window carries its one activation: at sequence
    level every document gets byte-identical prompts and the same prediction (and the same score); per token
    (the old path) the same documents score differently."""
    rng = np.random.default_rng(1)
    docs = [(_document(rng, 0, 1 + i % 4), 1.0 + i % 4) for i in range(6)] + [(_document(rng, 0, 0), 0.0) for _ in range(4)]
    sets = {}
    for at in (1, 7):
        rows = [_worded_window(0, "quantile" if act else "random", i, text, act, at) for i, (text, act) in enumerate(docs)]
        path = tmp_path / f"at{at}" / "exemplars.parquet"
        path.parent.mkdir()
        pq.write_table(pa.Table.from_pylist(rows, schema=EXEMPLAR_SCHEMA), path)
        sets[at] = load_windows(path, [0])[0]
    assert [w.max_index for w in sets[1] if w.activating] != [w.max_index for w in sets[7] if w.activating]
    settings = ScoreConfig(n_activating=6, n_random=4)
    sequence = make_scorer("simulation", settings, level="sequence")
    seen, predictions, scores = {}, {}, {}
    for at, windows in sets.items():
        client = DocumentReader()
        chosen = sequence.scoring_set(windows)
        predictions[at], _, _ = asyncio.run(sequence.predict_documents(client, chosen, label_of(0)))
        predictions[at] = dict(zip((document_text(w) for w in chosen), predictions[at]))
        scores[at] = asyncio.run(sequence.score(DocumentReader(), windows, label_of(0))).value
        seen[at] = sorted(client.prompts)
    assert seen[1] == seen[7] and predictions[1] == predictions[7] and scores[1] == scores[7]
    token = make_scorer("simulation", settings, level="token")
    old = {at: asyncio.run(token.score(DocumentReader(), w, label_of(0))).value for at, w in sets.items()}
    assert old[1] != pytest.approx(old[7])


def test_sequence_templates_are_files_with_required_placeholders(tmp_path):
    for name, template in (("simulation", "simulator_sequence"), ("detection", "detection_sequence"), ("fuzzing", "fuzzing_sequence")):
        scorer = make_scorer(name, ScoreConfig(), level="sequence")
        assert scorer.template.name == template and scorer.template.path.suffix == ".txt"
        assert make_scorer(name, ScoreConfig()).template.name != template  # token level keeps its own
    (tmp_path / "simulator_sequence.txt").write_text("Neuron B detects: {{label}}\nActivation:\t", encoding="utf-8")
    with pytest.raises(UserError, match="document"):
        make_scorer("simulation", ScoreConfig(), tmp_path, level="sequence")
    with pytest.raises(UserError, match="level"):
        make_scorer("simulation", ScoreConfig(), level="paragraph")


def test_fuzzing_pairs_balance_truth_and_order(sequence_windows):
    windows, _ = sequence_windows
    scorer = make_scorer("fuzzing", SETTINGS, level="sequence")
    items = scorer.items(scorer.scoring_set(windows[0]))
    assert len(items) == N_DOCS and sum(t for _, t in items) == N_DOCS // 2  # every activating document, half marked
    marked_first = [text.startswith("Document 1: <<") for text, _ in items]
    truth = [t for _, t in items]
    # the marked document comes first on half the true items and on half the decoys
    assert sum(m for m, t in zip(marked_first, truth) if t) == N_DOCS // 4
    assert sum(m for m, t in zip(marked_first, truth) if not t) == N_DOCS // 4
    assert all(text.count("<<") == 1 and text.count("\nDocument 2: ") == 1 for text, _ in items)


# ------------------------------------------------------------------ the score stage takes the level from the harvest
def _stage_run(tmp_path, level: str | None):
    from autointerp.config import ModelEntry, RunConfig
    from autointerp.explain.labels import write_labels
    from autointerp.rundir.layout import ModelDir

    run = tmp_path / "run"
    model = ModelDir(run / "gemma-3-270m")
    write_sequence_exemplars(model.exemplars, n_features=4)
    if level is not None:
        model.manifest.parent.mkdir(parents=True, exist_ok=True)
        model.manifest.write_text(json.dumps({"identity": {"level": level}, "complete": True}), encoding="utf-8")
    n = 4
    write_labels(model.root, pd.DataFrame({
        "feature": np.arange(n, dtype=np.int32), "label": [label_of(f) for f in range(n)], "raw": "", "status": "ok", "error": None,
        "explainer_model": "fixture", "prompt_tokens": np.zeros(n, np.int64), "completion_tokens": np.zeros(n, np.int64),
        "cost_usd": np.zeros(n), "llm_label": [label_of(f) for f in range(n)], "lexical_label": [f'the word "{TOPICS[f][0]}"' for f in range(n)],
        "label_source": "llm"}))
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry("gemma-3-270m")])
    cfg.score = dataclasses.replace(cfg.score, scorers=["embedding"], n_activating=N_DOCS, n_random=N_DOCS)
    return cfg, model


def test_score_stage_takes_the_level_from_the_harvest_and_records_it(tmp_path, capsys):
    from autointerp.cli import stage
    from autointerp.eval.stage import scoring_level
    from autointerp.explain.labels import read_labels

    cfg, model = _stage_run(tmp_path, "sequence")
    assert scoring_level(model.root) == "sequence"
    stage("score").run(cfg)
    meta = json.loads(model.labels_meta.read_text())
    assert meta["score_level"] == "sequence" and meta["scorers"]["embedding"]["level"] == "sequence"
    assert meta["scorers"]["embedding"]["identity"]["level"] == "sequence"
    assert meta["scorers"]["embedding"]["definition"].startswith("sequence level: ") and meta["definitions"]["score_embedding"].startswith("sequence level")
    assert "whole documents" in " ".join(capsys.readouterr().err.split())  # the console table says so
    table = read_labels(model.root)
    assert table[["score_embedding", "lexical_embedding", "baseline_embedding", "final_embedding"]].notna().all().all()
    # the harvest's record decides; without a harvest, exemplars.json; without either, token level
    model.manifest.unlink()
    assert scoring_level(model.root) == "token"
    model.exemplars_meta.write_text(json.dumps({"level": "sequence"}), encoding="utf-8")
    assert scoring_level(model.root) == "sequence"


def test_token_level_identity_is_unchanged(tmp_path):
    """Scores recorded before levels existed stay valid: a token-level identity has no ``level`` key."""
    from autointerp.cli import stage
    from autointerp.eval.stage import scorer_identity

    cfg, model = _stage_run(tmp_path, "token")
    assert "level" not in scorer_identity("simulation", cfg.score, None, "local", None)
    token_sha = scorer_identity("simulation", cfg.score, None, "local", None)["prompt_sha"]
    assert scorer_identity("simulation", cfg.score, None, "local", None, "sequence")["prompt_sha"] != token_sha
    stage("score").run(cfg)
    meta = json.loads(model.labels_meta.read_text())
    assert meta["score_level"] == "token" and "level" not in meta["scorers"]["embedding"]["identity"]


@pytest.mark.slow
def test_embedded_gemma_answers_the_sequence_prompts(tmp_path):
    """The real in-process LLM (embedded Gemma 3 270M) on the sequence templates: every document gets a 0-10
    rating from the digits among its answer token's top logprobs, and every yes/no item a P(yes). Mechanics only:
    at 270M the ratings barely depend on the label (simulation stays near chance on real runs)."""
    from autointerp.llm.local import LocalClient

    path = tmp_path / "exemplars.parquet"
    write_sequence_exemplars(path, n_features=1)
    windows = load_windows(path, [0])[0]
    settings = ScoreConfig(n_activating=4, n_random=2)
    client = LocalClient()
    try:
        simulation = make_scorer("simulation", settings, level="sequence")
        result = asyncio.run(simulation.score(client, windows, label_of(0)))
        assert result.details == {"n_documents": 6, "documents_without_rating": 0} and math.isfinite(result.value)
        assert result.usage.calls == 6 and result.usage.completion_tokens == 6
        for name in ("detection", "fuzzing"):
            result = asyncio.run(make_scorer(name, settings, level="sequence").score(client, windows, label_of(0)))
            assert result.details["unanswered"] == 0 and math.isfinite(result.details["auroc"]), (name, result.details)
    finally:
        asyncio.run(client.aclose())
