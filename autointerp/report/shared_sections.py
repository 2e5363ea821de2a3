"""The two lists the verdict hinges on: what the models share beyond words, and what one model has alone.

*Beyond words*: the contextual pairs (``compare.lexical``: shared pairs that stay correlated among
occurrences of the same word), best first by that contextual correlation, each with both names, a top
window per side, the lexical profile with its conditioning context, and its pair page. *Alone*: per model
the best-supported features (those firing on the most tokens, dense background features left out) with no
partner above the null in the
other model. Selection lives here so the pages written for them (``report.selection``) are exactly these.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from autointerp.exemplars.profile import read_profiles
from autointerp.report.artifacts import PairInputs
from autointerp.report.fmt import md_marked, md_table, md_text, num, pct
from autointerp.rundir.windows import Window

CONTEXTUAL_ROWS = 20
ALONE_ROWS = 10
DENSE = 0.05  # features firing on more than this share of tokens (dense background features) are not listed as "alone"
WindowLookup = Callable[[str, int], Window | None]
LinkLookup = Callable[[str, int], str | None]
PairLink = Callable[[PairInputs, int, int], str | None]


def contextual_pairs(p: PairInputs, n: int = CONTEXTUAL_ROWS) -> pd.DataFrame:
    """The ``n`` contextual pairs with the highest contextual correlation (empty before word-level compare)."""
    m = p.matches
    if m is None or "kind" not in m.columns:
        return pd.DataFrame(columns=["feature_a", "feature_b", "activation_corr", "contextual_corr"])
    rows = m[(m["method"] != "label") & (m["kind"] == "contextual")]
    return rows.sort_values(["contextual_corr", "feature_a"], ascending=[False, True]).head(n)


def alone_features(p: PairInputs, model: str, n: int = ALONE_ROWS) -> pd.DataFrame:
    """Per model: live features without a shared partner, most frequent first among those not denser than
    ``DENSE`` (columns feature, density, partner_corr: the correlation of its Hungarian partner, NaN when it
    got none)."""
    m = p.models.get(model)
    if m is None or m.stats is None or p.features is None:
        return pd.DataFrame(columns=["feature", "density", "partner_corr"])
    mine = p.features[p.features["model"] == model][["feature", "shared", "dead", "partner_corr"]]
    stats = m.stats[~m.stats["dead"].astype(bool)][["feature", "density"]]
    rows = stats.merge(mine, on="feature", how="inner")
    rows = rows[~rows["shared"].astype(bool) & ~rows["dead"].astype(bool) & (rows["density"] <= DENSE)]
    return rows.sort_values(["density", "feature"], ascending=[False, True]).head(n)[["feature", "density", "partner_corr"]]


def listed(p: PairInputs) -> tuple[dict[str, list[int]], list[tuple[int, int]]]:
    """({model: features}, [(feature_a, feature_b)]) these sections list: they all get pages."""
    pairs = contextual_pairs(p)
    features = {p.a: [int(f) for f in pairs["feature_a"]], p.b: [int(f) for f in pairs["feature_b"]]}
    for model in (p.a, p.b):
        features[model] += [int(f) for f in alone_features(p, model)["feature"]]
    return features, [(int(a), int(b)) for a, b in zip(pairs["feature_a"], pairs["feature_b"])]


def _window(w: Window | None, chars: int) -> str:
    return md_marked(*w.snippet(chars)) if w is not None else "no window"


def _feature(model: str, f: int, link: LinkLookup) -> str:
    href = link(model, f)
    return f"[{f}]({href})" if href else str(f)


def _profiles(p: PairInputs, model: str, features: list[int]) -> dict:
    m = p.models.get(model)
    if m is None or not m.files.lexical_profile.is_file() or not features:
        return {}
    return read_profiles(m.files.lexical_profile, features)


def beyond_words_section(p: PairInputs, window: WindowLookup, link: LinkLookup, pair_link: PairLink, chars: int) -> list[str]:
    pairs = contextual_pairs(p)
    n_all = int(((p.matches["kind"] == "contextual") & (p.matches["method"] != "label")).sum()) if p.matches is not None and "kind" in p.matches.columns else 0
    out = [f"### What is shared beyond words: `{p.a}` vs `{p.b}`", ""]
    if pairs.empty:
        return out + ["_No contextual pairs: no shared pair stays correlated beyond word identity (or the comparison is not at word level)._", ""]
    prof = {m: _profiles(p, m, [int(f) for f in pairs[f"feature_{s}"]]) for m, s in ((p.a, "a"), (p.b, "b"))}
    rows = []
    for r in pairs.itertuples(index=False):
        fa, fb = int(r.feature_a), int(r.feature_b)
        summary = lambda m, f: md_text(prof[m][f].summary()) if f in prof[m] else "no profile"  # noqa: E731
        href = pair_link(p, fa, fb)
        rows.append([_feature(p.a, fa, link), md_text(p.name(p.a, fa, 70)), _feature(p.b, fb, link), md_text(p.name(p.b, fb, 70)),
                     num(r.contextual_corr), num(r.activation_corr), _window(window(p.a, fa), chars), _window(window(p.b, fb), chars),
                     f"{summary(p.a, fa)} / {summary(p.b, fb)}", f"[side by side]({href})" if href else "no page"])
    header = [f"`{p.a}`", "name A", f"`{p.b}`", "name B", "contextual r", "r", "top window A", "top window B", "lexical profile A / B", "pair"]
    intro = (f"The {len(pairs)} best of {n_all:,} contextual pairs, by *contextual r* (the pair's correlation among "
             "occurrences of the same word: each word type's mean removed from both features); *r* is their correlation "
             "over all aligned words. The lexical profile names the words each feature fires on and the context around its peaks.")
    return out + [intro, "", md_table(header, rows, ["r", "l", "r", "l", "r", "r", "l", "l", "l", "l"]), ""]


def alone_section(p: PairInputs, window: WindowLookup, link: LinkLookup, chars: int) -> list[str]:
    threshold = ((p.stats or {}).get("null") or {}).get("threshold")
    out = [f"### What one model has alone: `{p.a}` vs `{p.b}`", "",
           f"Per model, the {ALONE_ROWS} features that fire most often without a partner above the null in the other model "
           f"(r > {num(threshold)}), leaving out dense features (firing on more than {pct(DENSE, 0)} of tokens); *partner r*: the "
           "correlation of the partner the matching gave it (none when unmatched).", ""]
    for model in (p.a, p.b):
        rows = alone_features(p, model)
        if rows.empty:
            out += [f"_`{model}`: no unshared live features (or feature statistics missing)._", ""]
            continue
        table = [[_feature(model, int(r.feature), link), md_text(p.name(model, int(r.feature), 80)), pct(r.density, 2),
                  num(r.partner_corr) if pd.notna(r.partner_corr) else "none", _window(window(model, int(r.feature)), chars)]
                 for r in rows.itertuples(index=False)]
        out += [f"**`{model}`**", "", md_table(["feature", "name", "density", "partner r", "top window"], table, ["r", "l", "r", "r", "l"]), ""]
    return out
