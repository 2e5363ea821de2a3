"""Templates, explainer formatting/parsing, the local backend's logprobs, and explain + score end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from autointerp.config import ModelEntry, RunConfig
from autointerp.errors import UserError
from autointerp.explain.config import ExplainConfig
from autointerp.explain.candidates import render
from autointerp.explain.explainer import format_example, parse_label
from autointerp.explain.prompts import REQUIRED, load_template
from autointerp.rundir.layout import ModelDir
from autointerp.rundir.windows import Window, load_windows
from helpers.runs import make_exemplar_run


def test_packaged_templates_load_with_their_placeholders():
    from autointerp.eval.scorers import LEVELS, SCORERS

    templates = [load_template(name) for name in REQUIRED]
    templates += [cls.read_template(level) for cls in SCORERS.values() for level in LEVELS if cls.template_for(level)]
    assert len(templates) == 8
    for template in templates:
        assert template.required and set(template.required) <= template.placeholders
        assert len(template.text) < 1200  # short enough for a 270M model's speed


def test_user_template_overrides_and_missing_placeholder_is_named(tmp_path):
    from autointerp.eval.config import ScoreConfig
    from autointerp.eval.scorers import make_scorer

    (tmp_path / "explainer.txt").write_text("Tell me about:\n{{examples}}\nAnswer:", encoding="utf-8")
    assert load_template("explainer", tmp_path).text.startswith("Tell me about")
    assert load_template("simulator", tmp_path).path.parent.name == "prompts"  # not overridden: packaged
    (tmp_path / "simulator.txt").write_text("Neuron: {{label}}\nno examples slot here", encoding="utf-8")
    with pytest.raises(UserError, match=r"simulator.*\{\{examples\}\}"):
        make_scorer("simulation", ScoreConfig(), tmp_path)
    (tmp_path / "detection.txt").write_text("{{label}} {{example}} {{mystery}}", encoding="utf-8")
    with pytest.raises(UserError, match="mystery"):
        load_template("detection", tmp_path).render(label="x", example="y")
    with pytest.raises(UserError, match="not a directory"):
        load_template("explainer", tmp_path / "missing")


def _window(pieces, acts, kind="top", split="train"):
    acts = np.asarray(acts, dtype=np.float32)
    ends = np.cumsum([len(p) for p in pieces]).tolist()
    starts = [0] + ends[:-1]
    return Window(0, split, kind, 0, "doc", float(acts.max()), int(acts.argmax()), tuple(pieces), acts, tuple(starts), tuple(ends), "".join(pieces))


def test_explainer_marks_firing_tokens_with_0_10_strengths(tmp_path):
    w = _window(["the", " capital", " is", " Paris", " and", " Lyon"], [0, 0, 0, 2.0, 0, 1.0])
    assert format_example(w, feature_max=2.0) == "the capital is <<Paris>>(10) and <<Lyon>>(5)"
    run = make_exemplar_run(tmp_path)
    windows = load_windows(run / "gemma-3-270m" / "exemplars.parquet", [0])[0]
    prompt = render(load_template("explainer"), windows, ExplainConfig(n_top=3, n_quantile=0), profile=None)[0]
    block = prompt.rsplit("Neuron C fires", 1)[1]
    assert block.count("\n") == 4 and "<<volcano>>(10)" in block and prompt.endswith("Neuron C detects:")  # the label slot ends it
    assert all("<<" in line for line in block.splitlines()[1:4])  # only train windows, each with a mark
    assert "test" not in block and "eruption lasted three days" not in block  # held-out windows never shown


@pytest.mark.parametrize(("raw", "label"), [
    (" names of European cities\nNeuron D fires on", "names of European cities"),
    ("Explanation: \"coffee exports\".", "coffee exports"),
    (" The neuron detects: percentages", "percentages"),
    ("\n\n  military ranks", "military ranks"),
    (" " + "very long label " * 30, None),  # capped, checked below
    (" 12 34", None), ("", None), (" - votes in the <<Constitutional>>(10", "votes in the Constitutional"),
    ("1. 2019 - 100", None), (" <<(10)10\n<<(10", None), ("Examples:\n1. x", None),
])
def test_parse_label(raw, label):
    parsed = parse_label(raw, max_chars=40)
    if "very long" in raw:
        assert parsed is not None and len(parsed) <= 40 and parsed.startswith("very long label")
    else:
        assert parsed == label


def test_exemplars_from_another_sae_is_a_user_error(tmp_path):
    from autointerp.exemplars.current import require_exemplars as check_inputs
    from autointerp.rundir.layout import ModelDir
    from autointerp.rundir.record import StageRecord

    model_dir = make_exemplar_run(tmp_path) / "gemma-3-270m"
    files = ModelDir(model_dir)
    files.sae_dir.mkdir()
    files.sae.weights.write_bytes(b"weights v2")
    StageRecord("exemplars", {}, {"sae_sha256": hashlib.sha256(b"weights v1").hexdigest()}).save(files.exemplars_record)
    with pytest.raises(UserError, match="different SAE"):
        check_inputs(model_dir)
    StageRecord("exemplars", {}, {"sae_sha256": hashlib.sha256(b"weights v2").hexdigest()}).save(files.exemplars_record)
    check_inputs(model_dir)


def test_score_without_labels_and_embedding_scoring_without_llm(tmp_path):
    """`score --scorer embedding` runs with no LLM at all, on labels written by hand."""
    from autointerp.cli import stage
    from autointerp.explain.labels import merge_rows, empty_table, write_labels

    run = make_exemplar_run(tmp_path)
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry("gemma-3-270m")])
    cfg.llm = dataclasses.replace(cfg.llm, backend="openai", base_url="http://127.0.0.1:9/v1")  # unreachable: must not be used
    cfg.score = dataclasses.replace(cfg.score, scorers=["embedding"])
    with pytest.raises(UserError, match="autointerp explain"):
        stage("score").run(cfg)
    rows = [dict(feature=f, label=lbl, raw=lbl, status="ok", error=None, explainer_model="hand", prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
            for f, lbl in ((0, "volcanoes and lava"), (1, "coffee, tea and cocoa"), (2, "navy and army"))]
    write_labels(run / "gemma-3-270m", merge_rows(empty_table(), rows))
    stage("score").run(cfg)
    table = pd.read_parquet(run / "gemma-3-270m" / "labels.parquet")
    assert (table["score_embedding"] > table["baseline_embedding"]).all()
    assert pq.read_schema(run / "gemma-3-270m" / "labels.parquet").field("feature").type == "int32"
    before = (run / "gemma-3-270m" / "labels.parquet").stat().st_mtime_ns
    stage("score").run(cfg)  # up to date: a no-op
    assert (run / "gemma-3-270m" / "labels.parquet").stat().st_mtime_ns == before


@pytest.mark.slow
def test_local_echo_logprobs_equal_a_direct_forward_pass():
    import torch

    from autointerp.llm.local import LocalClient

    client = LocalClient()
    prompt = "The capital of France is Paris.\tunknown\n7"
    out = asyncio.run(client.complete(prompt, max_tokens=2, logprobs=5, echo=True))
    lm = client.loaded()
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), dim=-1)
    n = ids.shape[1]
    assert out.usage.prompt_tokens == n and out.usage.completion_tokens == 2
    echoed = out.logprobs[: n - 1]  # the BOS is not echoed
    assert "".join(r.token for r in echoed) == prompt
    for pos, record in enumerate(echoed):  # record pos is token pos + 1, predicted by the logits at pos
        assert record.logprob == pytest.approx(float(logp[pos, ids[0, pos + 1]]), abs=1e-3)
        best = torch.topk(logp[pos], 5)
        assert list(record.top.values())[0] == pytest.approx(float(best.values[0]), abs=1e-3)
        assert prompt[record.text_offset:].startswith(record.token)
    plain = asyncio.run(client.complete(prompt, max_tokens=2))
    assert out.text == prompt + plain.text  # echo does not change what is generated
    # echo_at: records only for the tokens starting at the asked offsets, equal to the full echo's there
    asked = {echoed[3].text_offset, echoed[-1].text_offset}
    some = asyncio.run(client.complete(prompt, max_tokens=2, logprobs=5, echo=True, echo_at=sorted(asked)))
    prompt_records = some.logprobs[: len(some.logprobs) - 2]
    assert {r.text_offset for r in prompt_records} == asked
    full = {r.text_offset: r for r in echoed}
    for record in prompt_records:
        assert record.logprob == pytest.approx(full[record.text_offset].logprob, abs=1e-4)
        assert list(record.top) == list(full[record.text_offset].top)
    assert some.text == out.text  # generation is unchanged
    asyncio.run(client.aclose())


def _run_end_to_end(tmp_path, llm_overrides: dict, scorers: tuple[str, ...] = ("simulation", "detection", "embedding"),
                    n_activating: int = 3, n_random: int = 2) -> tuple:
    from autointerp.cli import stage

    run = make_exemplar_run(tmp_path)
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry("gemma-3-270m")])
    cfg.llm = dataclasses.replace(cfg.llm, **llm_overrides)
    cfg.explain = dataclasses.replace(cfg.explain, n_features=3, select="random", n_candidates=1)  # one LLM call per feature
    cfg.score = dataclasses.replace(cfg.score, scorers=list(scorers), n_activating=n_activating, n_random=n_random)
    usage = stage("explain").run(cfg).detail["gemma-3-270m"]
    assert usage["calls"] == 3
    # a re-run that retries one failed feature (served from the response cache) adds to the recorded usage
    labels = ModelDir(run / "gemma-3-270m").labels
    table = pd.read_parquet(labels)
    table.loc[0, "status"] = "failed"
    table.to_parquet(labels, index=False)
    again = stage("explain").run(cfg).detail["gemma-3-270m"]
    assert (again["calls"], again["cached_calls"]) == (0, 1)  # this invocation: the retry, answered from the cache
    total = json.loads(ModelDir(run / "gemma-3-270m").labels_meta.read_text())["usage"]["explain"]
    assert (total["calls"], total["prompt_tokens"]) == (usage["calls"], usage["prompt_tokens"])  # totals kept, not reset to 0
    assert total["cached_calls"] == usage["cached_calls"] + 1
    stage("score").run(cfg)
    table = pd.read_parquet(run / "gemma-3-270m" / "labels.parquet")
    meta = pd.read_json(run / "gemma-3-270m" / "labels.json", typ="series")
    return cfg, run, table, meta


def _check_table(table, meta, scorers=("simulation", "detection", "embedding")):
    assert list(table["feature"]) == [0, 1, 2]  # the dead feature 3 is never chosen
    assert set(table["status"]) <= {"ok", "failed"}
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 1 and ok["label"].str.len().gt(0).all()
    assert table.loc[table["status"] == "failed", "error"].notna().all()
    for name in scorers:
        assert ok[f"status_{name}"].eq("ok").all() and ok[f"score_{name}"].notna().all()
        assert f"baseline_{name}" in table.columns
    assert (ok["prompt_tokens"] > 0).all() and {"usage", "scorers", "definitions", "explainer_model"} <= set(meta.index)


@pytest.mark.slow
def test_explain_and_score_end_to_end_on_the_local_backend(tmp_path):
    from autointerp.cli import stage

    cfg, run, table, meta = _run_end_to_end(tmp_path, {"backend": "local"})
    _check_table(table, meta)
    assert meta["usage"]["explain"]["backend"] == "local"
    # Re-running makes no new LLM calls: ok labels and scores are kept; failed labels are retried (from the cache).
    rerun = stage("explain").run(cfg).detail
    assert all(summary["calls"] == 0 for summary in rerun.values())
    assert stage("score").run(cfg).detail == {}
    from autointerp.explain.labels import write_labels

    feature = int(table.loc[table["status"] == "ok", "feature"].iloc[0])
    table.loc[table["feature"] == feature, ["status", "label", "error"]] = ["failed", None, "injected"]
    write_labels(run / "gemma-3-270m", table)
    again = stage("explain").run(cfg).detail["gemma-3-270m"]
    assert again["calls"] == 0 and again["cached_calls"] >= 1  # same prompt: answered by the sqlite cache
    relabelled = pd.read_parquet(run / "gemma-3-270m" / "labels.parquet").set_index("feature")
    assert relabelled.loc[feature, "status"] == "ok" and pd.isna(relabelled.loc[feature, "error"])


@pytest.mark.slow
def test_explain_and_score_end_to_end_against_llama_cpp_server(tmp_path, llama_server):
    """The real llama.cpp server: completions with echo + logprobs drive simulation, and yes/no logprobs drive
    fuzzing, through the HTTP API (detection asks the same yes/no question: the local-backend test covers it;
    two activating and one random window per feature keep the ~100 server calls of the score stage short)."""
    scorers = ("simulation", "fuzzing", "embedding")
    cfg, run, table, meta = _run_end_to_end(tmp_path, {"backend": "openai", "base_url": llama_server.base_url, "model": llama_server.model},
                                            scorers=scorers, n_activating=2, n_random=1)
    _check_table(table, meta, scorers)
    assert meta["usage"]["explain"]["backend"] == "openai"
    assert table["score_simulation"].notna().all()
    ok = table[table["status"] == "ok"]
    assert ok["status_fuzzing"].eq("ok").all() and ok["score_fuzzing"].between(0, 1).all()  # AUROC of P(yes) from server logprobs


def test_matched_selection_labels_both_sides_of_the_best_shared_pairs(tmp_path):
    """select = "matched" reads the comparison: the n best shared activation pairs, each model its own side;
    without a comparison it says which command to run."""
    from autointerp.compare.label_priority import write_label_priority
    from autointerp.explain.config import ExplainConfig
    from autointerp.explain.stage import select_features
    from autointerp.rundir.layout import PairDir

    run = make_exemplar_run(tmp_path, models=("gemma-3-270m", "minilm-l6"))
    cfg = ExplainConfig(n_features=2, select="matched")
    with pytest.raises(UserError, match="autointerp compare"):
        select_features(run / "gemma-3-270m", cfg)
    pair = run / "compare" / "gemma-3-270m__minilm-l6"
    pair.mkdir(parents=True)
    pd.DataFrame({
        "feature_a": [0, 1, 2, 3], "feature_b": [2, 0, 1, 3], "method": ["activation", "both", "activation", "label"],
        "activation_corr": [0.5, 0.9, 0.7, 0.99], "shared": [True, True, False, False],
    }).to_parquet(pair / "matches.parquet")
    with pytest.raises(UserError, match="rerun `autointerp compare`"):  # explain reads compare's rankings, not its table
        select_features(run / "gemma-3-270m", cfg)
    write_label_priority(PairDir(pair), ("gemma-3-270m", "minilm-l6"), (run / "gemma-3-270m", run / "minilm-l6"))
    assert select_features(run / "gemma-3-270m", cfg) == [0, 1]  # best two shared activation pairs: (1, 0), (0, 2)
    assert select_features(run / "minilm-l6", cfg) == [0, 2]
    more = ExplainConfig(n_features=3, select="matched")  # only two shared: topped up with the best unshared pair
    assert select_features(run / "gemma-3-270m", more) == [0, 1, 2]
    assert select_features(run / "minilm-l6", more) == [0, 1, 2]


@pytest.mark.slow
def test_explain_through_a_faulty_server_records_every_feature(tmp_path, llama_server, fault_proxy):
    """Half the requests answered with 429 / 500 / an empty body / malformed JSON: the run finishes, every
    feature is labelled or recorded as failed with its reason, retries are counted, and the next run only
    re-asks for the failed ones (the rest come from the labels table and the cache)."""
    from autointerp.cli import stage

    proxy = fault_proxy(llama_server.base_url, fault_rate=0.5, faults=("429", "500", "empty", "malformed"), seed=3)
    run = make_exemplar_run(tmp_path)
    cfg = RunConfig(run_dir=str(run), models=[ModelEntry("gemma-3-270m")])
    cfg.llm = dataclasses.replace(cfg.llm, backend="openai", base_url=proxy.base_url, model=llama_server.model,
                                  max_retries=1, backoff_s=0.05, backoff_max_s=0.1)
    cfg.explain = dataclasses.replace(cfg.explain, n_features=3, select="random", n_candidates=1, lexical=False)  # an LLM failure stays a failure
    first = stage("explain").run(cfg).detail["gemma-3-270m"]
    table = pd.read_parquet(run / "gemma-3-270m" / "labels.parquet")
    assert len(table) == 3 and set(table["status"]) <= {"ok", "failed"}
    assert table.loc[table["status"] == "failed", "error"].str.len().gt(0).all()
    assert proxy.total_injected >= 1 and first["retries"] >= 1, (proxy.posts, proxy.requests, dict(proxy.injected), first)
    n_failed = int((table["status"] == "failed").sum())
    posts_before = proxy.posts
    stage("explain").run(cfg)
    assert proxy.posts - posts_before <= n_failed * (1 + cfg.llm.max_retries)  # only failed features are asked again
