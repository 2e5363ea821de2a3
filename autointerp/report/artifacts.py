"""Read everything the report needs from a run directory; what is missing stays ``None``.

The report never fails because a later stage has not run: each missing input is recorded with the
command that produces it (``Missing``), and the markdown prints that hint in place of the section.
Inputs that exist but break the agreed artifact contract (a column renamed, say) are a ``UserError``
naming the file and the column, because silently reporting nothing would hide a real bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from autointerp.eval.config import SCORER_REGISTRY
from autointerp.config import RunConfig
from autointerp.controls.calibration import pair_calibration
from autointerp.errors import UserError
from autointerp.explain.names import UNNAMED, FeatureName, feature_names, name_of
from autointerp.rundir.layout import ModelDir, PairDir, RunDir
from autointerp.io import read_json, read_parquet

LABEL_COLUMNS = ("feature", "label", "status")
MATCH_COLUMNS = ("feature_a", "feature_b", "method", "activation_corr", "label_similarity", "p_value", "shared",
                 "combined_score", "combined_rank", "label_a", "label_b", "domain")
STATS_COLUMNS = ("feature", "density", "max_act", "dead")


@dataclass(frozen=True)
class Missing:
    """An input that does not exist yet, and the command that writes it."""

    what: str
    path: Path
    command: str

    def hint(self) -> str:
        return f"{self.what} not found ({self.path}); run `{self.command}` to produce it."

    def md_hint(self) -> str:
        """The hint for markdown: path and command as code spans (backticks are not valid in either)."""
        return f"{self.what} not found (`{self.path}`); run `{self.command}` to produce it."


@dataclass
class ModelInputs:
    slug: str
    spec: str
    layer: int | None
    site: str | None
    dir: Path
    manifest: dict | None = None  # harvest.json
    metrics: dict | None = None  # sae/metrics.json
    sae_cfg: dict | None = None  # sae/cfg.json
    stats: pd.DataFrame | None = None  # feature_stats.parquet
    exemplars_meta: dict | None = None  # exemplars.json
    labels: pd.DataFrame | None = None  # labels.parquet
    labels_meta: dict | None = None  # labels.json
    missing: list[Missing] = field(default_factory=list)

    @property
    def files(self) -> ModelDir:
        return ModelDir(self.dir)

    @property
    def exemplars_path(self) -> Path:
        return self.files.exemplars

    @cached_property
    def names(self) -> dict[int, FeatureName]:
        """{feature: FeatureName}: final label, else lexical-profile name (``autointerp.explain.names``); read once."""
        return feature_names(self.labels, self.files.lexical_profile)

    def name(self, feature: int, limit: int | None = None) -> str:
        """The displayed name of ``feature``: label, else lexical name with its marker (``explain.names``)."""
        return name_of(self.names, feature, limit)

    @property
    def scorers(self) -> list[str]:
        """Scorers that ran (a column score_<S> exists), in the scorer registry's order."""
        if self.labels is None:
            return []
        return [s for s in SCORER_REGISTRY if f"score_{s}" in self.labels.columns]

    @property
    def n_tokens(self) -> int | None:
        """Harvested activation rows (tokens; documents at sequence level)."""
        if self.exemplars_meta and "n_rows" in self.exemplars_meta:
            return int(self.exemplars_meta["n_rows"])
        if self.manifest and self.manifest.get("shards"):
            return int(sum(s.get("rows", 0) for s in self.manifest["shards"]))
        return None

    @property
    def level(self) -> str:
        if self.manifest:
            return str(self.manifest.get("identity", {}).get("level", "token"))
        return "token"


@dataclass
class PairInputs:
    """One compare/<A>__<B>/ directory."""

    a: str
    b: str
    dir: Path
    matches: pd.DataFrame | None = None
    null: pd.DataFrame | None = None
    features: pd.DataFrame | None = None
    stats: dict | None = None
    calibration: dict = field(default_factory=dict)  # compare's with the controls that concern the pair (pair_calibration)
    missing: list[Missing] = field(default_factory=list)
    run_dir: Path | None = None  # the run directory (for the pair's controls: ``RunDir.controls``)
    models: dict[str, ModelInputs] = field(default_factory=dict)  # the pair's two models (``load_run_inputs``)

    @property
    def key(self) -> str:
        return f"{self.a}__{self.b}"

    def name(self, model: str, feature: int, limit: int | None = None) -> str:
        """The displayed name of ``feature`` of ``model`` (``ModelInputs.name``)."""
        m = self.models.get(model)
        return m.name(feature, limit) if m is not None else UNNAMED


@dataclass
class RunInputs:
    run_dir: Path
    cfg: RunConfig
    corpus: dict | None
    models: list[ModelInputs]
    pairs: list[PairInputs]
    missing: list[Missing] = field(default_factory=list)
    sweep: dict | None = None  # sweep.json (``autointerp sweep``), when it ran

    def model(self, slug: str) -> ModelInputs | None:
        return next((m for m in self.models if m.slug == slug), None)

    def input_files(self) -> list[Path]:
        """Every file the report reads (for the identity hash that makes re-runs a no-op)."""
        run = RunDir(self.run_dir)
        files = [run.config, run.corpus_meta]
        for m in self.models:
            f = m.files
            files += [f.manifest, f.sae.metrics, f.sae.cfg, f.feature_stats, f.exemplars_meta, f.exemplars, f.labels, f.labels_meta]
            files += [f.lexical_profile]  # feature names of unlabelled features
        for p in self.pairs:
            files += list(PairDir(p.dir).outputs())
        return files + [run.sweep.record, run.controls.record]


def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return read_json(path)


def _parquet(path: Path, required: tuple[str, ...]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    frame = read_parquet(path)
    absent = [c for c in required if c not in frame.columns]
    if absent:
        raise UserError(f"{path} lacks column(s) {', '.join(absent)} required by the artifact contract; "
                        f"re-run the stage that writes it (with --overwrite) on this version of autointerp")
    return frame


def load_model_inputs(cfg: RunConfig, run_dir: Path, entry) -> ModelInputs:
    f = RunDir(run_dir).model(entry.slug)
    hcfg = cfg.harvest_for(entry)
    m = ModelInputs(slug=entry.slug, spec=entry.model, layer=hcfg.layer, site=hcfg.site, dir=f.root)
    m.manifest = _json(f.manifest)
    m.metrics = _json(f.sae.metrics)
    m.sae_cfg = _json(f.sae.cfg)
    m.stats = _parquet(f.feature_stats, STATS_COLUMNS)
    m.exemplars_meta = _json(f.exemplars_meta)
    m.labels = _parquet(f.labels, LABEL_COLUMNS)
    m.labels_meta = _json(f.labels_meta)
    if m.manifest is None:
        m.missing.append(Missing(f"harvest of {entry.slug}", f.harvest, "autointerp harvest"))
    if m.metrics is None:
        m.missing.append(Missing(f"SAE metrics of {entry.slug}", f.sae.metrics, "autointerp train"))
    if m.stats is None or not f.exemplars.is_file():
        m.missing.append(Missing(f"exemplars of {entry.slug}", f.exemplars, "autointerp exemplars"))
    if m.labels is None:
        m.missing.append(Missing(f"labels of {entry.slug}", f.labels, "autointerp explain"))
    elif not m.scorers:
        m.missing.append(Missing(f"label scores of {entry.slug}", f.labels, "autointerp score"))
    return m


def load_pair_inputs(run_dir: Path, a: str, b: str) -> PairInputs:
    pair = RunDir(run_dir).pair(a, b)
    p = PairInputs(a=a, b=b, dir=pair.root, run_dir=run_dir)
    p.matches = _parquet(pair.matches, MATCH_COLUMNS)
    p.null = _parquet(pair.null, ("corr",))
    p.features = _parquet(pair.features, ("model", "feature"))
    p.stats = _json(pair.stats)
    p.calibration = pair_calibration(run_dir, pair, p.stats) if p.stats is not None else {}
    if p.matches is None or p.stats is None:
        p.missing.append(Missing(f"comparison {a} vs {b}", pair.root, "autointerp compare"))
    return p


def require_run_dir(run_dir: Path) -> Path:
    """The run directory, or a one-line error when there is none to report on."""
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; run `autointerp run` (or harvest/train/exemplars) first, or pass --run-dir")
    return run_dir


def load_run_inputs(cfg: RunConfig) -> RunInputs:
    """Everything under ``cfg.run_path`` that the report can use."""
    run_dir = require_run_dir(cfg.run_path)
    models = [load_model_inputs(cfg, run_dir, entry) for entry in cfg.models]
    slugs = [m.slug for m in models]
    pairs = [load_pair_inputs(run_dir, a, b) for i, a in enumerate(slugs) for b in slugs[i + 1:]]
    for p in pairs:
        p.models = {m.slug: m for m in models if m.slug in (p.a, p.b)}
    corpus = _json(RunDir(run_dir).corpus_meta)
    missing = [] if corpus else [Missing("corpus", RunDir(run_dir).corpus, "autointerp harvest")]
    return RunInputs(run_dir=run_dir, cfg=cfg, corpus=corpus, models=models, pairs=pairs, missing=missing,
                     sweep=_json(RunDir(run_dir).sweep.record))
