"""Run configuration: one TOML file drives every stage; CLI flags override it.

```toml
name = "demo"                 # run directory defaults to runs/<name>
[corpus]                      # autointerp.data.corpus.CorpusConfig fields, plus max_tokens
dataset = "factbook"
max_tokens = 200000
[harvest]                     # autointerp.training.harvest.HarvestConfig fields (defaults for every model)
ctx_len = 128
[[models]]                    # two or more; per-model layer/site override [harvest]
model = "gemma-3-270m"
layer = 6
[[models]]
model = "minilm-l6"
layer = 3
```
Unknown keys are errors that name the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from autointerp.compare.config import CompareConfig
from autointerp.data.corpus import CorpusConfig
from autointerp.errors import UserError
from autointerp.explain.config import ExplainConfig, ScoreConfig
from autointerp.explain.llm.config import LLMConfig
from autointerp.report.config import ReportConfig
from autointerp.training.settings import ExemplarConfig, HarvestConfig

DEFAULT_MAX_TOKENS = 120_000


@dataclass
class ModelEntry:
    model: str
    name: str | None = None  # directory name inside the run; derived from the spec when omitted
    layer: int | None = None
    site: str | None = None

    @property
    def slug(self) -> str:
        if self.name:
            return _slugify(self.name)
        base = Path(self.model.rstrip("/")).name if ("/" in self.model or self.model.endswith(".gguf")) else self.model
        return _slugify(base.removesuffix(".gguf"))


def _slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def default_models() -> list[ModelEntry]:
    """The embedded offline pair: Gemma 3 270M (causal, 18 blocks) vs all-MiniLM-L6-v2 (BERT, 6 blocks)."""
    return [ModelEntry("gemma-3-270m", layer=6), ModelEntry("minilm-l6", layer=3)]


@dataclass
class SAESection:
    """SAE shape; see autointerp.training.sae.SAEConfig."""

    architecture: str = "topk"  # topk | batchtopk | relu
    expansion_factor: int = 8  # d_sae = expansion_factor * d_model unless d_sae is set
    d_sae: int | None = None
    k: int = 32
    l1_coefficient: float | None = None  # None: 0.2 for relu, none for TopK (parity config: TopK + 1e-3)
    # Scale inputs to mean norm sqrt(d_in) for training (folded back at save). Off: Adam's weight updates are
    # scale-free, but shrinking e.g. Gemma's residual (norm ~3000) 130x makes the biases move 130x faster
    # relative to the codes, which killed latents (held-out dead 29% raw vs 35% scaled, FVU 0.035 vs 0.040).
    normalize_activations: bool = False


@dataclass
class TrainSection:
    """Optimisation; see autointerp.training.trainer.TrainConfig."""

    epochs: float = 2.0  # passes over the training shards (used when total_tokens is unset)
    total_tokens: int | None = None
    batch_size: int = 1024
    lr: float | None = None  # None: 2.2e-3 / sqrt(d_sae / 16384) (see TrainConfig.resolved_lr)
    warmup_steps: int | None = None
    b_dec_init: str = "geometric_median"
    auxk_alpha: float = 1 / 32
    dead_tokens_threshold: int | None = None
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"
    n_eval_shards: int = 1  # the last shard(s) of the harvest are held out for evaluation
    ce_contexts: int = 16  # held-out contexts for CE loss recovered (causal LMs; full forward passes); 0 = skip


@dataclass
class RunConfig:
    name: str = "default"
    run_dir: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    harvest: HarvestConfig = field(default_factory=HarvestConfig)
    models: list[ModelEntry] = field(default_factory=default_models)
    sae: SAESection = field(default_factory=SAESection)
    train: TrainSection = field(default_factory=TrainSection)
    exemplars: ExemplarConfig = field(default_factory=ExemplarConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def harvest_for(self, entry: ModelEntry) -> HarvestConfig:
        """The harvest config for one model: [harvest] defaults with the model's own layer/site."""
        overrides = {k: v for k, v in (("layer", entry.layer), ("site", entry.site)) if v is not None}
        return dataclasses.replace(self.harvest, **overrides)

    def to_dict(self) -> dict:
        corpus = dataclasses.asdict(self.corpus) | {"max_tokens": self.max_tokens}
        return {
            "name": self.name,
            "run_dir": str(self.run_path),
            "corpus": corpus,
            "harvest": dataclasses.asdict(self.harvest),
            "sae": dataclasses.asdict(self.sae),
            "train": dataclasses.asdict(self.train),
            "exemplars": dataclasses.asdict(self.exemplars),
            **{name: dataclasses.asdict(getattr(self, name)) for name in EXTRA_SECTIONS},
            "models": [{k: v for k, v in dataclasses.asdict(m).items() if v is not None} for m in self.models],
        }


# Sections added by later stages: name -> dataclass. Parsed and saved generically.
EXTRA_SECTIONS = {
    "llm": LLMConfig,
    "explain": ExplainConfig,
    "score": ScoreConfig,
    "compare": CompareConfig,
    "report": ReportConfig,
}


def _build(cls, data: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown key(s) in {where}: {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise UserError(f"invalid {where}: {exc}") from exc


def parse_config(data: dict, source: str = "config") -> RunConfig:
    known = {"name", "run_dir", "corpus", "harvest", "models", "sae", "train", "exemplars", *EXTRA_SECTIONS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown top-level key(s) in {source}: {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    corpus = dict(data.get("corpus", {}))
    max_tokens = corpus.pop("max_tokens", DEFAULT_MAX_TOKENS)
    models = data.get("models")
    if models is not None and (not isinstance(models, list) or not models):
        raise UserError(f"[[models]] in {source} must be a non-empty list of tables with at least `model = ...`")
    cfg = RunConfig(
        name=str(data.get("name", "default")),
        run_dir=data.get("run_dir"),
        max_tokens=int(max_tokens),
        corpus=_build(CorpusConfig, corpus, f"[corpus] of {source}"),
        harvest=_build(HarvestConfig, dict(data.get("harvest", {})), f"[harvest] of {source}"),
        sae=_build(SAESection, dict(data.get("sae", {})), f"[sae] of {source}"),
        train=_build(TrainSection, dict(data.get("train", {})), f"[train] of {source}"),
        exemplars=_build(ExemplarConfig, dict(data.get("exemplars", {})), f"[exemplars] of {source}"),
        **{name: _build(cls, dict(data.get(name, {})), f"[{name}] of {source}") for name, cls in EXTRA_SECTIONS.items()},
        models=[_build(ModelEntry, dict(m), f"[[models]] of {source}") for m in models] if models else default_models(),
    )
    slugs = [m.slug for m in cfg.models]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"two [[models]] entries share the directory name {slugs}; give them distinct `name = ...`")
    return cfg


def load_config(path: Path | str | None) -> RunConfig:
    """Read a TOML run config: a file, a packaged config's name (``parity``), or None for the default."""
    if path is None:
        return RunConfig()
    path = Path(path)
    builtin = Path(__file__).parent / "configs" / f"{path}.toml"
    if not path.exists() and path.suffix == "" and builtin.is_file():
        path = builtin  # a packaged config by name, e.g. `--config parity`
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from exc
    return parse_config(data, str(path))


def to_toml(cfg: RunConfig) -> str:
    """Serialise a resolved config (saved as runs/<name>/config.toml for provenance)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{value(str(k))} = {value(x)}" for k, x in v.items()) + " }"

        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(d: dict) -> list[str]:
        return [f"{k} = {value(v)}" for k, v in d.items() if v is not None]

    data = cfg.to_dict()
    lines = table({"name": data["name"], "run_dir": data["run_dir"]})
    for section in ("corpus", "harvest", "sae", "train", "exemplars", *EXTRA_SECTIONS):
        lines += ["", f"[{section}]", *table(data[section])]
    for model in data["models"]:
        lines += ["", "[[models]]", *table(model)]
    return "\n".join(lines) + "\n"
