"""Report sections on the cross-model comparison of one pair of models (compare/<A>__<B>/).

Matched concepts (best ``combined_rank`` first) with an exemplar for each side, the disagreements
between the activation matching and the label matching, concept domains (``report.domains``), and the
level-of-abstraction finding. Every feature is shown by its name (``ModelInputs.names``: its label, else
its lexical name), and every listed pair links its side-by-side page (``selection.listed_pairs``).
Findings are the comparison stage's own numbers and sentences (stats.json), quoted, never restated here.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from autointerp.explain.names import LEGEND
from autointerp.report.artifacts import PairInputs
from autointerp.report.domains import domain_section  # noqa: F401 - report.md's section list imports it from here
from autointerp.report.fmt import (
    count,
    is_missing,
    md_marked,
    md_table,
    md_text,
    num,
    pct,
    pvalue,
)
from autointerp.report.selection import disagreements, top_matches
from autointerp.rundir.layout import PAIR_PAGES_DIR, pair_page_name
from autointerp.rundir.windows import Window

ExemplarLookup = Callable[[str, int], Window | None]
LinkLookup = Callable[[str, int], str | None]


def summary_lines(p: PairInputs) -> list[str]:
    s = p.stats or {}
    null = s.get("null") or {}
    act = s.get("activation") or {}
    lab = s.get("label") or {}
    agree = s.get("agreement") or {}
    lines = [
        f"- Aligned units: {count(s.get('n_units'))} {md_text(s.get('unit'))}s; features {count(s.get('n_features_a'))} (`{p.a}`, "
        f"{count(s.get('n_dead_a'))} dead) vs {count(s.get('n_features_b'))} (`{p.b}`, {count(s.get('n_dead_b'))} dead).",
        f"- Activation matching: {count(act.get('n_pairs'))} pairs, mean correlation {num(act.get('mean_corr'))}, median {num(act.get('median_corr'))}.",
        f"- Null ({md_text(null.get('method'))}, {count(null.get('n_samples'))} samples): pairs with correlation above "
        f"{num(null.get('threshold'))} are *shared* (α = {null.get('alpha', 'n/a')}). **Shared pairs: {count(s.get('n_shared'))}**.",
    ]
    if lab.get("available"):
        lines.append(f"- Label matching: {count(lab.get('n_pairs'))} pairs, mean label similarity {num(lab.get('mean_similarity'))}.")
    else:
        lines.append("- Label matching: not available (labels missing when `autointerp compare` ran; run `autointerp explain`, then `autointerp compare` again).")
    lines.append(f"- Agreement: {count(agree.get('n_both'))} pairs chosen by both matchings ({pct(agree.get('fraction'))}).")
    return lines


def matched_table(p: PairInputs, max_rows: int, exemplar: ExemplarLookup, link: LinkLookup, chars: int) -> str:
    m = top_matches(p.matches, max_rows)
    if m.empty:
        return "_No matched pairs._"
    rows = []
    for r in m.itertuples(index=False):
        rows.append([
            str(int(r.combined_rank)),
            _feature_cell(p.a, int(r.feature_a), link), md_text(p.name(p.a, int(r.feature_a), 80)),
            _feature_cell(p.b, int(r.feature_b), link), md_text(p.name(p.b, int(r.feature_b), 80)),
            num(r.label_similarity), num(r.activation_corr), pvalue(r.p_value), _shared_cell(r),
            str(r.method), _exemplar_cell(exemplar(p.a, int(r.feature_a)), chars), _exemplar_cell(exemplar(p.b, int(r.feature_b)), chars),
            _pair_cell(p, int(r.feature_a), int(r.feature_b), link),
        ])
    header = ["rank", f"`{p.a}`", "name A", f"`{p.b}`", "name B", "label sim.", "act. corr.", "p", "shared", "method", "exemplar A", "exemplar B", "pair"]
    return md_table(header, rows, ["r", "r", "l", "r", "l", "r", "r", "r", "l", "l", "l", "l", "l"]) + "\n\n" + md_text(LEGEND)


def _pair_cell(p: PairInputs, fa: int, fb: int, link: LinkLookup) -> str:
    """The side-by-side page of a pair: written for every matched pair whose two features have pages."""
    ha, hb = link(p.a, fa), link(p.b, fb)
    if not (ha and hb):
        return "—"
    pages_root = ha.rsplit("/", 2)[0]  # link() gives <pages>/<model>/<feature>.html
    return f"[side by side]({pages_root}/{PAIR_PAGES_DIR}/{p.key}/{pair_page_name(fa, fb)})"


def _shared_cell(row) -> str:
    """yes/no, and for shared word-level pairs whether they share more than the word (``kind``)."""
    kind = getattr(row, "kind", None)
    if not bool(row.shared):
        return "no"
    return f"yes ({kind})" if isinstance(kind, str) and kind in ("lexical", "contextual") else "yes"


def _feature_cell(model: str, feature: int, link: LinkLookup) -> str:
    href = link(model, feature)
    return f"[{feature}]({href})" if href else str(feature)


def _exemplar_cell(window: Window | None, chars: int) -> str:
    if window is None:
        return "—"
    return md_marked(*window.snippet(chars))


def disagreement_section(p: PairInputs, max_rows: int, link: LinkLookup) -> str:
    """Pairs only one matching chose: same activations / different labels, and the reverse."""
    m = p.matches
    lines = ["#### Where the two matchings disagree", ""]
    agree = (p.stats or {}).get("agreement") or {}
    lines.append(f"{count(agree.get('n_both'))} pairs were chosen by both matchings ({pct(agree.get('fraction'))}). "
                 "Below: shared pairs (activation correlation above the null) that label matching did not pick, "
                 "and the most similar label pairs that activation matching did not pick.")
    lines.append("")
    if not ((p.stats or {}).get("label") or {}).get("available"):
        lines.append("_Label matching did not run (no labels): run `autointerp explain`, then `autointerp compare` again._")
        return "\n".join(lines + [""])
    act_only, label_only = disagreements(m, max_rows)
    for title, frame in (("Same activations, different labels", act_only), ("Similar labels, different activations", label_only)):
        lines.append(f"**{title}** ({len(frame)} shown)")
        lines.append("")
        if frame.empty:
            lines.append("_none_")
        else:
            rows = [[_feature_cell(p.a, int(r.feature_a), link), md_text(p.name(p.a, int(r.feature_a), 70)), _feature_cell(p.b, int(r.feature_b), link),
                     md_text(p.name(p.b, int(r.feature_b), 70)), num(r.label_similarity), num(r.activation_corr),
                     _pair_cell(p, int(r.feature_a), int(r.feature_b), link)] for r in frame.itertuples(index=False)]
            lines.append(md_table([f"`{p.a}`", "name A", f"`{p.b}`", "name B", "label sim.", "act. corr.", "pair"], rows,
                                  ["r", "l", "r", "l", "r", "r", "l"]))
        lines.append("")
    return "\n".join(lines)


def abstraction_section(p: PairInputs) -> str:
    s = p.stats or {}
    ab = s.get("abstraction") or {}
    lines = ["#### Level of abstraction", ""]
    if ab:
        a, b = ab.get("a") or {}, ab.get("b") or {}
        lines.append(f"Metric: {md_text(ab.get('metric'))}. `{p.a}`: mean {num(a.get('mean'), 2)}, median {num(a.get('median'), 2)}; "
                     f"`{p.b}`: mean {num(b.get('mean'), 2)}, median {num(b.get('median'), 2)} "
                     f"({md_text(ab.get('test'))}: statistic {num(ab.get('statistic'), 3)}, p = {pvalue(ab.get('p_value'))}).")
        findings = [ab["finding"]] if ab.get("finding") else []
        findings += [v["finding"] for v in ab.values() if isinstance(v, dict) and v.get("finding")]
        for finding in findings:
            lines.append("")
            lines.append(f"> Finding (from the comparison stage): {md_text(finding)}")
        if ab.get("entity_source"):
            lines.append("")
            lines.append(f"Entities: {md_text(ab['entity_source'])} ({count(ab.get('n_entities'))} in the corpus).")
        definition = ((s.get("definitions") or {}).get("abstraction"))
        if definition:
            lines.append("")
            lines.append(f"Definition: {md_text(definition)}")
        lines.append("")
    levels = s.get("levels") or {}
    if levels:
        lines.append("Matching at each unit of alignment:")
        lines.append("")
        keys = list(dict.fromkeys(k for summary in levels.values() if isinstance(summary, dict) for k in summary))
        rows = [[md_text(k), *[_scalar(levels[lv].get(k) if isinstance(levels[lv], dict) else None) for lv in levels]] for k in keys]
        lines.append(md_table(["", *[md_text(lv) for lv in levels]], rows))
        lines.append("")
    if not ab and not levels:
        lines.append("_No abstraction analysis in stats.json._")
        lines.append("")
    return "\n".join(lines)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float):
        return "n/a" if is_missing(value) else (f"{value:.3g}" if abs(value) < 1e-3 and value else f"{value:.3f}")
    if value is None:
        return "n/a"
    if isinstance(value, (dict, list)):
        return md_text(json.dumps(value, default=str), 60)
    return md_text(value, 60)
