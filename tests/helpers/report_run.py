"""The report run: a small but complete run directory, every stage's files written by hand through the
package's writers (see ``helpers.runs`` for the other builders)."""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from autointerp.compare.tables import MATCHES_SCHEMA, write_parquet
from autointerp.config import ModelEntry, RunConfig, to_toml
from autointerp.data.corpus import Document
from autointerp.eval.scorers import SCORERS as SCORER_CLASSES
from autointerp.exemplars.mine import EXEMPLAR_SCHEMA, write_exemplars
from autointerp.exemplars.stage import write_lexical_profile
from autointerp.explain.labels import write_labels as write_labels_table, write_meta
from autointerp.io import write_json
from autointerp.rundir.layout import ModelDir, PairDir, RunDir
from autointerp.sae.config import SAEConfig
from autointerp.sae.registry import create_sae
from autointerp.sae.saelens import save_sae
from helpers.run_parts import write_documents


# ================================================================== the report run (every stage's files, by hand)
# A small but realistic run directory in the agreed artifact layout, for the report tests. Contents chosen by
# hand: harvest.json and metrics.json are the JSON the harvest and train stages record. One document is hostile:
# it carries ``<script>`` and ``<img onerror>`` payloads that would change the page title and add an element with
# id "pwned" if they ever ran, and one label does the same.
PAYLOAD = "<script>document.title='PWNED';document.body.appendChild(document.createElement('div')).id='pwned'</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.title='PWNED';var d=document.createElement('div');d.id='pwned';document.body.appendChild(d)\">"
HOSTILE_DOC = f"Customs report {PAYLOAD} tariffs apply {IMG_PAYLOAD} on imported grain | *bold* _x_ end."
HOSTILE_LABEL = "<b>tariffs</b> & \"imports\" <script>document.title='PWNED'</script> | *md*"

DOCS = {
    "fixture/hostile": HOSTILE_DOC,
    "fixture/fr/geography": "France borders Belgium, Luxembourg, Germany, Switzerland, Italy, Monaco, Andorra and Spain along a long coastline.",
    "fixture/fr/economy": "The economy of France is diversified; exports include machinery, aircraft, wine and pharmaceuticals in 2023.",
    "fixture/jp/geography": "Japan is an island chain between the North Pacific Ocean and the Sea of Japan, east of Korea.",
    "fixture/jp/economy": "Japan exports motor vehicles, iron and steel, semiconductors and auto parts; imports petroleum and grain.",
    "fixture/br/people": "Brazil has a population of about 217 million people; Portuguese is the official language.",
    "fixture/br/government": "Brazil is a federal presidential republic with a bicameral National Congress and a supreme court.",
    "fixture/ke/energy": "Kenya generates most electricity from geothermal and hydroelectric plants near the Rift Valley.",
}
D_SAE = 12
DEAD_FEATURE = 11
N_LABELLED = 8
FAILED_FEATURE = 7
EXPLAINER = "fixture-explainer-0.5b"
SCORERS = ("embedding", "detection")

METRICS = {
    "alpha": dict(fvu=0.1234, explained_variance=0.8766, r2=0.8766, l0=4.0, dead_fraction=0.0833, ce_loss_recovered=0.9123,
                  delta_lm_loss=0.321, ce_clean=3.1, ce_spliced=3.421, ce_zero_ablate=9.0, gini=0.55, decoder_cos_mean=0.05,
                  decoder_cos_p95=0.11, decoder_cos_max=0.6, n_eval_tokens=321, train_tokens=4096, d_sae=D_SAE),
    "beta": dict(fvu=0.2345, explained_variance=0.7655, r2=0.7655, l0=4.0, dead_fraction=0.0, ce_loss_recovered=None,
                 delta_lm_loss=None, ce_clean=None, ce_spliced=None, ce_zero_ablate=None, gini=0.44, decoder_cos_mean=0.06,
                 decoder_cos_p95=0.12, decoder_cos_max=0.7, n_eval_tokens=299, train_tokens=4000, d_sae=D_SAE),
}


# As a reader sees it (``controls.calibration.pair_calibration``): compare's calibration with the controls that
# concern the pair - the answer next to what it is measured against, with intervals and the verdict. The fixture
# stores it in stats.json and writes no controls.json, so the report reads it as it is.
def _fixture_stats(a: str, b: str, shared: int, contextual: int, ci_shared, ci_contextual, rare=(2, 1)) -> dict:
    return {"model_a": a, "model_b": b, "unit": "word", "n_shared": shared, "n_features_a": D_SAE, "n_dead_a": 1, "n_rare_a": rare[0],
            "n_features_b": D_SAE, "n_dead_b": 1, "n_rare_b": rare[1], "min_support": 5, "null": {"threshold": 0.3},
            "activation": {"n_pairs": 9, "fraction_shared": shared / 9},
            "lexical": {"n_contextual": contextual, "n_lexical": shared - contextual, "beyond_lexical_fraction": contextual / shared},
            "intervals": {"n_shared": ci_shared, "n_contextual": ci_contextual, "n_replicates": 1000, "n_blocks": 6, "seconds": 0.1}}


def _representation(cka: float, svcca: float, knn: float, spread: float) -> dict:
    cell = lambda v, null: {"value": v, "null_mean": null, "null_sd": 0.004, "p_value": 0.05, "z": 100.0, "n_units": 777, "n_permutations": 19}  # noqa: E731
    return {"cka": cell(cka, 0.0123), "svcca": cell(svcca, 0.1111), "mutual_knn": cell(knn, 0.0044),
            "intervals": {k: {"ci": [v - spread, v + spread]} for k, v in (("cka", cka), ("svcca", svcca), ("mutual_knn", knn))} | {"n_blocks": 6, "seconds": 0.5},
            "subsample": {"documents": 3, "of_documents": 3, "units": 777, "of_units": 777}, "seconds": 2.0}


def _calibration() -> dict:
    from autointerp.compare.calibration import calibration_record
    from autointerp.controls.calibration import control_summary, with_controls

    def summary(stats, rep=None):
        return control_summary(stats | {"calibration": calibration_record(stats, rep)}, 3.0)

    pair = _fixture_stats("alpha", "beta", 8, 3, [7, 9], [2, 4])
    cal = calibration_record(pair, _representation(0.4321, 0.5432, 0.0987, 0.02))
    controls = {"ceiling": {"alpha": summary(_fixture_stats("alpha", "alpha@seed1", 9, 6, [8, 9], [5, 7])) | {"seed": 1}},
                "floor": [summary(_fixture_stats("alpha", "beta@random", 7, 0, [6, 8], [0, 1]), _representation(0.0777, 0.3333, 0.0222, 0.01))
                          | {"random": "beta", "against": "alpha", "init_seed": 0}],
                "off": {}, "seconds": 9.0}
    return with_controls(cal, controls, pair)


CALIBRATION = _calibration()


def tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]


def fixture_config(root: Path) -> RunConfig:
    return RunConfig(name="fixture", run_dir=str(root / "run"),
                     models=[ModelEntry("fixture/alpha-lm", name="alpha", layer=2), ModelEntry("fixture/beta-enc", name="beta", layer=1)])


def make_report_run(root: Path, *, labels: bool = True, scores: bool = True, compare: bool = True, seed: int = 0,
             profiles: bool = True) -> RunConfig:
    """Write the fixture run under ``root/run`` and return its config. ``profiles``: each model's
    lexical_profile.parquet, from its exemplars by the exemplars stage's own writer (it always writes one)."""
    cfg = fixture_config(root)
    run = RunDir(cfg.run_path)
    rng = np.random.default_rng(seed)
    run.root.mkdir(parents=True, exist_ok=True)
    run.config.write_text(to_toml(cfg), encoding="utf-8")
    write_documents(run.root, [Document(d, t) for d, t in DOCS.items()], "fixture-corpus")
    n_tokens = sum(len(tokenize(t)) for t in DOCS.values())
    for slug, layer in (("alpha", 2), ("beta", 1)):
        _report_model(run.model(slug), slug, layer, n_tokens, rng)
        if profiles:
            write_lexical_profile(run, run.model(slug))
        if labels:
            _report_labels(run.model(slug), slug, rng, scores)
    if compare:
        _report_compare(run.pair("alpha", "beta"), rng, with_labels=labels)
    return cfg


def _report_model(folder: ModelDir, slug: str, layer: int, n_tokens: int, rng) -> None:
    d_model = 16 if slug == "alpha" else 8
    write_json(folder.manifest, {
        "complete": True, "d_model": d_model, "hook_name": f"layers.{layer}", "n_contexts": 10,
        "n_documents": len(DOCS), "n_shards": 1, "shards": [{"index": 0, "rows": n_tokens}],
        "identity": {"layer": layer, "site": "resid", "level": "token", "ctx_len": 32, "model": f"fixture/{slug}"},
        "model": {"n_layers": 4 if slug == "alpha" else 3, "spec": f"fixture/{slug}"},
    })
    write_json(folder.sae.metrics, METRICS[slug] | {"definitions": {"fvu": "fraction of variance unexplained (fixture)"}})
    save_sae(create_sae(SAEConfig(d_in=d_model, d_sae=D_SAE, architecture="topk", k=4), seed=0), folder.sae_dir)
    density = np.round(np.linspace(0.30, 0.01, D_SAE), 4)
    density[DEAD_FEATURE] = 0.0
    max_act = np.round(np.linspace(5.0, 1.0, D_SAE), 3).astype(np.float32)
    max_act[DEAD_FEATURE] = 0.0
    stats = pd.DataFrame({"feature": np.arange(D_SAE, dtype=np.int32), "n_active_tokens": (density * n_tokens).astype(np.int64),
                          "density": density, "max_act": max_act, "mean_act": (max_act / 2).astype(np.float32),
                          "n_contexts_active": np.minimum(10, (density * 40).astype(np.int64)), "dead": density == 0})
    rows = []
    doc_ids = list(DOCS)
    for feature in range(D_SAE):
        if feature == DEAD_FEATURE:
            continue
        for kind, n in (("top", 3), ("quantile", 2), ("random", 1)):
            for rank in range(n):
                # Feature 0's best window is the hostile document: its page must show the payload as text.
                doc = "fixture/hostile" if (feature == 0 and kind == "top" and rank == 0) else doc_ids[int(rng.integers(1, len(doc_ids)))]
                rows.append(_report_window(feature, kind, rank, doc, float(max_act[feature]) * (1 - 0.1 * rank), rng))
    write_exemplars(folder, pa.Table.from_pylist(rows, schema=EXEMPLAR_SCHEMA), stats, {"n_rows": n_tokens, "level": "token"})


def _report_window(feature: int, kind: str, rank: int, doc_id: str, peak: float, rng) -> dict:
    text = DOCS[doc_id]
    toks = tokenize(text)
    centre = next(i for i, t in enumerate(toks) if t[0] == "script") if doc_id == "fixture/hostile" else int(rng.integers(0, len(toks)))
    lo, hi = (0, len(toks)) if doc_id == "fixture/hostile" else (max(0, centre - 12), min(len(toks), centre + 4))
    window = toks[lo:hi]
    acts = [0.0 if kind == "random" else (peak if i == centre else round(peak * 0.3, 3) if abs(i - centre) == 1 else 0.0) for i in range(lo, hi)]
    return {"feature": feature, "split": "train" if kind != "random" else "test", "kind": kind, "rank_or_quantile": rank if kind != "quantile" else 9 - rank,
            "context_id": feature * 100 + rank, "doc_id": doc_id, "max_act": 0.0 if kind == "random" else peak, "max_index": centre - lo,
            "tokens": [t[0] for t in window], "token_ids": [sum(t[0].encode()) % 1000 for t in window], "acts": acts,
            "char_start": [t[1] for t in window], "char_end": [t[2] for t in window], "text": text[window[0][1]:window[-1][2]]}


def label_text(slug: str, feature: int) -> str:
    if slug == "alpha" and feature == 0:
        return HOSTILE_LABEL
    topics = ["country borders", "exports of goods", "island geography", "population counts", "government type", "energy sources", "years and dates"]
    return f"{topics[feature % len(topics)]} ({slug})"


def _report_labels(folder: ModelDir, slug: str, rng, scores: bool) -> None:
    n = N_LABELLED
    status = ["failed" if f == FAILED_FEATURE else "ok" for f in range(n)]
    frame = pd.DataFrame({
        "feature": np.arange(n, dtype=np.int32),
        "label": [None if s == "failed" else label_text(slug, f) for f, s in enumerate(status)],
        "raw": [f"Explanation: {label_text(slug, f)}" for f in range(n)],
        "status": status,
        "error": ["timeout after 3 retries" if s == "failed" else None for s in status],
        "explainer_model": EXPLAINER,
        "prompt_tokens": rng.integers(400, 900, n).astype(np.int64),
        "completion_tokens": rng.integers(10, 40, n).astype(np.int64),
        "cost_usd": np.zeros(n),
    })
    if scores:
        for s in SCORERS:
            score = np.round(rng.uniform(0.55, 0.95, n), 4)
            base = np.round(rng.uniform(0.40, 0.60, n), 4)
            score[FAILED_FEATURE] = base[FAILED_FEATURE] = np.nan
            frame[f"score_{s}"], frame[f"baseline_{s}"] = score, base
            frame[f"status_{s}"] = ["failed" if f == FAILED_FEATURE else "ok" for f in range(n)]
    write_labels_table(folder.root, frame)
    usage = {"prompt_tokens": int(frame["prompt_tokens"].sum()), "completion_tokens": int(frame["completion_tokens"].sum()), "cost_usd": 0.0, "calls": n}
    # As `autointerp explain` / `score` record it: identities, usage per stage, column definitions.
    scorers = {s: {"identity": {"settings": {"seed": 0}}, "definition": SCORER_CLASSES[s].definition} for s in SCORERS} if scores else {}
    write_meta(folder.root, {"explain_identity": {"settings": {"backend": "fixture", "model": EXPLAINER}, "inputs": {}},
                             "usage": {"explain": usage, "score": usage | {"calls": 2 * n}}, "explainer_model": EXPLAINER, "scorers": scorers,
                             "definitions": {f"score_{s}": c["definition"] for s, c in scorers.items()}})


def _report_compare(folder: PairDir, rng, with_labels: bool) -> None:
    folder.root.mkdir(parents=True, exist_ok=True)
    rows = []
    # 0..5: both matchings agree; 6..8: activation only; 9, 10: label only (different partners).
    for i in range(11):
        method = "both" if i < 6 else "activation" if i < 9 else "label"
        fb = i if i < 9 else (i + 1) % D_SAE
        corr = round(0.9 - 0.07 * i, 4) if method != "label" else round(0.02 * i, 4)
        sim = round(0.85 - 0.05 * i, 4) if with_labels and i < N_LABELLED else float("nan")
        rows.append({"feature_a": i, "feature_b": fb, "method": method, "activation_corr": corr, "label_similarity": sim,
                     "p_value": float("nan") if method == "label" else 10.0 ** (-(9 - i)), "shared": method != "label" and corr > 0.3,
                     "combined_score": 0.0, "combined_rank": 0,
                     "label_a": label_text("alpha", i) if with_labels and i < N_LABELLED and i != FAILED_FEATURE else None,
                     "label_b": label_text("beta", fb) if with_labels and fb < N_LABELLED and fb != FAILED_FEATURE else None,
                     "domain": ["geography", "economy", "people"][i % 3]})
    frame = pd.DataFrame(rows)
    frame["combined_score"] = (frame["activation_corr"].fillna(0) + frame["label_similarity"].fillna(0)).astype(np.float32)
    frame["combined_rank"] = frame["combined_score"].rank(ascending=False, method="first").astype(np.int32)
    act = frame["method"] != "label"
    frame["kind"] = [None if not a else ("contextual" if i < 3 else "lexical") if sh else "unshared"
                     for i, (a, sh) in enumerate(zip(act, frame["shared"]))]
    frame["contextual_corr"] = np.where(act, frame["activation_corr"] * np.where(frame.index < 3, 0.8, 0.05), np.nan)
    frame["lexical_null_corr"] = np.where(act, frame["activation_corr"] * np.where(frame.index < 3, 0.1, 0.95), np.nan)
    frame["word_share_a"] = frame["word_share_b"] = np.where(act, np.where(frame.index < 3, 0.1, 0.9), np.nan)
    frame["activation_confidence"] = np.where(frame["method"] == "label", np.nan, 1 - frame["p_value"])
    frame["label_confidence"] = np.where(frame["label_similarity"].notna(), 0.5, np.nan)
    frame = frame.astype({"feature_a": np.int32, "feature_b": np.int32, "activation_corr": np.float32, "label_similarity": np.float32,
                          "activation_confidence": np.float32, "label_confidence": np.float32, "contextual_corr": np.float32,
                          "lexical_null_corr": np.float32, "word_share_a": np.float32, "word_share_b": np.float32})
    write_parquet(frame, folder.matches, MATCHES_SCHEMA)
    write_parquet(pd.DataFrame({"corr": rng.normal(0, 0.08, 400).astype(np.float32)}), folder.null)
    act_rows = frame[frame["method"] != "label"]
    partner = {(m, int(f)): (float(c), bool(sh)) for m, side in (("alpha", "feature_a"), ("beta", "feature_b"))
               for f, c, sh in zip(act_rows[side], act_rows["activation_corr"], act_rows["shared"])}
    feats = pd.DataFrame([{"model": m, "feature": f, "dead": f == DEAD_FEATURE, "domain": ["geography", "economy", "people"][f % 3],
                           "n_docs_spanned": int(1 + f % 5), "label_specificity": 0.5,
                           "partner_corr": partner.get((m, f), (float("nan"), False))[0], "shared": partner.get((m, f), (0.0, False))[1]}
                          for m in ("alpha", "beta") for f in range(D_SAE)])
    write_parquet(feats.astype({"feature": np.int32, "n_docs_spanned": np.int32}), folder.features)
    act = frame[frame["method"] != "label"]["activation_corr"]
    write_json(folder.stats, {
        "model_a": "alpha", "model_b": "beta", "unit": "word", "n_units": 777, "n_features_a": D_SAE, "n_features_b": D_SAE,
        "n_dead_a": 1, "n_dead_b": 1, "null": {"threshold": 0.3, "alpha": 0.05, "n_samples": 400, "method": "document shuffle"},
        "n_shared": int(frame["shared"].sum()), "activation": {"n_pairs": len(act), "mean_corr": float(act.mean()), "median_corr": float(act.median())},
        "label": {"available": with_labels, "n_pairs": 8, "mean_similarity": 0.6},
        "agreement": {"n_both": 6, "fraction": 6 / 11},
        "domains": {"names": ["geography", "economy", "people"], "method": "fixture method: name + top window, argmax",
                    "counts_a": {"geography": 4, "economy": 4, "people": 3}, "counts_b": {"geography": 5, "economy": 3, "people": 3},
                    "counts_shared": {"geography": 3, "economy": 3, "people": 2}, "n_live_a": 11, "n_live_b": 11,
                    "n_unassigned_a": 0, "n_unassigned_b": 0, "n_shared_unassigned": 0},
        "abstraction": {"metric": "n_docs_spanned", "a": {"mean": 2.5, "median": 2.0}, "b": {"mean": 3.5, "median": 3.0},
                        "test": "Mann-Whitney U", "statistic": 41.0, "p_value": 0.0123,
                        "finding": "beta's features span more documents than alpha's (fixture finding 42)"},
        "levels": {"word": {"n_shared": 8, "mean_corr": 0.6}, "document": {"n_shared": 5, "mean_corr": 0.7}},
        "definitions": {"shared": "activation correlation above the fixture null threshold 0.3"},
        "calibration": CALIBRATION,
    })
