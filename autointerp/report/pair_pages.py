"""Pair pages: two matched features side by side on the same text, the question the whole tool asks.

One page per matched pair whose two features both have a feature page (so every link resolves; every pair
report.md lists has both, ``selection.page_features``): ``pages/pairs/<A>__<B>/<feature A>-<feature B>.html``.
It shows the pair's correlation, the null threshold, whether it is lexical or contextual, both names (label,
else lexical name) and label scores, and three sections of word windows (``pair_windows``): where both fire,
where only A fires, where only B fires. Each window is drawn twice on the same words, A's activation shaded
orange and B's blue, every word carrying its value in a ``title``.
"""

from __future__ import annotations

import itertools

import pandas as pd

from autointerp.explain.names import LEGEND
from autointerp.report.artifacts import PairInputs, RunInputs
from autointerp.report.feature_sections import label_error, name_html
from autointerp.report.html_render import document, esc, fmt, href, table
from autointerp.report.pair_windows import SILENT, PairWindows
from autointerp.rundir.layout import PAGES_INDEX, PAIR_PAGES_DIR, feature_page_name, pair_page_name

SECTION_TITLES = {"both": "Both fire", "a_only": "Only {a} fires", "b_only": "Only {b} fires"}


def pair_list(p: PairInputs, chosen: dict[str, list[int]]) -> list[tuple[int, int]]:
    """The matched pairs of ``p`` whose two features both have a page, best combined rank first."""
    if p.matches is None or p.matches.empty:
        return []
    sa, sb = set(chosen.get(p.a, ())), set(chosen.get(p.b, ()))
    rows = p.matches.sort_values(["combined_rank", "feature_a"]).drop_duplicates(["feature_a", "feature_b"])
    return [(int(a), int(b)) for a, b in zip(rows["feature_a"], rows["feature_b"]) if int(a) in sa and int(b) in sb]


def pair_href(a: str, b: str, fa: int, fb: int, depth: int) -> str:
    """Link to a pair page from a page ``depth`` folders below pages/ (0: the index)."""
    return href(*([".."] * depth), PAIR_PAGES_DIR, f"{a}__{b}", pair_page_name(fa, fb))


COLOURS = (("orange", "255, 128, 0"), ("blue", "30, 110, 255"), ("green", "0, 150, 70"), ("purple", "170, 60, 200"),
           ("red", "200, 40, 40"), ("teal", "0, 140, 150"))  # (name, rgb): a shade per row, in order


def word_line(text: str, starts, ends, acts, scale: float, center: int, model: str, rgb: str) -> str:
    """One row of a window: each word shaded by ``acts`` / ``scale`` in ``rgb``, its value in a ``title``."""
    out, cursor = [], 0
    for i, (s, e, v) in enumerate(zip(starts, ends, acts)):
        if s > cursor:
            out.append(esc(text[cursor:s].replace("\n", " ↵ ")))  # one line per model keeps the rows aligned
        alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, float(v) / scale))
        cls = "tok max" if i == center else "tok"
        style = f"background-color: rgba({rgb}, {alpha:.3f})" if alpha > 0 else ""
        out.append(f"<span class=\"{cls}\" style=\"{style}\" title=\"{esc(model)}: {float(v):.3f}\">{esc(text[s:e])}</span>")
        cursor = max(cursor, e)
    if cursor < len(text):
        out.append(esc(text[cursor:].replace("\n", " ↵ ")))
    return "".join(out)


def stacked_window(row, sides: list[tuple[str, object, float]]) -> str:
    """One window of words (a row of ``pair_windows.SCHEMA``'s text fields) drawn once per side (model, its
    activations on the words, its scale), one row under the other, each shaded in its colour (``COLOURS``)."""
    text, starts, ends = row.text, list(row.word_start), list(row.word_end)
    lines = "".join(f"<div class=\"side\"><span class=\"who\">{esc(who)}</span> {word_line(text, starts, ends, acts, scale, row.center, who, rgb)}</div>"
                    for (who, acts, scale), (_, rgb) in zip(sides, itertools.cycle(COLOURS)))
    peaks = ", ".join(f"{esc(who)} {float(acts[row.center]):.3f}" for who, acts, _ in sides)
    return f"<div class=\"meta\">{esc(row.doc_id)} · at the outlined word: {peaks}</div>\n<div class=\"window pair\">{lines}</div>"


def _scores(labels: pd.DataFrame | None, feature: int, scorers: list[str]) -> str:
    if labels is None or feature not in labels.index or not scorers:
        return "—"
    row = labels.loc[feature]
    return ", ".join(f"{esc(s)} {fmt(row.get(f'score_{s}'))} (shuffled {fmt(row.get(f'baseline_{s}'))})" for s in scorers)


def pair_page(run: RunInputs, p: PairInputs, fa: int, fb: int, windows: PairWindows | None, note: str | None,
              labels: dict[str, pd.DataFrame | None], rows: pd.DataFrame) -> str:
    """``rows``: the pair's rows of matches.parquet (one per matching method that chose it)."""
    a, b = p.a, p.b
    m = rows.sort_values("combined_rank").iloc[0]
    null = ((p.stats or {}).get("null") or {}).get("threshold")
    link_a = href("..", "..", a, feature_page_name(fa))
    link_b = href("..", "..", b, feature_page_name(fb))
    ma, mb = run.model(a), run.model(b)
    parts = [f"<p><a href=\"{esc(href('..', '..', PAGES_INDEX))}\">← all features</a></p>",
             f"<h1>{esc(a)} {fa} ↔ {esc(b)} {fb}</h1>"]
    facts = [["activation correlation (word units)", fmt(m.get("activation_corr"))], ["null threshold (shared above)", fmt(null)],
             ["shared", fmt(bool(m.get("shared")))], ["kind (lexical: same words only; contextual: beyond word identity)", esc(m.get("kind"))],
             ["correlation after pairing same-word occurrences across documents (lexical null)", fmt(m.get("lexical_null_corr"))],
             ["contextual correlation", fmt(m.get("contextual_corr"))], ["label similarity", fmt(m.get("label_similarity"))],
             ["chosen by", esc(", ".join(sorted(set(rows["method"].astype(str)))))], ["combined rank", fmt(m.get("combined_rank"))]]
    parts += ["<h2>The pair</h2>", table(["", "value"], [[esc(k), v] for k, v in facts], [False, True])]
    side = [[f"<a href=\"{esc(link_a)}\">{esc(a)} {fa}</a>", name_html(ma, fa, label_error(labels.get(a), fa)), _scores(labels.get(a), fa, ma.scorers if ma else [])],
            [f"<a href=\"{esc(link_b)}\">{esc(b)} {fb}</a>", name_html(mb, fb, label_error(labels.get(b), fb)), _scores(labels.get(b), fb, mb.scorers if mb else [])]]
    parts += ["<h2>Names</h2>", table(["feature", "name", "label scores"], side), f"<p class=\"meta\">{esc(LEGEND)}</p>"]
    summary = windows.summary.get((fa, fb)) if windows is not None else None
    if summary is not None:
        parts.append(f"<p class=\"meta\">Word units where both fire: {summary.n_both:,}; only {esc(a)}: {summary.n_a_only:,}; "
                     f"only {esc(b)}: {summary.n_b_only:,} (\"only\" = the other below {SILENT:.0%} of its max). "
                     f"Shading: orange = {esc(a)} / its max {summary.max_a:.3g}, blue = {esc(b)} / its max {summary.max_b:.3g}; "
                     "hover a word for its value.</p>")
    frame = windows.of(fa, fb) if windows is not None else None
    for section, title in SECTION_TITLES.items():
        parts.append(f"<h2 class=\"section\" id=\"{section}\">{esc(title.format(a=a, b=b))}</h2>")
        shown = sorted((r for r in frame if r.section == section), key=lambda r: r.rank) if frame is not None else None
        if shown is None:
            parts.append(f"<p class=\"meta\">{esc(note or 'no windows computed')}</p>")
        elif not shown:
            parts.append("<p class=\"meta\">None: no word unit of the shared text fits this section.</p>")
        else:
            parts += [stacked_window(r, [(a, r.act_a, summary.max_a), (b, r.act_b, summary.max_b)]) for r in shown]
    return document(f"{a} {fa} vs {b} {fb}", "\n".join(parts))
