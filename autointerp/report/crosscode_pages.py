"""Pages of crosscoder latents: ``pages/crosscode/<A>__<B>/<latent>.html``, one per paged latent.

A page shows the latent's class and relative decoder norm r, both decoders' norms (in each model's own
raw activation scale: the common-norm value divided by the model's scale, and in the common-norm space),
the Latent Scaling ratios, the best-correlated SAE feature of each model (linked to its feature page when
it has one, and to the pair page when the two have one), the label with its held-out embedding score next
to the shuffled label's, and word windows: each window drawn three times on the same words, the latent's
activation (purple), the part of its pre-activation read from model A's pooled activation (orange) and
from model B's (blue), every word carrying its value in a ``title``. Shading is value / the latent's max
activation over its windows; a negative read is not shaded, a word a harvest does not cover says so.

Everything from the corpus or an LLM goes through ``esc``; the pages are static, under the same CSP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.io import read_json, read_parquet
from autointerp.report.html_render import document, esc, fmt, href, table
from autointerp.report.pair_pages import pair_href
from autointerp.rundir.layout import (
    CROSSCODE_PAGES_DIR,
    PAGES_DIR,
    PAGES_INDEX,
    CrosscodeDir,
    RunDir,
    feature_page_name,
    latent_page_name,
)
from autointerp.rundir.windows import Window

LINES = (("latent", "120, 60, 200"), ("a", "255, 128, 0"), ("b", "30, 110, 255"))
CLASS_MEANING = {"shared": "shared: both models use it", "a_only": "exclusive to {a}", "b_only": "exclusive to {b}",
                 "leaning": "leaning: between shared and exclusive", "norm_only": "exclusive by decoder norm only: the other model can read it",
                 "dead": "dead: never fires"}


@dataclass
class LatentWindow:
    window: Window
    read_a: np.ndarray
    read_b: np.ndarray


@dataclass
class LatentSet:
    """One crosscoder's paged latents and everything their pages show."""

    dir: CrosscodeDir
    summary: dict  # crosscode.json summary
    latents: pd.DataFrame  # latents.parquet, indexed by latent
    chosen: list[tuple[int, str]]  # (latent, group)
    group_titles: dict[str, str]
    windows: dict[int, list[LatentWindow]] = field(default_factory=dict)
    labels: pd.DataFrame | None = None  # latent_labels.parquet indexed by latent (column "feature")

    @property
    def key(self) -> str:
        return self.dir.root.name

    @property
    def a(self) -> str:
        return self.summary["model_a"]

    @property
    def b(self) -> str:
        return self.summary["model_b"]


def _complete(path: Path) -> dict | None:
    try:
        rec = read_json(path)
    except (OSError, ValueError):
        return None
    return rec if rec.get("complete") else None


def load_latent_sets(run_dir: Path) -> list[LatentSet]:
    """The model pair's crosscoder (role "pair") with mined latent windows; [] when there is none."""
    out = []
    for d in RunDir(run_dir).crosscoders():
        rec, mined = _complete(d.record), _complete(d.latent_exemplars_record)
        if rec is None or mined is None or rec["summary"].get("role") != "pair" or not d.latent_exemplars.is_file() or not d.latents.is_file():
            continue
        ms = mined["summary"]
        chosen = [(int(j), str(g)) for j, g in zip(ms.get("latents", []), ms.get("groups", []))]
        s = LatentSet(d, rec["summary"], read_parquet(d.latents).set_index("latent", drop=False), chosen, ms.get("group_titles", {}))
        frame = read_parquet(d.latent_exemplars)
        for r in frame.itertuples(index=False):
            w = Window(int(r.feature), str(r.split), str(r.kind), int(r.rank_or_quantile), str(r.doc_id), float(r.max_act), int(r.max_index),
                       tuple(r.tokens), np.asarray(r.acts, np.float32), tuple(int(x) for x in r.char_start), tuple(int(x) for x in r.char_end), r.text)
            s.windows.setdefault(w.feature, []).append(LatentWindow(w, np.asarray(r.read_a, np.float64), np.asarray(r.read_b, np.float64)))
        labels = _complete(d.latent_labels_record)
        if labels is not None and d.latent_labels.is_file():
            s.labels = read_parquet(d.latent_labels).set_index("feature", drop=False)
        out.append(s)
    return out


def latent_href(key: str, latent: int, depth: int) -> str:
    """Link to a latent page from a page ``depth`` folders below pages/ (0: the index)."""
    return href(*([".."] * depth), CROSSCODE_PAGES_DIR, key, latent_page_name(latent))


def report_href(key: str, latent: int) -> str:
    """Link to a latent page from report.md (next to pages/)."""
    return f"{PAGES_DIR}/{latent_href(key, latent, 0)}"


def _word_line(w: LatentWindow, values: np.ndarray, scale: float, who: str, rgb: str) -> str:
    out = []
    for piece in w.window.segments():
        if piece.act is None:
            out.append(esc(piece.text.replace("\n", " ↵ ")))  # one line per row keeps the three rows aligned
            continue
        v = float(values[piece.index])
        alpha = 0.0 if not math.isfinite(v) or scale <= 0 else max(0.0, min(1.0, v / scale))
        style = f"background-color: rgba({rgb}, {alpha:.3f})" if alpha > 0 else ""
        value = f"{v:.3f}" if math.isfinite(v) else "not covered by its harvest"
        cls = "tok max" if piece.index == w.window.max_index else "tok"
        out.append(f"<span class=\"{cls}\" style=\"{style}\" title=\"{esc(who)}: {value}\">{esc(piece.text)}</span>")
    return "".join(out)


def _window_html(w: LatentWindow, s: LatentSet, scale: float) -> str:
    win, c = w.window, w.window.max_index
    rows = {"latent": (f"latent {win.feature}", win.acts.astype(np.float64)), "a": (f"{s.a} read", w.read_a), "b": (f"{s.b} read", w.read_b)}
    lines = "".join(f"<div class=\"side\"><span class=\"who\">{esc(rows[k][0])}</span> {_word_line(w, rows[k][1], scale, rows[k][0], rgb)}</div>"
                    for k, rgb in LINES)
    meta = (f"{esc(win.doc_id)} · {esc(win.split)} · {esc(win.kind)} {'#' + str(win.rank_or_quantile + 1) if win.kind == 'top' else 'bin ' + str(win.rank_or_quantile)}"
            f" · at the outlined word: latent {float(win.acts[c]):.3f}, {esc(s.a)} read {fmt(w.read_a[c])}, {esc(s.b)} read {fmt(w.read_b[c])}")
    return f"<div class=\"meta\">{meta}</div>\n<div class=\"window pair\">{lines}</div>"


def _feature_cell(model: str, feature: int, selected: dict[str, set[int]]) -> str:
    if feature >= 0 and feature in selected.get(model, ()):
        return f"<a href=\"{esc(href('..', '..', model, feature_page_name(feature)))}\">{feature}</a>"
    return str(feature) if feature >= 0 else "—"


def _label_rows(s: LatentSet, j: int) -> list[list[str]]:
    if s.labels is None or j not in s.labels.index:
        return []
    row = s.labels.loc[j]
    text = lambda v: esc(v) if isinstance(v, str) and v else "—"  # noqa: E731
    return [["final (" + text(row.get("label_source")) + ")", text(row.get("label")), fmt(row.get("final_embedding"))],
            ["LLM", text(row.get("llm_label")), fmt(row.get("score_embedding"))],
            ["lexical", text(row.get("lexical_label")), fmt(row.get("lexical_embedding"))],
            ["shuffled (another latent's)", text(row.get("baseline_label")), fmt(row.get("baseline_embedding"))]]


def latent_page(s: LatentSet, j: int, group: str, selected: dict[str, set[int]], pairs: dict[str, set[tuple[int, int]]],
                n_top: int, n_quantile: int) -> str:
    t = s.latents.loc[j]
    sc = s.summary.get("scales") or [1.0, 1.0]
    cls = str(t["class"])
    label = s.labels.loc[j].get("label") if s.labels is not None and j in s.labels.index else None
    headline = esc(label) if isinstance(label, str) and label else "<span class=\"meta\">not labelled</span>"
    parts = [f"<p><a href=\"{esc(href('..', '..', PAGES_INDEX))}\">← all features</a></p>",
             f"<h1>crosscoder {esc(s.a)} × {esc(s.b)} · latent {j}</h1>",
             f"<p class=\"label\">{headline}</p>"]
    th = s.summary.get("classes", {}).get("thresholds", {})
    facts = [["class", esc(CLASS_MEANING.get(cls, cls).format(a=s.a, b=s.b))], ["selected as", esc(s.group_titles.get(group, group))],
             ["relative decoder norm r = |d_B| / (|d_A| + |d_B|)", fmt(t["relative_norm"])],
             [f"decoder norm for {s.a}, in its raw activation scale", fmt(float(t["norm_a"]) / sc[0])],
             [f"decoder norm for {s.b}, in its raw activation scale", fmt(float(t["norm_b"]) / sc[1])],
             [f"decoder norms in the common-norm space ({s.a} / {s.b})", f"{fmt(t['norm_a'])} / {fmt(t['norm_b'])}"],
             ["Latent Scaling ratio, error target (other model / own model)", fmt(t["nu_error"])],
             ["Latent Scaling ratio, reconstruction target", fmt(t["nu_reconstruction"])],
             ["word units where it fires", fmt(int(t["n_units"]))], ["pooling", esc(s.summary.get("pooling"))]]
    parts += ["<h2>Decoder norms and class</h2>", table(["", "value"], [[esc(k), v] for k, v in facts], [False, True]),
              f"<p class=\"meta\">Thresholds: shared {esc(th.get('shared'))}, A-only {esc(th.get('a_only'))}, B-only {esc(th.get('b_only'))}; "
              f"{esc(th.get('latent_scaling'))}. Raw-scale norm = common-norm value / the model's scale ({fmt(sc[0], 4)} for {esc(s.a)}, "
              f"{fmt(sc[1], 4)} for {esc(s.b)}).</p>"]
    fa, fb = int(t.get("best_a", -1)), int(t.get("best_b", -1))
    min_corr = (s.summary.get("posthoc") or {}).get("min_corr")
    rows = [[esc(s.a), _feature_cell(s.a, fa, selected), fmt(t.get("corr_a"))], [esc(s.b), _feature_cell(s.b, fb, selected), fmt(t.get("corr_b"))]]
    parts += ["<h2>Best-correlated SAE feature of each model</h2>", table(["model", "SAE feature", "correlation over word units"], rows, [False, True, True])]
    verdict = f"post-hoc view of ({fa}, {fb}): {esc(t.get('posthoc'))}" + (f" ({esc(t.get('posthoc_kind'))})" if t.get("posthoc_kind") else "")
    if (fa, fb) in pairs.get(f"{s.a}__{s.b}", ()):
        verdict += f" · <a href=\"{esc(pair_href(s.a, s.b, fa, fb, 2))}\">the pair side by side</a>"
    parts.append(f"<p class=\"meta\">{verdict}; a latent maps to a feature at correlation >= {fmt(min_corr, 2)}.</p>")
    labels = _label_rows(s, j)
    parts.append("<h2>Label</h2>")
    parts.append(table(["label", "text", "held-out embedding AUROC"], labels, [False, False, True]) if labels else
                 "<p class=\"meta\">Not labelled (run `autointerp crosscode` with [crosscode] label_latents = true).</p>")
    ws = s.windows.get(j, [])
    scale = max((float(w.window.max_act) for w in ws), default=0.0)
    parts.append(f"<h2>Windows</h2><p class=\"meta\">Each window three times on the same word units: the latent's activation (purple), the part "
                 f"of its pre-activation read from {esc(s.a)}'s pooled activation (orange) and from {esc(s.b)}'s (blue); shading = value / "
                 f"{scale:.3g} (the latent's max over its windows), negative reads unshaded; hover a word for its value.</p>")
    top = [w for w in ws if w.window.kind == "top"][:n_top]
    quantile = sorted((w for w in ws if w.window.kind == "quantile"), key=lambda w: (-w.window.rank_or_quantile, -w.window.max_act))[:n_quantile]
    for title, shown in (("Top windows", top), ("Quantile windows (typical activations)", quantile)):
        parts.append(f"<h3>{title}</h3>")
        parts += [_window_html(w, s, scale) for w in shown] or ["<p class=\"meta\">None.</p>"]
    return document(f"crosscoder {s.a} x {s.b} latent {j}", "\n".join(parts))


def write_latent_pages(sets: list[LatentSet], pages_dir: Path, selected: dict[str, set[int]], pairs: dict[str, set[tuple[int, int]]],
                       n_top: int, n_quantile: int) -> int:
    """Write every paged latent's page under ``pages_dir``; returns how many."""
    n = 0
    for s in sets:
        folder = pages_dir / CROSSCODE_PAGES_DIR / s.key
        folder.mkdir(parents=True, exist_ok=True)
        for j, group in s.chosen:
            (folder / latent_page_name(j)).write_text(latent_page(s, j, group, selected, pairs, n_top, n_quantile), encoding="utf-8")
            n += 1
    return n


def index_section(sets: list[LatentSet]) -> str:
    """The pages index's list of latent pages (links relative to pages/)."""
    parts = []
    for s in sets:
        rows = []
        for j, group in s.chosen:
            t = s.latents.loc[j]
            lab = s.labels.loc[j] if s.labels is not None and j in s.labels.index else {}
            label = lab.get("label") if len(lab) else None
            rows.append([f"<a href=\"{esc(latent_href(s.key, j, 0))}\">{j}</a>", esc(s.group_titles.get(group, group)), esc(t["class"]),
                         fmt(t["relative_norm"], 2), esc(label) if isinstance(label, str) else "—",
                         fmt(lab.get("final_embedding")) if len(lab) else "—", fmt(lab.get("baseline_embedding")) if len(lab) else "—"])
        parts += [f"<h2>Crosscoder latents · {esc(s.a)} × {esc(s.b)} <span class=\"meta\">({len(rows)} pages)</span></h2>",
                  "<p class=\"meta\">One dictionary for both models; the latents the crosscoder and the post-hoc view disagree on, "
                  "the most-used exclusive and leaning ones and random shared ones.</p>",
                  table(["latent", "selected as", "class", "r", "label", "embedding AUROC", "shuffled"], rows,
                        [True, False, False, True, False, True, True])]
    return "\n".join(parts)


def latent_lines(run_dir: Path, pages_index: str | None) -> list[str]:
    """The report's list of paged latents (linked to their pages when the pages were written), with the
    label scores against the shuffled baseline; [] when no latent was paged."""
    from autointerp.report.fmt import md_table, md_text, num, pct

    out = []
    for s in load_latent_sets(run_dir):
        if not s.chosen:
            continue
        groups = pd.Series([g for _, g in s.chosen]).value_counts()
        picked = ", ".join(f"{n} {s.group_titles.get(g, g)}" for g, n in groups.items())
        out += [f"**Crosscoder latents with exemplars, labels and pages** ({len(s.chosen)}: {md_text(picked)}; at most "
                f"{max(groups)} per group, seeded). Windows are word units showing the latent and what it reads from each model's pooled activation.", ""]
        rec = _complete(s.dir.latent_labels_record)
        ls = rec["summary"] if rec else None
        if ls and ls.get("n_latents"):
            out += [f"Labels through the explain path (sources: {md_text(', '.join(f'{k} {v}' for k, v in ls['label_sources'].items()))}); held-out "
                    f"embedding AUROC of the final label {num(ls['mean_final'])} vs {num(ls['mean_shuffled'])} for a label shuffled in from "
                    f"another latent (lexical label {num(ls['mean_lexical'])}, LLM label {num(ls['mean_llm'])}); the final label beats its "
                    f"shuffled one for {pct(ls['final_beats_shuffled'])} of {ls['n_compared']} latents.", ""]
        rows = []
        for j, group in s.chosen:
            t = s.latents.loc[j]
            lab = s.labels.loc[j] if s.labels is not None and j in s.labels.index else None
            label = lab.get("label") if lab is not None else None
            name = f"[{j}]({report_href(s.key, j)})" if pages_index else str(j)
            rows.append([name, md_text(s.group_titles.get(group, group)), md_text(t["class"]), num(t["relative_norm"], 2),
                         md_text(label, 80) if isinstance(label, str) else "-",
                         f"{num(lab.get('final_embedding'))} ({num(lab.get('baseline_embedding'))})" if lab is not None else "-"])
        out += [md_table(["latent", "selected as", "class", "r", "label", "embedding AUROC (shuffled)"], rows, ["r", "l", "l", "r", "l", "r"]), ""]
    return out
