"""Universal-feature pages (issue 27): one page per listed chain, every model's activations on the same words.

A chain is one feature per model matched one-to-one in every pair (``compare.universal``); report.md lists the
best ``report.universal.MAX_ROWS``. Each gets ``pages/universal/<f1>-...-<fN>.html``: its members (linked to their
feature pages where those exist) with their names, every pair's link (correlation, kind, side-by-side page),
and the windows where all the members fire (``universal_windows``), each drawn once per model, one row under
the other on the same words (``pair_pages.stacked_window``), every word shaded by that model's activation
divided by its feature's max and carrying the value in its ``title``. The index lists the chains too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from autointerp.report.artifacts import RunInputs
from autointerp.report.feature_sections import name_html
from autointerp.report.html_render import document, esc, fmt, href, table
from autointerp.report.pair_pages import COLOURS, stacked_window
from autointerp.report.universal_windows import UniversalWindows, chain_key
from autointerp.rundir.layout import PAGES_DIR, PAGES_INDEX, UNIVERSAL_PAGES_DIR, universal_page_name

FeatureLink = Callable[[str, int], str]  # (model, feature) -> HTML: a link to its feature page, or plain text
PairLink = Callable[[str, int, str, int], str]  # (model, feature, other model, its feature) -> a side-by-side link or ""


def universal_href(features: dict[str, int], depth: int) -> str:
    """Link to a chain's page from a page ``depth`` folders below pages/ (0: the index)."""
    return href(*([".."] * depth), UNIVERSAL_PAGES_DIR, universal_page_name(features.values()))


def report_href(features: dict[str, int]) -> str:
    """Link to a chain's page from report.md (next to pages/)."""
    return f"{PAGES_DIR}/{universal_href(features, 0)}"


def _link_rows(run: RunInputs, features: dict[str, int], pair_link: PairLink) -> list[list[str]]:
    """Every pair of the chain: its matching's numbers for the two members, and its side-by-side page."""
    rows = []
    for a, b in itertools.combinations(features, 2):
        p = next((p for p in run.pairs if {p.a, p.b} == {a, b}), None)
        if p is None or p.matches is None:
            continue
        fa, fb = (features[a], features[b]) if p.a == a else (features[b], features[a])
        hit = p.matches[(p.matches["feature_a"] == fa) & (p.matches["feature_b"] == fb)]
        m = hit.sort_values("combined_rank").iloc[0] if len(hit) else {}
        rows.append([f"{esc(p.a)} {fa} ↔ {esc(p.b)} {fb}", fmt(m.get("activation_corr")), fmt(m.get("contextual_corr")),
                     esc(m.get("kind")), pair_link(p.a, fa, p.b, fb) or "—"])
    return rows


def universal_page(run: RunInputs, chain: dict, windows: UniversalWindows | None, note: str | None,
                   feature_link: FeatureLink, pair_link: PairLink) -> str:
    """``chain``: one of ``report.universal.universal_of``'s chains (features per model, weakest_corr, beyond_words)."""
    features = chain["features"]
    title = " · ".join(f"{m} {f}" for m, f in features.items())
    parts = [f"<p><a href=\"{esc(href('..', PAGES_INDEX))}\">← all features</a></p>", f"<h1>Universal feature: {esc(title)}</h1>",
             f"<p>One feature per model, matched one-to-one in every pair above the pair's null. Weakest link: r = "
             f"{fmt(chain.get('weakest_corr'))}; shared beyond word identity in every link: {fmt(bool(chain.get('beyond_words')))}.</p>",
             "<h2>Members</h2>",
             table(["model", "feature", "name"], [[esc(m), feature_link(m, f), name_html(run.model(m), f)] for m, f in features.items()],
                   [False, True, False]),
             "<h2>Links</h2>",
             table(["pair", "act. corr.", "contextual corr.", "kind", "pair page"], _link_rows(run, features, pair_link),
                   [False, True, True, False, False]),
             "<h2 class=\"section\" id=\"all\">Where every model fires</h2>"]
    summary = windows.summary.get(chain_key(features)) if windows is not None else None
    if summary is None:
        return document(f"universal feature {title}", "\n".join([*parts, f"<p class=\"meta\">{esc(note or 'no windows computed')}</p>"]))
    shades = ", ".join(f"{colour} = {esc(m)} / its max {top:.3g}" for m, (colour, _), top in zip(features, itertools.cycle(COLOURS), summary.max_act))
    parts.append(f"<p class=\"meta\">Word units where all {len(features)} fire: {summary.n_all:,}. The same words once per model "
                 f"(tokens max-pooled onto words), shaded by that model's activation: {shades}; hover a word for its value.</p>")
    shown = windows.of(features)
    if not shown:
        parts.append("<p class=\"meta\">None: no word unit of the shared text has every member firing.</p>")
    for r in shown:
        parts.append(stacked_window(r, [(m, acts, top) for m, acts, top in zip(features, r.acts, summary.max_act)]))
    return document(f"universal feature {title}", "\n".join(parts))


def write_universal_pages(run: RunInputs, chains: list[dict], windows: UniversalWindows | None, note: str | None, tmp: Path,
                          feature_link: FeatureLink, pair_link: PairLink) -> None:
    """Every listed chain's page into ``tmp``/universal/ (links from one folder below pages/)."""
    if not chains:
        return
    folder = tmp / UNIVERSAL_PAGES_DIR
    folder.mkdir(parents=True)
    for chain in chains:
        page = universal_page(run, chain, windows, note, feature_link, pair_link)
        (folder / universal_page_name(chain["features"].values())).write_text(page, encoding="utf-8")


def universal_index(run: RunInputs, chains: list[dict], feature_link: FeatureLink) -> str:
    """The index's list of the chains with pages (links from the index level); "" without chains."""
    if not chains:
        return ""
    models = list(chains[0]["features"])
    rows = [[f"<a href=\"{esc(universal_href(c['features'], 0))}\">every model</a>",
             *[f"{feature_link(m, f)} {name_html(run.model(m), f)}" for m, f in c["features"].items()],
             fmt(c.get("weakest_corr")), fmt(bool(c.get("beyond_words")))] for c in chains]
    return "\n".join([f"<h2>Features every model has <span class=\"meta\">({len(chains)} chains with pages)</span></h2>",
                      table(["page", *models, "weakest r", "beyond words"], rows)])
