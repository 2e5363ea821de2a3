"""Write the HTML pages: ``pages/index.html`` (summary + sorted views), ``pages/<model>/<feature>.html`` and
``pages/pairs/<A>__<B>/<a>-<b>.html`` (two matched features side by side, ``pair_pages``) and, for three or more
models, ``pages/universal/<f1>-...-<fN>.html`` (every model's member of a universal chain on the same words,
``universal_pages``).

The whole tree is written into a temporary sibling directory and swapped in at the end, so readers
never see a half-written set and pages of features no longer selected do not linger. Every link points
at a page in the same tree (partners without a page are shown as plain text), which the browser test
checks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from autointerp.explain.names import LEGEND
from autointerp.progress import progress_bar
from autointerp.report.artifacts import ModelInputs, RunInputs
from autointerp.report.config import ReportConfig
from autointerp.report import feature_sections as sections
from autointerp.report.crosscode_pages import index_section, load_latent_sets, write_latent_pages
from autointerp.report.html_render import document, esc, fmt, href, shaded_window, table
from autointerp.report.index_pages import contextual_view, correlation_view, density_view, label_score_view, summary_html
from autointerp.report.page_data import PageData, collect
from autointerp.report.pair_pages import pair_href, pair_list, pair_page
from autointerp.report.selection import Partner, page_features, partners
from autointerp.report.universal import MAX_ROWS as UNIVERSAL_ROWS
from autointerp.report.universal_pages import universal_index, write_universal_pages
from autointerp.rundir.layout import INDEX_VIEWS, PAGES_DIR, PAGES_INDEX, PAIR_PAGES_DIR, feature_page_name, pair_page_name
from autointerp.rundir.windows import Window, load_windows


def page_link(model: str | None = None, feature: int | None = None) -> str:
    """The report's relative link to a feature page, or to the index without arguments."""
    return f"{PAGES_DIR}/{PAGES_INDEX}" if model is None else f"{PAGES_DIR}/{model}/{feature}.html"



class PagesResult(NamedTuple):
    index: Path
    features: dict[str, list[int]]  # per model: the features that have a page
    pairs: dict[str, list[tuple[int, int]]] = {}  # per compared pair (A__B): the pairs that have a pair page

    @property
    def counts(self) -> dict[str, int]:
        return {model: len(features) for model, features in self.features.items()}


class _Context(NamedTuple):
    run: RunInputs
    selected: dict[str, set[int]]
    partners: dict[tuple[str, int], list[Partner]]
    compare_info: dict[tuple[str, int], dict]
    pairs: dict[str, set[tuple[int, int]]]  # A__B -> (feature a, feature b) with a pair page
    data: PageData


def write_pages(run: RunInputs, cfg: ReportConfig, out_dir: Path, progress: bool = True,
                windows: dict[str, dict[int, list]] | None = None, universal: dict | None = None) -> PagesResult:
    """``windows``: per model, feature -> exemplar windows already loaded (read from exemplars.parquet if None);
    ``universal``: ``report.universal.universal_of`` (three or more models), whose listed chains get pages."""
    chosen = page_features(run, cfg)
    pairs = {p.key: pair_list(p, chosen) for p in run.pairs}
    persist = Path(out_dir).resolve() == Path(run.run_dir).resolve()  # elsewhere (--out) the run is only read
    chains = (universal or {}).get("chains", [])[:UNIVERSAL_ROWS]
    data = collect(run, pairs, chosen, persist, [c["features"] for c in chains])
    ctx = _Context(run, {k: set(v) for k, v in chosen.items()}, partners(run), _compare_info(run), {k: set(v) for k, v in pairs.items()}, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pages.", dir=out_dir))
    try:
        total = sum(len(v) for v in chosen.values())
        with progress_bar("feature pages", total, "pages", enabled=progress) as advance:
            for m in run.models:
                (tmp / m.slug).mkdir()
                shown = windows.get(m.slug, {}) if windows is not None else shown_windows(
                    m.exemplars_path, chosen[m.slug], cfg.page_top_windows, cfg.page_quantile_windows)
                stats = m.stats.set_index("feature") if m.stats is not None else None
                labels = m.labels.drop_duplicates("feature", keep="last").set_index("feature") if m.labels is not None else None
                extra = (sections.read_profile(m.files.lexical_profile), sections.read_candidates(m.files.label_candidates))
                for feature in chosen[m.slug]:
                    page = _feature_page(ctx, m, feature, stats, labels, _shown(shown.get(feature, []), cfg), extra)
                    (tmp / m.slug / feature_page_name(feature)).write_text(page, encoding="utf-8")
                    advance(1)
        _write_pair_pages(ctx, tmp)
        write_universal_pages(run, chains, data.universal, data.notes.get("universal"), tmp, lambda model, f: _feature_link(ctx, model, f, False),
                              lambda model, f, other, g: _pair_cell(ctx, model, f, other, g, 1))
        latent_sets = load_latent_sets(run.run_dir)  # crosscoder latents (opt-in stage): pages/crosscode/<A>__<B>/<latent>.html
        write_latent_pages(latent_sets, tmp, ctx.selected, ctx.pairs, cfg.page_top_windows, cfg.page_quantile_windows)
        link = lambda model, f: _feature_link(ctx, model, f, True)  # noqa: E731
        (tmp / PAGES_INDEX).write_text(_index_page(ctx, chosen, index_section(latent_sets), universal_index(run, chains, link)), encoding="utf-8")
        views = {"contextual": contextual_view(run, pairs, link), "correlation": correlation_view(run, pairs, link), "density": density_view(run, chosen, link),
                 "label_score": label_score_view(run, chosen, link)}
        for key, name in INDEX_VIEWS.items():
            (tmp / name).write_text(views[key], encoding="utf-8")
        final = out_dir / PAGES_DIR
        _swap(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PagesResult(final / PAGES_INDEX, chosen, pairs)


def _write_pair_pages(ctx: _Context, tmp: Path) -> None:
    labels = {m.slug: m.labels.drop_duplicates("feature", keep="last").set_index("feature") if m.labels is not None else None
              for m in ctx.run.models}
    for p in ctx.run.pairs:
        if not ctx.pairs.get(p.key):
            continue
        folder = tmp / PAIR_PAGES_DIR / p.key
        folder.mkdir(parents=True)
        windows, note = ctx.data.pairs.get(p.key), ctx.data.notes.get(p.key)
        keys = p.matches["feature_a"].astype("int64") * (1 << 32) + p.matches["feature_b"].astype("int64")
        mine = p.matches[keys.isin([fa * (1 << 32) + fb for fa, fb in ctx.pairs[p.key]])]
        rows = {(int(k[0]), int(k[1])): g for k, g in mine.groupby(["feature_a", "feature_b"], sort=False)}
        for fa, fb in ctx.pairs[p.key]:
            html = pair_page(ctx.run, p, fa, fb, windows, note, labels, rows[(fa, fb)])
            (folder / pair_page_name(fa, fb)).write_text(html, encoding="utf-8")


def _pair_cell(ctx: _Context, model: str, feature: int, other: str, other_feature: int, depth: int) -> str:
    """A link to the side-by-side page of (model feature, other feature) when it exists, else ""."""
    for p in ctx.run.pairs:
        if (p.a, p.b) == (model, other) and (feature, other_feature) in ctx.pairs.get(p.key, ()):
            return f"<a href=\"{esc(pair_href(p.a, p.b, feature, other_feature, depth))}\">side by side</a>"
        if (p.a, p.b) == (other, model) and (other_feature, feature) in ctx.pairs.get(p.key, ()):
            return f"<a href=\"{esc(pair_href(p.a, p.b, other_feature, feature, depth))}\">side by side</a>"
    return ""


def shown_windows(path: Path, features: Iterable[int], n_top: int, n_quantile: int) -> dict[int, list[Window]]:
    """Per feature: its ``n_top`` best top windows (rank order), then ``n_quantile`` quantile windows (highest
    bins first); {} when the model has no exemplars."""
    if not Path(path).is_file():
        return {}
    return load_windows(path, features, kinds=("top", "quantile"), n_top=n_top, n_quantile=n_quantile)


def _shown(windows: list, cfg: ReportConfig) -> list:
    """The page's share of a feature's loaded windows (the caller may have loaded more for other uses)."""
    top = [w for w in windows if w.kind == "top"][: cfg.page_top_windows]
    return top + [w for w in windows if w.kind == "quantile"][: cfg.page_quantile_windows]


def _swap(new: Path, final: Path) -> None:
    """Replace ``final`` with ``new``: two renames, the old tree deleted afterwards."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old.{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    new.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _compare_info(run: RunInputs) -> dict[tuple[str, int], dict]:
    """(model, feature) -> extra columns of compare/*/features.parquet (domain, documents spanned, ...)."""
    out: dict[tuple[str, int], dict] = {}
    for p in run.pairs:
        if p.features is None:
            continue
        for row in p.features.to_dict("records"):
            out.setdefault((str(row["model"]), int(row["feature"])), {}).update({k: v for k, v in row.items() if k not in ("model", "feature")})
    return out


def _feature_link(ctx: _Context, model: str, feature: int, from_index: bool) -> str:
    if feature in ctx.selected.get(model, ()):
        target = href(model, feature_page_name(feature)) if from_index else href("..", model, feature_page_name(feature))
        return f"<a href=\"{esc(target)}\">{feature}</a>"
    return str(feature)


def _feature_page(ctx: _Context, m: ModelInputs, feature: int, stats: pd.DataFrame | None, labels: pd.DataFrame | None, windows: list,
                  extra: tuple = (None, None)) -> str:
    parts = [f"<p><a href=\"../{PAGES_INDEX}\">← all features</a></p>", f"<h1>{esc(m.slug)} · feature {feature}</h1>",
             f"<p class=\"label\">{sections.name_html(m, feature, sections.label_error(labels, feature))}</p>"]
    facts = []
    srow = stats.loc[feature] if stats is not None and feature in stats.index else None
    if srow is not None:
        for key in ("feature_class", "density", "n_active_tokens", "n_contexts_active", "max_act", "mean_act", "dead", "word_eta2",
                    "doc_concentration", "top_word_share", "word_fire_rate", "n_hard_negatives"):
            if key in srow.index:
                facts.append((key, fmt(srow[key], 6) if key == "density" else esc(srow[key]) if key == "feature_class" else fmt(srow[key])))
    shown = {k for k, _ in facts} | {"label"}  # the label is the page's headline
    for key, value in ctx.compare_info.get((m.slug, feature), {}).items():
        if key not in shown:
            facts.append((key, fmt(value)))
    if facts:
        parts.append("<h2>Statistics</h2>")
        parts.append(table(["", "value"], [[esc(k), v] for k, v in facts], [False, True]))
    if labels is not None and feature in labels.index and m.scorers:
        parts += sections.scores_section(labels.loc[feature], m.scorers)
    parts.append(sections.candidates_section(extra[1], feature))
    hist = ctx.data.histograms.get(m.slug, {}).get(feature)
    parts.append(sections.histogram_section(hist, ctx.data.notes.get(m.slug), f"{m.slug} feature {feature}: activation histogram"))
    parts.append(sections.profile_section(extra[0], feature))
    effects = ctx.data.logits.get(m.slug, {}).get(feature)
    parts.append(sections.logit_section(effects, ctx.data.notes.get(f"logits:{m.slug}", "not computed for this feature")))
    found = ctx.partners.get((m.slug, feature), [])
    parts.append("<h2>Matched partners</h2>")
    if found:
        rows = [[esc(x.model), _feature_link(ctx, x.model, x.feature, False), sections.name_html(ctx.run.model(x.model), x.feature),
                 esc(x.method), fmt(x.activation_corr),
                 fmt(x.label_similarity), "yes" if x.shared else "no", str(x.combined_rank),
                 _pair_cell(ctx, m.slug, feature, x.model, x.feature, 1)] for x in found]
        parts.append(table(["model", "feature", "name", "chosen by", "act. corr.", "label sim.", "shared", "rank", "pair page"], rows,
                           [False, True, False, False, True, True, False, True, False]))
    else:
        parts.append("<p class=\"meta\">No partner: not matched, or `autointerp compare` has not run.</p>")
    parts.append("<h2>Exemplars</h2>")
    if windows:
        scale = float(srow["max_act"]) if srow is not None and "max_act" in srow.index and float(srow["max_act"]) > 0 else max(w.max_act for w in windows)
        parts.append("<p class=\"meta\">Orange shading: activation / the feature's max activation; hover a token for its value.</p>")
        parts += [shaded_window(w, scale) for w in windows]
    else:
        parts.append("<p class=\"meta\">No activating windows (dead feature, or exemplars not mined: run `autointerp exemplars`).</p>")
    return document(f"{m.slug} feature {feature}", "\n".join(parts))


def _index_page(ctx: _Context, chosen: dict[str, list[int]], latents_html: str = "", universal_html: str = "") -> str:
    run = ctx.run
    parts = [f"<h1>Feature pages · {esc(run.run_dir.name)}</h1>", summary_html(run),
             "<p class=\"meta\">Pages exist for both sides of every pair report.md lists, labelled features, both sides of the "
             "best and the shared matched pairs, and the densest live features of each model (see [report] in the run config).</p>",
             f"<p class=\"meta\">{esc(LEGEND)}</p>", universal_html]
    for m in run.models:
        features = chosen[m.slug]
        parts.append(f"<h2>{esc(m.slug)} <span class=\"meta\">({len(features)} pages; model {esc(m.spec)})</span></h2>")
        stats = m.stats.set_index("feature") if m.stats is not None else None
        labels = m.labels.drop_duplicates("feature", keep="last").set_index("feature") if m.labels is not None else None
        scorers = m.scorers
        rows = []
        for f in features:
            density = fmt(stats.loc[f, "density"], 6) if stats is not None and f in stats.index else "—"
            scores = [fmt(labels.loc[f].get(f"score_{s}")) if labels is not None and f in labels.index else "—" for s in scorers]
            best = ctx.partners.get((m.slug, f), [])[:2]
            partner = "<br>".join(f"{esc(x.model)} {_feature_link(ctx, x.model, x.feature, True)} ({esc(x.method)}, r={fmt(x.activation_corr, 2)}) "
                                  f"{_pair_cell(ctx, m.slug, f, x.model, x.feature, 0)}" for x in best) or "—"
            rows.append([_feature_link(ctx, m.slug, f, True), sections.name_html(m, f, sections.label_error(labels, f)), *scores, density, partner])
        parts.append(table(["feature", "name", *scorers, "density", "partner"], rows, [True, False, *[True] * len(scorers), True, False]))
    parts.append(latents_html)
    return document(f"feature pages: {run.run_dir.name}", "\n".join(parts))
