"""The report's caveats: what limits the conclusions, with this run's own numbers filled in."""

from __future__ import annotations

from autointerp.report.artifacts import RunInputs
from autointerp.report.fmt import count, md_text, num


def caveats_section(run: RunInputs) -> str:
    items: list[str] = []
    sizes = []
    for m in run.models:
        man = m.manifest or {}
        sizes.append(f"`{m.slug}`: {count(man.get('model', {}).get('n_layers'))} blocks, d_model {count(man.get('d_model'))}, "
                     f"read at block {m.layer} ({m.site})")
    items.append("**Model size.** " + "; ".join(sizes) + ". What small models share need not hold for larger ones, and a "
                 "single layer per model is one snapshot of each network.")
    corpus = run.corpus or {}
    tokens = ", ".join(f"{count(m.n_tokens)} `{m.slug}` tokens" for m in run.models)
    items.append(f"**Corpus size.** {count(corpus.get('n_docs'))} documents ({tokens}) from one corpus "
                 f"({md_text((corpus.get('config') or {}).get('dataset', run.cfg.corpus.dataset))}). Features for concepts the "
                 "corpus lacks cannot appear, rare features have few exemplars, and correlations rest on this text alone.")
    named = [(m.labels_meta or {}).get("explainer_model") or _first_explainer(m) for m in run.models if m.labels is not None]
    explainers = sorted({str(e) for e in named if e})
    if explainers:
        items.append(f"**Explainer.** Labels were written by {', '.join(md_text(e) for e in explainers)}. A weak (small, local) "
                     "explainer writes vaguer labels: label scores and label similarity understate what the features encode, "
                     "and the shuffled-label baseline is the only fair yardstick.")
    else:
        items.append("**Labels.** No labels yet (run `autointerp explain` and `autointerp score`): the comparison rests on activations alone.")
    for p in run.pairs:
        s = p.stats or {}
        null = s.get("null") or {}
        definition = (s.get("definitions") or {}).get("shared")
        if p.stats is None:
            continue
        what = md_text(definition) if definition else (
            f"the pair's activation correlation over aligned {md_text(s.get('unit'))} units exceeds {num(null.get('threshold'))}, "
            f"the (1 − α) quantile of a null from misaligned units (α = {null.get('alpha', 'n/a')})")
        items.append(f"**What \"shared\" means ({p.a} vs {p.b}).** {what}. It says the two features fire on the same text, "
                     "not that the models compute them the same way; one-to-one matching also hides features that split "
                     "or merge across models.")
    items.append("**Dead and rare features.** Dead features are excluded from matching; features firing on a handful of "
                 "tokens give noisy correlations and labels.")
    lines = ["## Caveats", "", "> **Read these before drawing conclusions.**", ""]
    lines += [f"- {item}" for item in items]
    return "\n".join(lines) + "\n"


def _first_explainer(m) -> str | None:
    if m.labels is None or "explainer_model" not in m.labels.columns:
        return None
    values = m.labels["explainer_model"].dropna()
    return None if values.empty else str(values.iloc[0])
