"""A labelled run for the label export / import tests: make_run's exemplars plus the records an export reads
(harvest.json's hook, the model's config.json, the SAE's cfg.json) and a labels table with awkward texts."""

from __future__ import annotations

from pathlib import Path

from autointerp.explain.labels import empty_table, merge_rows, write_labels, write_meta
from autointerp.io import write_json
from autointerp.rundir.layout import ModelDir
from explain_helpers import make_run

# feature -> final label: quotes, non-ASCII, a newline, JSON-looking text (all must survive every format)
LABELS = {0: "volcanoes, lava and eruptions", 1: 'drinks: "coffee" & tea — café ☕', 2: "the army\nand the navy",
          5: "[1, 2] {\"not\": \"json\"}", 17: "numbers written as words", 40: "a lexical label: \"sea\""}
LEXICAL = {40}  # final labels that came from the lexical labeller
FAILED = (7,)  # features whose labelling failed (never exported)
MODELS = {  # slug -> (hook recorded here, HF architecture, layer, delphi's module)
    "gemma-3-270m": ("model.layers.6", "Gemma3ForCausalLM", 6, "layers.6"),
    "minilm-l6": ("encoder.layer.3", "BertModel", 3, "encoder.layer.3"),
}


def add_hook(run: Path, slug: str, *, hook: str, architecture: str | None, layer: int, d_sae: int = 16384,
             site: str = "resid", sae_format: str | None = None) -> None:
    """Record a hook as the harvest and the train stage do (architecture None: no config.json on disk)."""
    model = ModelDir(run / slug)
    config_dir = run.parent / f"{slug}-hf"
    if architecture is not None:
        write_json(config_dir / "config.json", {"architectures": [architecture]})
    write_json(model.manifest, {"hook_name": hook, "identity": {"layer": layer, "site": site, "level": "token"},
                                "model": {"path": str(config_dir), "blocks": hook.rsplit(".", 1)[0], "spec": slug}})
    meta = {"hook_name": hook, "hook_layer": layer} | ({"sae_format": sae_format} if sae_format else {})
    write_json(model.sae.cfg, {"d_sae": d_sae, "metadata": meta})


def add_labels(run: Path, slug: str, labels: dict[int, str] = LABELS) -> None:
    rows = [{"feature": f, "label": text, "raw": text, "status": "ok", "error": None, "explainer_model": "gemma-3-1b-it",
             "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.0, "label_source": "lexical" if f in LEXICAL else "llm",
             "llm_label": text, "lexical_label": text} for f, text in labels.items()]
    rows += [{"feature": f, "label": None, "raw": "", "status": "failed", "error": "timeout", "explainer_model": "gemma-3-1b-it",
              "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "label_source": None, "llm_label": None,
              "lexical_label": None} for f in FAILED]
    write_labels(run / slug, merge_rows(empty_table(), rows))
    write_meta(run / slug, {"explainer_model": "gemma-3-1b-it"})


def labelled_run(root: Path, slugs: tuple[str, ...] = tuple(MODELS)) -> Path:
    run = make_run(root / "run", slugs)
    for slug in slugs:
        hook, architecture, layer, _ = MODELS[slug]
        add_hook(run, slug, hook=hook, architecture=architecture, layer=layer)
        add_labels(run, slug)
    return run
