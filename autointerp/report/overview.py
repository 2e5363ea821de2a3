"""Report sections about the setup: what was compared, and the SAE metrics side by side.

Every number comes from the run's artifacts (config.toml, corpus.json, harvest.json, sae/cfg.json,
sae/metrics.json, feature_stats.parquet); an absent one prints as 'n/a', never as a default.
"""

from __future__ import annotations

from autointerp.report.artifacts import ModelInputs, RunInputs
from autointerp.report.fmt import count, md_table, md_text, num, pct
from autointerp.sae.config import ARCHITECTURE_USES_K

# (label, metrics.json key, formatter); the definitions come from metrics.json itself.
METRIC_ROWS = [
    ("FVU (fraction of variance unexplained)", "fvu", lambda v: num(v, 4)),
    ("explained variance (R²)", "explained_variance", lambda v: num(v, 4)),
    ("L0 (active latents per token)", "l0", lambda v: num(v, 1)),
    ("dead fraction (training window)", "dead_fraction", pct),
    ("CE loss recovered", "ce_loss_recovered", pct),
    ("ΔLM loss (nats/token)", "delta_lm_loss", lambda v: num(v, 3)),
    ("CE clean / spliced / zero-ablated", None, None),
    ("Gini of feature usage", "gini", lambda v: num(v, 3)),
    (r"decoder \|cos\| mean / p95 / max", None, None),
    ("held-out tokens", "n_eval_tokens", count),
    ("training tokens", "train_tokens", count),
]
DEFINED = ("fvu", "dead_fraction", "ce_loss_recovered", "delta_lm_loss", "gini")


def setup_section(run: RunInputs) -> str:
    """## What was compared: models, layers, sites, corpus, documents and tokens."""
    lines = ["## What was compared", ""]
    corpus = run.corpus or {}
    ccfg = corpus.get("config") or {}
    dataset = ccfg.get("dataset", run.cfg.corpus.dataset)
    if ccfg.get("config_name"):
        dataset = f"{dataset} ({ccfg['config_name']})"
    lines.append(
        f"**Corpus**: {md_text(dataset)}, {count(corpus.get('n_docs'))} documents, {count(corpus.get('n_chars'))} characters "
        f"(token budget {count(run.cfg.max_tokens)}, whole documents; every model reads exactly these documents)."
    )
    lines.append("")
    header = ["", *[f"`{m.slug}`" for m in run.models]]
    rows = [
        ["model", *[md_text(m.spec) for m in run.models]],
        ["layer / site", *[f"{_manifest_identity(m, 'layer', m.layer)} / {_manifest_identity(m, 'site', m.site)}" for m in run.models]],
        ["hook", *[md_text((m.manifest or {}).get("hook_name")) for m in run.models]],
        ["blocks in model", *[count((m.manifest or {}).get("model", {}).get("n_layers")) for m in run.models]],
        ["d_model", *[count((m.manifest or {}).get("d_model")) for m in run.models]],
        ["level", *[m.level for m in run.models]],
        ["context length (tokens)", *[count(_manifest_identity(m, "ctx_len", None)) for m in run.models]],
        ["documents harvested", *[count((m.manifest or {}).get("n_documents")) for m in run.models]],
        ["contexts", *[count((m.manifest or {}).get("n_contexts")) for m in run.models]],
        ["activation rows (tokens)", *[count(m.n_tokens) for m in run.models]],
        ["SAE", *[_sae_shape(m) for m in run.models]],
        ["SAE source", *[_sae_source(m) for m in run.models]],
    ]
    lines.append(md_table(header, rows, ["l"] + ["r"] * len(run.models)))
    lines.append("")
    lines.append("Token counts differ between models because each model's own tokenizer splits the same text.")
    return "\n".join(lines)


def _manifest_identity(m: ModelInputs, key: str, fallback):
    value = ((m.manifest or {}).get("identity") or {}).get(key)
    return fallback if value is None else value


def _sae_shape(m: ModelInputs) -> str:
    """Architecture (our name when cfg.json records it, else SAELens'), width, and k where k sets the sparsity."""
    cfg = m.sae_cfg or {}
    d_sae = cfg.get("d_sae") or (m.metrics or {}).get("d_sae")
    arch = cfg.get("autointerp_architecture") or cfg.get("architecture")
    if d_sae is None and arch is None:
        return "n/a"
    k = f", k={cfg['k']}" if cfg.get("k") and ARCHITECTURE_USES_K.get(arch, False) else ""
    return f"{arch or '?'} {count(d_sae)} latents{k}"


def _sae_source(m: ModelInputs) -> str:
    """Pretrained SAEs are named by their reference and format (metrics.json ``sae_source``); others were trained here."""
    metrics = m.metrics or {}
    if metrics.get("sae_source"):
        return f"pretrained ({md_text(metrics.get('sae_format'))}): {md_text(metrics['sae_source'])}"
    return "trained by autointerp" if metrics else "n/a"


def metrics_section(run: RunInputs) -> str:
    """## SAE quality: held-out metrics per model, plus feature statistics from the exemplar pass."""
    lines = ["## SAE quality (held-out)", ""]
    if not any(m.metrics for m in run.models):
        return "\n".join(lines + [_hints(m.missing for m in run.models), ""])
    header = ["metric", *[f"`{m.slug}`" for m in run.models]]
    rows = []
    for label, key, fmt in METRIC_ROWS:
        if key is not None:
            rows.append([label, *[fmt((m.metrics or {}).get(key)) for m in run.models]])
        elif label.startswith("CE"):
            rows.append([label, *[" / ".join(num((m.metrics or {}).get(k), 3) for k in ("ce_clean", "ce_spliced", "ce_zero_ablate")) for m in run.models]])
        else:
            rows.append([label, *[" / ".join(num((m.metrics or {}).get(k), 3) for k in ("decoder_cos_mean", "decoder_cos_p95", "decoder_cos_max")) for m in run.models]])
    rows.append(["dead on the whole harvest", *[_dead_on_harvest(m) for m in run.models]])
    rows.append(["median density of live features", *[_median_density(m) for m in run.models]])
    lines.append(md_table(header, rows))
    lines.append("")
    definitions = next((m.metrics.get("definitions") for m in run.models if m.metrics and m.metrics.get("definitions")), {})
    for key in DEFINED:
        if key in definitions:
            lines.append(f"- *{key}*: {md_text(definitions[key])}")
    lines.append("- *dead on the whole harvest*: features that never fired on any harvested token (feature_stats.parquet); "
                 "*density*: fraction of tokens a feature fires on.")
    for m in run.models:
        if m.metrics and m.metrics.get("ce_loss_recovered") is None:
            lines.append(f"- CE loss recovered is n/a for `{m.slug}`: it needs a causal LM head (or `ce_contexts` was 0).")
    return "\n".join(lines)


def _dead_on_harvest(m: ModelInputs) -> str:
    if m.stats is None:
        return "n/a"
    n_dead = int(m.stats["dead"].sum())
    return f"{n_dead:,} / {len(m.stats):,} ({pct(n_dead / max(len(m.stats), 1))})"


def _median_density(m: ModelInputs) -> str:
    if m.stats is None:
        return "n/a"
    live = m.stats.loc[~m.stats["dead"], "density"]
    return "n/a" if live.empty else f"{float(live.median()):.2e}"


def _hints(groups) -> str:
    hints = [f"- {x.md_hint()}" for group in groups for x in group if "metrics" in x.what or "harvest" in x.what]
    return "\n".join(hints) if hints else "- SAE metrics not found; run `autointerp train`."
