"""Every feature has a name (issue 22 item 5): the final label, else a name from its lexical profile marked
" (lexical)"; shown in every table of report.md, the pages and the console summary; and every pair report.md
lists has its side-by-side page, whatever the page cap."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from rich.console import Console
from helpers.report_run import DEAD_FEATURE, FAILED_FEATURE, N_LABELLED, make_report_run

from autointerp.exemplars.profile import LexicalProfile, compute_profiles, profiles_from_frame, write_profiles
from autointerp.explain.lexical import lexical_label
from autointerp.explain.names import LEXICAL_MARKER, UNNAMED, FeatureName, display_name, feature_names, lexical_name
from autointerp.report.artifacts import load_run_inputs
from autointerp.report.fmt import md_text
from autointerp.report.selection import listed_pairs, top_matches
from autointerp.report.stage import report_stage
from autointerp.report.summary import NAME_CHARS, TOP_PAIRS, summary_table, top_pairs


# ------------------------------------------------------------------------------------------ naming rules
def _profile(feature: int, **rows) -> LexicalProfile:
    return LexicalProfile(feature, {kind: list(r) for kind, r in rows.items()})


PAREN = _profile(3, word=[("(", 0.8, 40), ("est", 0.1, 5)], right=[("2023 est", 0.4, 20), ("2021", 0.3, 10), ("July", 0.1, 3)])
PER = _profile(4, word=[("per", 0.4, 30), ("a", 0.3, 20)], right=[("capita", 0.7, 21)], left=[("US dollars", 0.6, 18)])
SPREAD = _profile(5, word=[("the", 0.3, 9), ("a", 0.2, 6)], right=[("river", 0.2, 4), ("lake", 0.2, 4)])


def test_the_final_label_wins_and_the_profile_names_the_rest():
    labels = pd.DataFrame({"feature": [3, 5, 6], "label": ["years in estimates", None, "ports"], "status": ["ok", "failed", "ok"]})
    names = feature_names(labels, {3: PAREN, 4: PER, 5: SPREAD})
    assert names[3] == FeatureName("years in estimates", "label")
    assert names[6] == FeatureName("ports", "label")  # a label without a profile still names its feature
    assert names[4].source == names[5].source == "lexical"  # no label / a failed label: the profile's name
    assert names[5].text == lexical_label(SPREAD)
    assert 7 not in names and display_name(names.get(7)) == UNNAMED


def test_a_concentrated_neighbour_is_added_to_the_lexical_name():
    # 70% of the peaks are followed by a number ("2023 est", "2021"): the name says so
    assert lexical_name(PAREN) == lexical_label(PAREN) + ", before a number"
    assert lexical_name(PAREN).startswith('the word "("')
    # 60% preceded by "US dollars", which the label does not quote: named; "capita" (70%) is quoted already
    assert lexical_name(PER) == lexical_label(PER) + ', after "US dollars"'
    assert lexical_label(PER).count("capita") == lexical_name(PER).count("capita") == 1
    # no neighbour above half of the peaks: the lexical label as is
    assert lexical_name(SPREAD) == lexical_label(SPREAD)
    assert lexical_name(None) is None and lexical_name(_profile(9)) is None


def test_the_lexical_marker_survives_a_cut_and_labels_carry_none():
    lexical = FeatureName('the words "est", "July", "(" (in "(2023 est"), before a number', "lexical")
    assert display_name(lexical) == lexical.text + LEXICAL_MARKER and LEXICAL_MARKER == " (lexical)"
    short = display_name(lexical, 30)
    assert len(short) == 30 and short.endswith("…" + LEXICAL_MARKER)
    assert display_name(FeatureName("ports and harbours", "label")) == "ports and harbours"
    assert display_name(FeatureName("ports and harbours", "label"), 8) == "ports a…"


def test_profiles_are_read_from_the_file_the_exemplars_stage_writes(tmp_path):
    cfg = make_report_run(tmp_path, labels=False, compare=False, profiles=False)
    model = load_run_inputs(cfg).models[0]
    frame = compute_profiles(model.exemplars_path)
    write_profiles(frame, model.files.lexical_profile)
    from_file = feature_names(None, model.files.lexical_profile)
    assert from_file == feature_names(None, profiles_from_frame(frame)) == feature_names(None, frame)
    assert set(from_file) == set(range(12)) - {DEAD_FEATURE} and all(n.source == "lexical" for n in from_file.values())
    assert feature_names(None, tmp_path / "absent.parquet") == {}


# ------------------------------------------------------------------------------- the whole report
class _Tables(HTMLParser):
    """Every table's rows (cell texts) and the feature page's headline (``<p class="label">``)."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.headline: str | None = None
        self._cell: list[str] | None = None
        self._in_label = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p" and ("class", "label") in attrs:
            self._in_label, self.headline = True, ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "p":
            self._in_label = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_label:
            self.headline += data


def _md_tables(md: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if current is None:
                current = []
                tables.append(current)
            if not set("".join(cells)) <= set(":- "):
                current.append(cells)
        else:
            current = None
    return tables


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """The fixture run with profiles, reported with a page cap far below the listed pairs' features."""
    cfg = make_report_run(tmp_path_factory.mktemp("names"))
    cfg = dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, page_max_per_model=3, max_disagreements=2))
    outcome = report_stage(cfg, progress=False)
    run = load_run_inputs(cfg)
    profiled = {m.slug: set(pd.read_parquet(m.files.lexical_profile)["feature"].astype(int)) for m in run.models}
    return cfg, outcome, run, profiled


def test_every_feature_with_a_profile_is_named_in_report_md(reported):
    cfg, outcome, run, profiled = reported
    md = outcome.report.read_text(encoding="utf-8")
    assert "not labelled" not in md
    named_rows = unnamed_rows = 0
    for table in _md_tables(md):
        header = table[0]
        for side, column in (("alpha", "name A"), ("beta", "name B")):
            if column not in header:
                continue
            at, feature_at = header.index(column), header.index(f"`{side}`")
            for row in table[1:]:
                feature = int(re.sub(r"^\[(\d+)\].*$", r"\1", row[feature_at]))
                if feature not in profiled[side]:  # the dead feature (no exemplars, no profile), a label-only partner
                    assert row[at] == md_text(UNNAMED) and feature == DEAD_FEATURE
                    unnamed_rows += 1
                    continue
                shown = {md_text(run.model(side).name(feature, limit)) for limit in (None, 60, 70, 80)}  # tables cut at their width
                assert row[at] in shown, (side, feature, row[at])
                assert row[at] not in ("—", "") and "unnamed" not in row[at]
                named_rows += 1
    assert named_rows >= 2 * 11 - unnamed_rows  # the matched concepts (11 pairs, both sides) and the disagreement tables
    assert md.count(md_text(UNNAMED)) == unnamed_rows  # nowhere else
    # the unlabelled features (never labelled, or the failed label) are named from their profile, marked
    for feature in (FAILED_FEATURE, *range(N_LABELLED, 11)):
        assert run.model("alpha").names[feature].source == "lexical"
        assert md_text(run.model("alpha").name(feature, 80)).endswith(md_text(LEXICAL_MARKER.strip()))


def test_every_listed_pair_has_a_pair_page_despite_the_page_cap(reported):
    cfg, outcome, run, _ = reported
    md = outcome.report.read_text(encoding="utf-8")
    links = re.findall(r"\]\((pages/pairs/[^)]+\.html)\)", md)
    assert links and all((outcome.report.parent / link).is_file() for link in links)
    p = run.pairs[0]
    listed = listed_pairs(p, cfg.report)
    assert len(listed) > cfg.report.page_max_per_model  # the cap alone would have dropped most of them
    expected = {f"pages/pairs/{p.key}/{fa}-{fb}.html" for fa, fb in zip(listed["feature_a"], listed["feature_b"])}
    assert expected == set(links)  # every row of the matched-concepts and disagreement tables links its page
    for fa, fb in zip(listed["feature_a"], listed["feature_b"]):
        assert (outcome.report.parent / "pages" / "alpha" / f"{fa}.html").is_file()
        assert (outcome.report.parent / "pages" / "beta" / f"{fb}.html").is_file()


def test_pages_show_names_never_not_labelled(reported):
    _cfg, outcome, run, profiled = reported
    pages = sorted((outcome.report.parent / "pages").rglob("*.html"))
    assert len(pages) > 20
    name_cells = 0
    for path in pages:
        text = path.read_text(encoding="utf-8")
        assert "not labelled" not in text, path
        parsed = _Tables()
        parsed.feed(text)
        model = path.parent.name
        if model in profiled and path.stem.isdigit():  # a feature page: its headline is its name
            feature = int(path.stem)
            expected = run.model(model).name(feature) if feature in profiled[model] else UNNAMED
            assert feature in profiled[model] or feature == DEAD_FEATURE
            assert parsed.headline.startswith(expected), (path, parsed.headline)
        for table in parsed.tables:
            header = table[0] if table else []
            for at in [i for i, h in enumerate(header) if h == "name"]:
                for row in table[1:]:
                    assert row[at] not in ("—", ""), (path, row)
                    # the feature is the cell before its name; the dead feature is the one without a profile
                    dead = row[at - 1] in (str(DEAD_FEATURE), f"alpha {DEAD_FEATURE}", f"beta {DEAD_FEATURE}")
                    assert (row[at] == UNNAMED) == dead, (path, row)
                    name_cells += 1
    assert name_cells > 50  # index, sorted views, pair pages and partner tables all carry names


def test_console_summary_names_the_best_pairs(reported):
    _cfg, _outcome, run, _ = reported
    console = Console(record=True, width=300)
    console.print(summary_table(run))
    text = console.export_text()
    assert "best matched pairs" in text and "not labelled" not in text and UNNAMED not in text
    assert len(top_matches(run.pairs[0].matches, TOP_PAIRS)) == TOP_PAIRS
    console = Console(record=True, width=300)
    console.print(top_pairs(run, n=11))  # every matched pair, so the lexical names show too
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in console.export_text().splitlines() if line.startswith("│")]
    p = run.pairs[0]
    expected = [[str(r.feature_a), p.name("alpha", r.feature_a, NAME_CHARS), str(r.feature_b), p.name("beta", r.feature_b, NAME_CHARS)]
                for r in top_matches(p.matches, 11).itertuples()]
    assert [row[1:5] for row in rows] == expected
    assert sum(name.endswith(LEXICAL_MARKER) for row in expected for name in (row[1], row[3])) >= 3
    assert all(name not in ("—", "") for row in expected for name in (row[1], row[3]))
