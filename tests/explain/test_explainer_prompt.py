"""The explainer prompts a base (completion) model finishes: worked examples, where the completion starts,
the copy checks on what comes back, and the rule that a restating candidate loses to one that does not."""

from __future__ import annotations

import re

import pytest

from autointerp.explain.candidates import Candidate, FeatureLabels, final_choice, render
from autointerp.explain.config import ExplainConfig
from autointerp.explain.lexical import copies_template, restates_window
from autointerp.explain.prompts import load_template
from autointerp.rundir.windows import load_windows
from helpers.runs import make_exemplar_run

CUE = {"explainer": "Neuron C detects:", "explainer_profile": "Label:"}  # where each packaged template's label goes


def _worked_examples(text: str) -> list[tuple[list[str], str]]:
    """(window lines, label) of each worked example of a packaged explainer template."""
    out = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        labelled = [line for line in lines if re.match(r"^(Neuron [A-Z] detects|Label):\s*\S", line)]
        if labelled:
            out.append(([line for line in lines if re.search(r"<<[^>]+>>\(\d+\)", line)], labelled[0].split(":", 1)[1].strip()))
    return out


@pytest.mark.parametrize("name", ["explainer", "explainer_profile"])
def test_packaged_prompt_has_worked_examples_that_describe_rather_than_copy(name):
    text = load_template(name).text
    examples = _worked_examples(text)
    assert len(examples) >= 2  # a base model learns the answer format from these
    for windows, label in examples:
        assert len(windows) >= 2  # marked like the feature's own windows, <<word>>(strength)
        assert not restates_window(label, windows)  # the examples practise describing, not copying
        assert len(label.split()) <= 6  # short enough for the label budget ([explain] max_tokens = 12)
    assert len({label for _, label in examples}) == len(examples)
    assert text.rstrip().endswith(CUE[name])  # the query's label slot comes last
    assert "Paris" not in text and "percentages in economic statistics" not in text  # the old borrowed examples are gone


@pytest.mark.parametrize("name", ["explainer", "explainer_profile"])
def test_rendered_prompt_ends_on_the_label_slot(tmp_path, name):
    run = make_exemplar_run(tmp_path)
    windows = load_windows(run / "gemma-3-270m" / "exemplars.parquet", [0])[0]
    prompt, lines = render(load_template(name), windows, ExplainConfig(n_top=3, n_quantile=0), profile=None)
    # no trailing newline: the completion continues the label line instead of starting another window line
    assert prompt.endswith(CUE[name]) and prompt == prompt.rstrip()
    assert len(lines) == 3 and all(line in prompt for line in lines)
    assert prompt.index(lines[0]) > prompt.rindex("<<however>>")  # the feature's windows follow the worked examples
    if name == "explainer_profile":
        assert "Words it fires on most: (none)" in prompt  # no profile: said so, not left as a placeholder


def test_near_copies_of_the_template_are_rejected():
    template = load_template("explainer_profile").text
    assert copies_template("contrast words", template)  # a worked example's label, verbatim
    assert copies_template("the song was released in 1998", template)  # a worked example's window, one word changed
    assert copies_template('"next" before a date', template) is False  # 3 shared words: a reused pattern, not a copy
    assert copies_template('the word "next" in "in" before a date', template)  # an example label pasted after a word
    assert not copies_template("dates of the next election", template)
    assert not copies_template("estimated figures (est.)", template)
    assert not copies_template("body", template)  # a single word is not a copy


def test_a_restating_candidate_loses_to_one_that_describes():
    restating = Candidate("% of population (2022 est", "llm", restates=True, train_score=0.93)
    describing = Candidate("estimated figures", "llm", train_score=0.81)
    lexical = Candidate('the word "est"', "lexical", train_score=0.80)
    result = FeatureLabels(0, [restating, describing, lexical])
    # a restated window scores high on the training windows it was copied from; that score does not count
    assert result.best("llm") is describing and final_choice(result) is describing
    describing.train_score = float("nan")  # even an unscored describing candidate wins
    assert result.best("llm") is describing and final_choice(result) is lexical
    # when every LLM candidate restates, the best of them is kept (and flagged); the lexical label still competes
    only = FeatureLabels(0, [restating, Candidate("5 years (2024 est", "llm", restates=True, train_score=0.95), lexical])
    assert only.best("llm").text == "5 years (2024 est" and only.best("llm").restates
    assert final_choice(only).text == "5 years (2024 est"
    # template copies stay out whatever they score
    copied = Candidate("contrast words", "llm", template_copy=True, train_score=0.99)
    assert FeatureLabels(0, [copied, restating]).best("llm") is restating
