"""Crosscoder latents: their selection, word-unit windows with both models' reads, labels with a shuffled
baseline, and HTML pages (on the trained synthetic crosscoder of tests/helpers/crosscode_fixture.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from autointerp.compare.units import WORD_PATTERN
from autointerp.rundir.layout import RunDir
from helpers.crosscode_fixture import _chosen, _config


@pytest.fixture(scope="module")
def trained(crosscoded):
    return crosscoded




@pytest.mark.slow
def test_latent_selection_is_bounded_seeded_and_named(trained):
    from autointerp.crosscode.selection import GROUPS, select_latents

    run, cfg, *_ = trained
    chosen = _chosen(run)
    latents = pd.read_parquet(RunDir(run.run_dir).crosscoder(*run.slugs).latents)
    cls = dict(zip(latents["latent"], latents["class"]))
    groups = pd.Series([g for _, g in chosen]).value_counts()
    assert set(groups.index) <= set(GROUPS) and groups.max() <= cfg.crosscode.latent_pages
    assert len({j for j, _ in chosen}) == len(chosen)  # each latent once
    # the synthetic crosscoder has exclusive latents on both sides and shared ones; the post-hoc view agrees
    assert groups["a_only"] == groups["b_only"] == groups["random_shared"] == cfg.crosscode.latent_pages
    used = latents[latents["class"] == "a_only"].sort_values(["n_units", "latent"], ascending=[False, True])["latent"].head(cfg.crosscode.latent_pages)
    assert [j for j, g in chosen if g == "a_only"] == [int(j) for j in used]
    assert all(cls[j] == "shared" for j, g in chosen if g == "random_shared")
    again = select_latents(latents, cfg.crosscode.latent_pages, cfg.crosscode.seed)
    assert list(zip(again["latent"], again["group"])) == chosen


@pytest.mark.slow
def test_latent_windows_show_both_models_on_the_same_words(trained):
    from safetensors.torch import load_file

    from autointerp.compare.representation import pooled_word_activations
    from autointerp.compare.units import WordIndex
    from autointerp.compare.inputs import ready_inputs as side
    from autointerp.data.corpus import load_saved_documents

    run, *_ = trained
    out = RunDir(run.run_dir).crosscoder(*run.slugs)
    windows = pd.read_parquet(out.latent_exemplars)
    latents = pd.read_parquet(out.latents).set_index("latent")
    docs = load_saved_documents(RunDir(run.run_dir).corpus)
    # independent: compare's mean pooling of each harvest and the saved raw-space weights, written out by hand
    words = WordIndex.build(docs)
    index_of = {d.doc_id: i for i, d in enumerate(docs)}
    x = {k: pooled_word_activations((m := side(RunDir(run.run_dir).model(s), s)).harvest_dir, m.manifest, index_of, words).matrix.astype(np.float64)
         for k, s in zip("ab", run.slugs)}
    t = {k: v.double().numpy() for k, v in load_file(str(out.weights)).items()}
    assert {j for j, _ in _chosen(run)} == set(windows["feature"])
    for j, g in windows.groupby("feature"):
        assert set(g["kind"]) == {"top", "quantile", "random"} and set(g.loc[g["kind"] == "top", "split"]) == {"train"}
        assert set(g.loc[g["kind"] == "quantile", "split"]) == {"train", "test"} == set(g.loc[g["kind"] == "random", "split"])
        units = [u for ids in g.loc[g["kind"] != "random", "token_ids"] for u in ids]
        assert len(units) == len(set(units))  # activating windows never share a word
        for r in g.itertuples():
            doc = docs[r.context_id]
            spans = [m.span() for m in WORD_PATTERN.finditer(doc.text)]
            first = spans.index((r.char_start[0], r.char_end[0]))
            assert list(zip(r.char_start, r.char_end)) == spans[first:first + len(r.tokens)]  # consecutive word units
            assert list(r.tokens) == [doc.text[a:b] for a, b in zip(r.char_start, r.char_end)]
            u = np.asarray(r.token_ids)
            read_a = (x["a"][u] - t["b_dec_a"]) @ t["W_enc_a"][:, j]
            read_b = (x["b"][u] - t["b_dec_b"]) @ t["W_enc_b"][:, j]
            np.testing.assert_allclose(r.read_a, read_a, rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(r.read_b, read_b, rtol=1e-4, atol=1e-3)
            pre = np.maximum(read_a + read_b + t["b_enc"][j], 0)
            np.testing.assert_allclose(r.acts, np.where(pre > t["threshold"], pre, 0), rtol=1e-4, atol=1e-3)
            assert r.kind != "random" or not np.any(r.acts)
        centre = g[g["kind"] == "top"]
        ra = np.array([a[i] for a, i in zip(centre["read_a"], centre["max_index"])])
        rb = np.array([b[i] for b, i in zip(centre["read_b"], centre["max_index"])])
        cls = latents.loc[j, "class"]
        if cls == "a_only":  # read from A's activation alone; B's part is noise
            assert np.abs(rb).mean() < 0.1 * ra.mean(), (j, ra.mean(), rb.mean())
        elif cls == "b_only":
            assert np.abs(ra).mean() < 0.1 * rb.mean(), (j, ra.mean(), rb.mean())


@pytest.mark.slow
def test_latent_labels_are_written_with_their_shuffled_baseline(trained):
    from autointerp.io import read_json

    run, *_ = trained
    out = RunDir(run.run_dir).crosscoder(*run.slugs)
    labels = pd.read_parquet(out.latent_labels).set_index("feature")
    assert sorted(labels.index) == sorted(j for j, _ in _chosen(run))
    assert (labels["status"] == "ok").all() and (labels["label_source"] == "lexical").all()  # labeller = "lexical": no LLM
    assert labels["label"].str.startswith("the word").all()
    for column in ("final_embedding", "lexical_embedding", "baseline_embedding"):
        assert labels[column].between(0, 1).all(), column
    # the baseline: each latent scored with another latent's label (a derangement of the labels)
    assert sorted(labels["baseline_label"]) == sorted(labels["label"])
    own = [lab for j, lab in labels["label"].items()]
    assert any(b != a for a, b in zip(own, labels["baseline_label"]))
    rec = read_json(out.latent_labels_record)
    assert rec["complete"] and rec["settings"]["backend"] == "none" and rec["settings"]["explain"]["labeller"] == "lexical"
    assert rec["summary"]["mean_shuffled"] == pytest.approx(labels["baseline_embedding"].mean(), abs=1e-4)
    assert rec["summary"]["n_compared"] == len(labels)


class MarkedWord:
    """An LLM stand-in for the explainer: names the word marked most often in the examples it is shown."""

    model_name, backend, price = "marked-word", "fake", None

    def __init__(self):
        from autointerp.llm.base import Usage

        self.usage, self.prompts = Usage(), []

    async def complete(self, prompt, *, max_tokens=256, temperature=0.0, logprobs=None, echo=False, echo_at=None):
        import collections
        import re

        from autointerp.llm.base import Completion, Usage

        self.prompts.append(prompt)
        shown = prompt.rsplit("\n\n", 1)[1]  # the query block comes last in every explainer template (after the worked examples)
        word = collections.Counter(re.findall(r"<<(.+?)>>", shown)).most_common(1)[0][0]
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=4, calls=1)
        self.usage.add(usage)
        return Completion(f" the marked word {word}\n", usage)

    async def chat(self, messages, **kwargs):
        return await self.complete(messages[-1]["content"], **kwargs)


@pytest.mark.slow
def test_latent_labels_go_through_the_configured_llm(trained, tmp_path, monkeypatch):
    import contextlib
    import shutil

    from autointerp.crosscode.latent_stage import latent_labels
    from autointerp.llm import factory
    from autointerp.rundir.layout import CrosscodeDir

    run, *_ = trained
    out = CrosscodeDir(tmp_path / RunDir(run.run_dir).crosscoder(*run.slugs).root.name)
    shutil.copytree(RunDir(run.run_dir).crosscoder(*run.slugs).root, out.root)
    client = MarkedWord()

    @contextlib.asynccontextmanager
    async def fake_client(cfg, run_dir):
        yield client

    monkeypatch.setattr(factory, "open_client", fake_client)
    cfg = _config(run)
    cfg.explain = dataclasses.replace(cfg.explain, labeller="llm", n_candidates=2)
    latents = [j for j, _ in _chosen(run)]
    summary = latent_labels(cfg, out, latents)
    labels = pd.read_parquet(out.latent_labels).set_index("feature")
    # two prompts per latent (plain, with the lexical profile), each showing word windows with marked words
    assert len(client.prompts) == 2 * len(latents) and all("<<" in p.split("Neuron C fires")[-1] for p in client.prompts)
    assert labels["llm_label"].str.startswith("the marked word").all()
    assert set(labels["label_source"]) <= {"llm", "lexical"} and labels["score_embedding"].between(0, 1).all()
    assert labels["lexical_embedding"].between(0, 1).all() and labels["baseline_embedding"].between(0, 1).all()
    assert sorted(labels["baseline_label"]) == sorted(labels["llm_label"])  # the shuffled baseline uses LLM labels when there are some
    assert summary["usage"]["model"] == "marked-word" and summary["usage"]["calls"] == 2 * len(latents)


@pytest.fixture(scope="module")
def reported(trained):
    from autointerp.report.stage import report_stage

    run, *_ = trained
    outcome = report_stage(_config(run), overwrite=True, progress=False)
    return run, outcome


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "p", "a", "h1", "h2", "h3", "table", "thead", "tbody", "tr", "th",
                "td", "div", "span", "code", "strong"}


@pytest.mark.slow
def test_latent_pages_show_norms_features_labels_and_windows(reported):
    import html as html_lib
    import re

    from autointerp.io import read_json
    from autointerp.report.html_render import fmt

    run, outcome = reported
    out = RunDir(run.run_dir).crosscoder(*run.slugs)
    folder = RunDir(run.run_dir).report.pages / "crosscode" / f"{run.slugs[0]}__{run.slugs[1]}"
    latents = pd.read_parquet(out.latents).set_index("latent")
    labels = pd.read_parquet(out.latent_labels).set_index("feature")
    scales = read_json(out.cfg)["scales"]
    index = (RunDir(run.run_dir).report.pages / "index.html").read_text()
    report = RunDir(run.run_dir).report.markdown.read_text()
    hostile_seen = False
    for j, _ in _chosen(run):
        page = folder / f"{j}.html"
        text = page.read_text()
        assert f'href="crosscode/{run.slugs[0]}__{run.slugs[1]}/{j}.html"' in index
        assert f"(pages/crosscode/{run.slugs[0]}__{run.slugs[1]}/{j}.html)" in report
        t = latents.loc[j]
        assert fmt(t["relative_norm"]) in text and fmt(float(t["norm_a"]) / scales[0]) in text and fmt(float(t["norm_b"]) / scales[1]) in text
        assert html_lib.escape(labels.loc[j, "label"]) in text and fmt(labels.loc[j, "baseline_embedding"]) in text
        # links resolve; the best SAE features link to their feature pages where those exist
        for target in re.findall(r'href="([^"]+)"', text):
            assert (page.parent / html_lib.unescape(target)).resolve().is_file(), target
        for model, best in ((run.slugs[0], t["best_a"]), (run.slugs[1], t["best_b"])):
            if (RunDir(run.run_dir).report.pages / model / f"{best}.html").is_file():
                assert f'href="../../{model}/{best}.html"' in text
        # every word of every window carries its value; shading only with a value
        spans = re.findall(r'<span class="tok[^"]*" style="([^"]*)" title="([^"]*)"', text)
        assert spans and len(spans) == text.count('<span class="tok')
        assert all(re.search(r": (-?\d+\.\d{3}|not covered)", title) for _, title in spans)
        assert all(style == "" or "background-color" in style for style, _ in spans)
        # inert: only harmless tags, no event handler, no script; the hostile fragment shows as text
        assert {tag.lower() for tag in re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", text)} <= ALLOWED_TAGS
        assert not re.search(r"<[^>]*\son\w+\s*=", text) and "<script" not in text.lower()
        visible = html_lib.unescape(re.sub(r"<[^>]+>", "", text))
        hostile_seen |= 'onerror="alert(1)"' in visible
    assert hostile_seen
    assert outcome.pages and (folder.parent.parent / "index.html").is_file()
