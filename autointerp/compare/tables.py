"""The compare stage's tables (matches.parquet, features.parquet) with fixed Arrow schemas, and definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autointerp.io import atomic_path

MATCHES_SCHEMA = pa.schema([
    ("feature_a", pa.int32()), ("feature_b", pa.int32()), ("method", pa.string()),
    ("activation_corr", pa.float32()), ("label_similarity", pa.float32()), ("p_value", pa.float64()),
    ("shared", pa.bool_()), ("combined_score", pa.float32()), ("combined_rank", pa.int32()),
    ("label_a", pa.string()), ("label_b", pa.string()), ("domain", pa.string()),
    ("activation_confidence", pa.float32()), ("label_confidence", pa.float32()),
    ("kind", pa.string()), ("contextual_corr", pa.float32()), ("lexical_null_corr", pa.float32()),
    ("word_share_a", pa.float32()), ("word_share_b", pa.float32()),
])
LEXICAL_COLUMNS = ("kind", "contextual_corr", "lexical_null_corr", "word_share_a", "word_share_b")

DEFINITIONS = {
    "unit": "shared text unit both tokenizations are pooled onto: word = run of word characters or of punctuation in the document text (a token counts for every word its char span overlaps); document = whole document. A feature's value on a unit is its max SAE activation over the unit's tokens.",
    "n_units": "units covered by both harvests (only these count)",
    "activation_corr": "Pearson correlation of the two features' pooled activations over the aligned units",
    "dead": "zero variance over the aligned units (never fires there): no correlation, excluded from matching",
    "activation matching": "Hungarian assignment (scipy linear_sum_assignment, maximise) on the correlation matrix of live features; at pretrained widths (stats matching = sparse) the maximum-weight one-to-one assignment (scipy min_weight_full_bipartite_matching, a 'no partner' option at correlation 0) among each live feature's [compare] candidates most positively correlated partners on the other side",
    "activation_corr (sparse matching)": "NaN for a label-matched pair that is not among either feature's candidate partners (its correlation is below both features' candidates)",
    "n_unmatched_a": "live features of A without an activation partner: the larger side's surplus, and (sparse matching) features whose candidates all went to others or that have none (n_no_candidate_a: no positive correlation with any live feature of B)",
    "null.n_unmatched": "sparse matching: null features left without a partner; counted below every null sample, so the null keeps the dense matching's size",
    "label matching": "Hungarian assignment on the cosine similarity of label embeddings (status ok labels only)",
    "null": "matched correlations after deranging documents between the models (unit i of doc d for A vs unit i of doc perm[d] for B), same correlation + Hungarian",
    "threshold": "(1 - alpha) quantile of the null's matched correlations",
    "p_value": "(1 + #null samples >= corr) / (1 + #null samples)",
    "shared": "activation-matched pair with corr above the null threshold",
    "activation_confidence": "1 - p_value of the pair's correlation (computed for every row with a defined corr)",
    "label_confidence": "share of all cross-model label pairs less similar than this pair",
    "combined_score": "weighted mean (weight [compare] combined_weight on activation) of the available confidences; rank 1 = best",
    "agreement.fraction": "n_both / n_comparable: A features whose activation partner equals their label partner, among A features that got a partner from both matchings",
    "domain": "zero-shot, every live matchable feature: the [compare] domains description whose embedding is nearest to the embedding of the feature's name (final label, else lexical-profile name) + the words around the peak of its best top window (pair: feature_a's domain, else feature_b's; none for a side without exemplars)",
    "n_docs_spanned": "distinct documents among the feature's activating exemplar windows (top + quantile)",
    "n_entities_spanned": "distinct entities among those windows (factbook: the country in factbook/<country>/<section>)",
    "top_entities_spanned": "distinct entities among the feature's top windows only (n_top_windows of them)",
    "abstraction": "Mann-Whitney U (two-sided) between the models' top_entities_spanned over features with a full set of top windows; 'documents' repeats it for top_docs_spanned",
    "label_specificity": "1 - mean cosine of the label's embedding to the model's other labels",
    "min_support": "features active on fewer aligned units than this are left out of matching (rare: they correlate perfectly by accident), counted as n_rare_a / n_rare_b",
    "kind": "word level, activation-matched pairs: shared pairs are 'contextual' when they stay correlated beyond what the same word type explains (excess over the lexical null above its threshold), else 'lexical'; pairs below the null are 'unshared'",
    "contextual_corr": "correlation after removing each word type's mean from both features (recurring word types only)",
    "lexical_null_corr": "mean correlation when each unit of A is paired with a unit of the same word type in another document for B",
    "word_share_a": "share of the feature's activation variance over units explained by word identity (eta-squared over word types)",
    "beyond_lexical_fraction": "contextual pairs / shared pairs (word level)",
}


def write_parquet(frame: pd.DataFrame, dest: Path, schema: pa.Schema | None = None) -> None:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)


def matches_table(primary, labels, domains: dict, weight: float) -> pd.DataFrame:
    act = primary.assignment
    pairs = {(int(r), int(c)): "activation" for r, c in zip(act.rows, act.cols)}
    if labels is not None:
        for r, c in zip(labels.assignment.rows, labels.assignment.cols):
            pairs[(int(r), int(c))] = "both" if (int(r), int(c)) in pairs else "label"
    fa = np.array([p[0] for p in pairs], dtype=np.int64)
    fb = np.array([p[1] for p in pairs], dtype=np.int64)
    method = np.array(list(pairs.values()), dtype=object)
    corr = primary.corr.pair_values(fa, fb) if len(fa) else np.zeros(0)  # sparse matching: NaN off its candidates
    finite = np.isfinite(corr)
    act_conf = np.full(len(fa), np.nan)
    act_conf[finite] = 1.0 - primary.null.p_values(corr[finite])
    sim = labels.pair_similarity(fa, fb) if labels is not None else np.full(len(fa), np.nan)
    lab_conf = labels.calibrated(sim) if labels is not None else np.full(len(fa), np.nan)
    weights = np.stack([np.where(np.isnan(act_conf), 0.0, weight), np.where(np.isnan(lab_conf), 0.0, 1.0 - weight)])
    values = np.stack([np.nan_to_num(act_conf), np.nan_to_num(lab_conf)])
    total = weights.sum(0)
    combined = np.where(total > 0, (weights * values).sum(0) / np.where(total > 0, total, 1.0), np.nan)
    from_act = method != "label"
    p_value = np.where(from_act, 1.0 - act_conf, np.nan)
    frame = pd.DataFrame({
        "feature_a": fa.astype(np.int32), "feature_b": fb.astype(np.int32), "method": method.astype(str),
        "activation_corr": corr.astype(np.float32), "label_similarity": sim.astype(np.float32), "p_value": p_value,
        "shared": from_act & finite & (np.nan_to_num(corr, nan=-2.0) > primary.null.threshold),
        "combined_score": combined.astype(np.float32),
        "label_a": labels.a.label_of(fa) if labels is not None else [None] * len(fa),
        "label_b": labels.b.label_of(fb) if labels is not None else [None] * len(fa),
        "activation_confidence": act_conf.astype(np.float32), "label_confidence": lab_conf.astype(np.float32),
    })
    dom_a, dom_b = domains.get("a", {}), domains.get("b", {})
    frame["domain"] = [dom_a.get(int(x)) or dom_b.get(int(y)) for x, y in zip(fa, fb)]
    order = np.lexsort((-np.nan_to_num(corr, nan=-2.0), -np.nan_to_num(combined, nan=-1.0)))
    frame = frame.iloc[order].reset_index(drop=True)
    frame["combined_rank"] = np.arange(1, len(frame) + 1, dtype=np.int32)
    lexical = getattr(primary, "lexical", None)
    if lexical is not None:
        frame = frame.merge(lexical, on=["feature_a", "feature_b"], how="left")
        frame.loc[frame["method"] == "label", list(LEXICAL_COLUMNS)] = np.nan
        frame["kind"] = frame["kind"].astype(object).where(frame["kind"].notna(), None)
    else:
        for column in LEXICAL_COLUMNS:
            frame[column] = None if column == "kind" else np.nan
    return frame[[f.name for f in MATCHES_SCHEMA]]


def features_table(slug_a: str, slug_b: str, primary, labels, domains: dict, spans: dict, specificity: dict) -> pd.DataFrame:
    """One row per (model, feature): dead, domain, spans, label specificity, activation partner."""
    corr, act = primary.corr, primary.assignment
    frames = []
    for side, slug, dead, space in (("a", slug_a, corr.dead_a, labels.a if labels else None),
                                    ("b", slug_b, corr.dead_b, labels.b if labels else None)):
        n = len(dead)
        mine, theirs = (act.rows, act.cols) if side == "a" else (act.cols, act.rows)
        partner = np.full(n, -1, np.int64)
        partner[mine] = theirs
        pcorr = np.full(n, np.nan, np.float32)
        pcorr[mine] = act.values
        spec = np.full(n, np.nan, np.float32)
        label = [None] * n
        if space is not None:
            spec[space.features] = specificity[side]
            label = space.label_of(np.arange(n))
        dom = domains.get(side, {})
        span = spans[slug]
        frames.append(pd.DataFrame({
            "model": slug, "feature": np.arange(n, dtype=np.int32), "dead": dead.astype(bool),
            "domain": [dom.get(i) for i in range(n)],
            "n_docs_spanned": span["n_docs_spanned"].astype("Int32").to_numpy(),
            **{c: span[c].astype("Int32").to_numpy() for c in ("n_entities_spanned", "n_top_windows", "top_docs_spanned", "top_entities_spanned")},
            "label_specificity": spec, "label": label, "activation_partner": partner.astype(np.int32),
            "partner_corr": pcorr, "shared": np.nan_to_num(pcorr, nan=-2.0) > primary.null.threshold,
        }))
    return pd.concat(frames, ignore_index=True)
