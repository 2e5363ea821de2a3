"""The index's verdict summary and its static sorted views (no script: one HTML page per ordering).

``by_correlation.html`` lists the pair pages by activation correlation, ``by_density.html`` and
``by_label_score.html`` the feature pages of each model by density and by label score. The summary at
the top of the index is the report's verdict table (``report.verdict``).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from autointerp.explain.names import LEGEND
from autointerp.report.artifacts import RunInputs
from autointerp.report.feature_sections import name_html
from autointerp.report.html_render import document, esc, fmt, href, table
from autointerp.report.pair_pages import pair_href
from autointerp.report.verdict import verdict_html
from autointerp.rundir.layout import INDEX_VIEWS, PAGES_INDEX

FeatureLink = Callable[[str, int], str]  # (model, feature) -> HTML: a link from the index level, or plain text


def summary_html(run: RunInputs) -> str:
    lines = [verdict_html(run)] if run.pairs else []
    views = " · ".join(f"<a href=\"{esc(href(name))}\">by {esc(key.replace('_', ' '))}</a>" for key, name in INDEX_VIEWS.items())
    return "\n".join([*lines, f"<p>Sorted views: {views}</p>"])


def _labels(m) -> pd.DataFrame | None:
    return m.labels.drop_duplicates("feature", keep="last").set_index("feature") if m.labels is not None else None


def correlation_view(run: RunInputs, pairs: dict[str, list[tuple[int, int]]], link: FeatureLink) -> str:
    return _pairs_view(run, pairs, link, "activation_corr", "Matched pairs by activation correlation", "pairs by correlation")


def contextual_view(run: RunInputs, pairs: dict[str, list[tuple[int, int]]], link: FeatureLink) -> str:
    """What is shared beyond words: the contextual pairs with pages, by contextual correlation."""
    return _pairs_view(run, pairs, link, "contextual_corr", "Shared beyond words: contextual pairs by contextual correlation",
                       "pairs shared beyond words", kind="contextual")


def _pairs_view(run: RunInputs, pairs: dict[str, list[tuple[int, int]]], link: FeatureLink, key: str, title: str, short: str,
                kind: str | None = None) -> str:
    parts = [_back(), f"<h1>{esc(title)}</h1>"]
    for p in run.pairs:
        wanted = pairs.get(p.key, [])
        if not wanted or p.matches is None or key not in p.matches.columns:
            continue
        m = p.matches.drop_duplicates(["feature_a", "feature_b"]).set_index(["feature_a", "feature_b"])
        if kind is not None:
            wanted = [k for k in wanted if m.loc[k].get("kind") == kind]
        order = sorted(wanted, key=lambda k: -float(m.loc[k, key]) if pd.notna(m.loc[k, key]) else 0.0)
        rows = []
        for fa, fb in order:
            r = m.loc[(fa, fb)]
            pair = f"<a href=\"{esc(pair_href(p.a, p.b, fa, fb, 0))}\">side by side</a>"
            rows.append([pair, link(p.a, fa), name_html(run.model(p.a), fa), link(p.b, fb), name_html(run.model(p.b), fb), fmt(r.get("activation_corr")),
                         fmt(r.get("contextual_corr")), fmt(bool(r.get("shared"))), esc(r.get("kind"))])
        parts += [f"<h2>{esc(p.a)} vs {esc(p.b)} <span class=\"meta\">({len(rows)} pairs with pages)</span></h2>",
                  table(["pair", p.a, "name", p.b, "name", "act. corr.", "contextual corr.", "shared", "kind"], rows,
                        [False, True, False, True, False, True, True, False, False])]
    parts.append(f"<p class=\"meta\">{esc(LEGEND)}</p>")
    return document(short, "\n".join(parts))


def density_view(run: RunInputs, chosen: dict[str, list[int]], link: FeatureLink) -> str:
    parts = [_back(), "<h1>Feature pages by density</h1>"]
    for m in run.models:
        if m.stats is None:
            continue
        stats = m.stats.set_index("feature")
        features = sorted((f for f in chosen.get(m.slug, []) if f in stats.index), key=lambda f: -float(stats.loc[f, "density"]))
        rows = [[link(m.slug, f), name_html(m, f), fmt(stats.loc[f, "density"], 6), fmt(stats.loc[f, "max_act"])] for f in features]
        parts += [f"<h2>{esc(m.slug)}</h2>", table(["feature", "name", "density", "max act."], rows, [True, False, True, True])]
    parts.append(f"<p class=\"meta\">{esc(LEGEND)}</p>")
    return document("features by density", "\n".join(parts))


def label_score_view(run: RunInputs, chosen: dict[str, list[int]], link: FeatureLink) -> str:
    parts = [_back(), "<h1>Labelled features by label score</h1>"]
    for m in run.models:
        labels, scorers = _labels(m), m.scorers
        if labels is None or not scorers:
            parts.append(f"<h2>{esc(m.slug)}</h2><p class=\"meta\">No label scores (run `autointerp score`).</p>")
            continue
        key = f"score_{scorers[0]}"
        features = [f for f in chosen.get(m.slug, []) if f in labels.index and pd.notna(labels.loc[f].get(key))]
        features.sort(key=lambda f: -float(labels.loc[f][key]))
        rows = [[link(m.slug, f), name_html(m, f), *[fmt(labels.loc[f].get(f"score_{s}")) for s in scorers]] for f in features]
        parts += [f"<h2>{esc(m.slug)} <span class=\"meta\">(sorted by {esc(scorers[0])})</span></h2>",
                  table(["feature", "name", *scorers], rows, [True, False, *[True] * len(scorers)])]
    return document("features by label score", "\n".join(parts))


def _back() -> str:
    return f"<p><a href=\"{esc(href(PAGES_INDEX))}\">← all features</a></p>"
