"""report.md's "Features every model has" (issue 27): the universal features of a run of three or more models
(``compare.universal``), counted against the random-weights floor under the verdict's decision rule, and the
best chains with every model's name and top window, each linked to its page (``universal_pages``: every model's
activations on the same words) when the report writes pages."""

from __future__ import annotations

from collections.abc import Callable

from autointerp.compare.universal import universal_features
from autointerp.compare.verdict import call
from autointerp.report.artifacts import RunInputs
from autointerp.report.fmt import md_marked, md_table, md_text, num
from autointerp.report.shared_sections import LinkLookup, WindowLookup

ChainPage = Callable[[dict[str, int]], str]  # a chain's features per model -> the link to its page

MAX_ROWS = 10


def universal_of(run: RunInputs) -> dict | None:
    """``compare.universal.universal_features`` of the run, with each count's call against its floor."""
    slugs = [m.slug for m in run.models]
    result = universal_features(run.run_dir, slugs, run.cfg.controls.floor_models(slugs))
    if result is None:
        return None
    for key in ("n_universal", "n_beyond_words"):
        floors = [f for f in result["floor"] if f.get(f"{key}_ci")]
        floor = max(floors, key=lambda f: f[key], default=None)  # the conservative floor
        cell = {"value": result[key], "ci": result.get(f"{key}_ci")}
        result[f"{key}_call"] = call(cell, {"value": floor[key], "ci": floor[f"{key}_ci"]} if floor else None, None)
    return result


def _count(value, ci) -> str:
    return f"{value:,}" + (f" [{ci[0]:,.0f}, {ci[1]:,.0f}]" if ci else "")


def universal_section(result: dict | None, run: RunInputs, window: WindowLookup, link: LinkLookup, chars: int,
                      page: ChainPage | None = None) -> list[str]:
    """``page``: the link to a chain's page (every model's activations on the same words); None without pages."""
    if not result:
        return []
    models = result["models"]
    live = {m.slug: int((~m.stats["dead"].astype(bool)).sum()) for m in run.models if m.stats is not None}
    n_links = len(models) * (len(models) - 1) // 2
    out = ["## Features every model has", "",
           f"A universal feature is one feature per model, matched one-to-one in all {n_links} pairs with every link above its "
           "pair's null; a chain that closes inconsistently (A-B and B-C matched, A-C to another feature) never counts. "
           "*Beyond words*: every link also shared beyond word identity. In brackets 95% document-bootstrap intervals; "
           "the floor is the same closure with a random-weights copy of one model in its place.", ""]
    rows = [["this run", _count(result["n_universal"], result.get("n_universal_ci")), _count(result["n_beyond_words"], result.get("n_beyond_words_ci"))]]
    rows += [[f"floor (random `{f['random']}`)", _count(f["n_universal"], f.get("n_universal_ci")), _count(f["n_beyond_words"], f.get("n_beyond_words_ci"))]
             for f in result["floor"]]
    rows.append(["call", str(result.get("n_universal_call") or "no floor"), str(result.get("n_beyond_words_call") or "no floor")])
    out += [md_table(["", "universal features", "universal beyond words"], rows), ""]
    if live:
        shares = ", ".join(f"`{m}` {100 * result['n_universal'] / live[m]:.1f}% ({100 * result['n_beyond_words'] / live[m]:.1f}% beyond words)"
                           for m in models if live.get(m))
        out += [f"Share of each model's live features that are universal: {shares}.", ""]
    chains = result["chains"][:MAX_ROWS]
    if not chains:
        return out + ["_No chain closes across every model._", ""]
    names = {}
    for p in run.pairs:
        for m in (p.a, p.b):
            names.setdefault(m, p)
    table = []
    for c in chains:
        row = []
        for m in models:
            f = c["features"][m]
            href = link(m, f)
            name = md_text(names[m].name(m, f, 50)) if m in names else str(f)
            w = window(m, f)
            row.append(f"{f'[{f}]({href})' if href else f}: {name}<br>{md_marked(*w.snippet(chars)) if w is not None else 'no window'}")
        table.append(row + [num(c["weakest_corr"]), "yes" if c["beyond_words"] else "no"] + ([f"[every model]({page(c['features'])})"] if page else []))
    out += [f"The best {len(chains)} chains (beyond words first, then by their weakest link's correlation): each model's "
            "feature, name and top window" + ("; *every model*: a page with every model's activations on the same words." if page else "."), "",
            md_table([f"`{m}`" for m in models] + ["weakest r", "beyond words"] + (["page"] if page else []), table), ""]
    return out
