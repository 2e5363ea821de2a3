"""Run configuration: one TOML file drives every stage; CLI flags override it.

```toml
name = "demo"                 # run directory defaults to runs/<name>
[corpus]                      # autointerp.data.corpus.CorpusConfig fields, plus max_tokens
dataset = "factbook"
max_tokens = 200000
[harvest]                     # autointerp.harvest.config.HarvestConfig fields (defaults for every model)
ctx_len = 128
[[models]]                    # two or more; per-model layer/site override [harvest]
model = "gemma-3-270m"
layer = 6
[[models]]
model = "minilm-l6"
layer = 3
```
Each section is read straight into its stage's config dataclass (``[sae]`` -> ``SAEConfig``, ``[train]`` ->
``TrainConfig``, ...): one set of defaults, no copy layer. Where the TOML is read, every value is checked
against its field's annotation and then each section's ``validate()`` runs, so a wrong type or an
out-of-range value is a one-line error naming the key before any work starts. Unknown keys are errors
that name the key, so a typo never silently falls back to a default. Fields marked
``metadata={"toml": False}`` (set by the code from the data) are not keys.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from autointerp.compare.config import CompareConfig
from autointerp.crosscode.config import CrosscodeConfig
from autointerp.controls.config import ControlsConfig
from autointerp.data.corpus import CorpusConfig, validate_corpus
from autointerp.errors import DamagedArtifact, UserError
from autointerp.eval.config import ScoreConfig
from autointerp.explain.config import ExplainConfig
from autointerp.llm.config import LLMConfig
from autointerp.report.config import ReportConfig
from autointerp.exemplars.config import ExemplarConfig
from autointerp.harvest.config import HarvestConfig
from autointerp.io import read_toml
from autointerp.models.resolve import random_weights_spec
from autointerp.sae.config import SAEConfig, TrainConfig
from autointerp.sweep.config import SweepConfig

DEFAULT_MAX_TOKENS = 120_000


@dataclass
class ModelEntry:
    model: str
    name: str | None = None  # directory name inside the run; derived from the spec when omitted
    layer: int | None = None
    site: str | None = None
    weights: str = "pretrained"  # "pretrained", or "random": the same architecture and tokenizer freshly initialised (a control)
    init_seed: int = 0  # seed of the random initialisation (weights = "random")
    # A pretrained SAE to use instead of training one: a local directory/file (SAELens, sparsify, Gemma Scope,
    # Llama Scope), "hf://<owner>/<repo>/<path in repo>" or { repo = "<owner>/<repo>", path = "...", revision = "..." }
    sae: str | dict[str, str] | None = None

    @property
    def random(self) -> bool:
        return self.weights == "random"

    @property
    def identity(self) -> str:
        """The model as harvest manifests record it: the spec, or the spec with its random initialisation."""
        return random_weights_spec(self.model, self.init_seed) if self.random else self.model

    @property
    def slug(self) -> str:
        if self.name:
            return _slugify(self.name)
        base = Path(self.model.rstrip("/")).name if ("/" in self.model or self.model.endswith(".gguf")) else self.model
        return _slugify(base.removesuffix(".gguf"))

    def validate(self) -> None:
        if not self.model.strip():
            raise UserError("[[models]] model = \"\" is empty; give a model name, hub id or path")
        if self.weights not in ("pretrained", "random"):
            raise UserError(f"[[models]] weights = {self.weights!r} for {self.model}: use \"pretrained\" or \"random\" (freshly initialised from the model's config)")
        if isinstance(self.sae, str) and not self.sae.strip():
            raise UserError(f"[[models]] sae = \"\" for {self.model} is empty; give a local SAE path or hf://<owner>/<repo>/<path>, or remove the key to train one")
        if isinstance(self.sae, dict) and not isinstance(self.sae.get("repo"), str):
            raise UserError(f"[[models]] sae = {{ ... }} for {self.model} needs repo = \"<owner>/<name>\" (and path = \"<path in repo>\")")


def _slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def default_models() -> list[ModelEntry]:
    """The embedded offline pair: Gemma 3 270M (causal, 18 blocks) vs all-MiniLM-L6-v2 (BERT, 6 blocks)."""
    return [ModelEntry("gemma-3-270m", layer=6), ModelEntry("minilm-l6", layer=3)]


@dataclass
class RunConfig:
    name: str = "default"  # run name: the run directory is runs/<name> unless run_dir is set
    run_dir: str | None = None  # run directory (default runs/<name>)
    max_tokens: int = DEFAULT_MAX_TOKENS  # token budget (whole documents), counted with the first model's tokenizer
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    harvest: HarvestConfig = field(default_factory=HarvestConfig)
    models: list[ModelEntry] = field(default_factory=default_models)
    sae: SAEConfig = field(default_factory=SAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    exemplars: ExemplarConfig = field(default_factory=ExemplarConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    crosscode: CrosscodeConfig = field(default_factory=CrosscodeConfig)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def harvest_for(self, entry: ModelEntry) -> HarvestConfig:
        """The harvest config for one model: [harvest] defaults with the model's own layer/site."""
        overrides = {k: v for k, v in (("layer", entry.layer), ("site", entry.site)) if v is not None}
        return dataclasses.replace(self.harvest, **overrides)

    def validate(self) -> None:
        """Range checks of every section, after the TOML is read and after CLI flags are set (types are
        checked where the TOML is read); raises a one-line UserError naming the key."""
        if self.max_tokens < 1:
            raise UserError(f"[corpus] max_tokens = {self.max_tokens}: the token budget must be a positive number of tokens")
        validate_corpus(self.corpus)
        for name in SECTIONS:
            section = getattr(self, name)
            if hasattr(section, "validate"):
                section.validate()
        for entry in self.models:
            entry.validate()
            self.harvest_for(entry).validate()  # a model's own site
        slugs = [m.slug for m in self.models]
        if len(set(slugs)) != len(slugs):
            raise UserError(f"two [[models]] entries share the directory name {slugs}; give them distinct `name = ...`")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "run_dir": str(self.run_path),
            **{name: section_settings(getattr(self, name)) for name in SECTIONS},
            "corpus": section_settings(self.corpus) | {"max_tokens": self.max_tokens},
            "models": [{k: v for k, v in section_settings(m).items() if v is not None} for m in self.models],
        }


# Every TOML table: name -> the stage's config dataclass, in the order config.toml lists them.
SECTIONS = {
    "corpus": CorpusConfig,
    "harvest": HarvestConfig,
    "sae": SAEConfig,
    "train": TrainConfig,
    "exemplars": ExemplarConfig,
    "llm": LLMConfig,
    "explain": ExplainConfig,
    "score": ScoreConfig,
    "compare": CompareConfig,
    "controls": ControlsConfig,
    "report": ReportConfig,
    "sweep": SweepConfig,
    "crosscode": CrosscodeConfig,
}


def toml_fields(cls) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are TOML keys (not those marked ``metadata={"toml": False}``)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("toml", True)]


def section_settings(section) -> dict:
    """A section's TOML keys and their values (what config.toml and the stage records hold)."""
    return {f.name: copy.deepcopy(getattr(section, f.name)) for f in toml_fields(type(section))}


_WORDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          str: ("a string", "strings")}
_BAD = object()


def _expected(tp, plural: bool = False) -> str:
    """What an annotation accepts, in words: ``int | None`` -> "an integer" (TOML has no null)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a, plural) for a in args if a is not type(None))
    if origin in (list, tuple):
        fixed = f"{len(args)} " if origin is tuple and args and args[-1] is not Ellipsis else ""
        inner = _expected(args[0], plural=True) if args else "values"
        return f"lists of {fixed}{inner}" if plural else f"a list of {fixed}{inner}"
    if tp is dict or origin is dict:
        inner = f" of {_expected(args[1], plural=True)}" if args and args[1] is not typing.Any else ""
        return f"tables{inner}" if plural else f"a table{inner}"
    words = _WORDS.get(tp)
    return words[plural] if words else getattr(tp, "__name__", str(tp))


def _coerce(value, tp):
    """``value`` checked against the annotation ``tp`` (an integer is accepted for a float and becomes
    one; a TOML array for a tuple), or ``_BAD``. Unknown annotations are not checked."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None if type(None) in args else _BAD
        for arg in args:
            out = _BAD if arg is type(None) else _coerce(value, arg)
            if out is not _BAD:
                return out
        return _BAD
    if tp is bool or tp is str:
        return value if isinstance(value, tp) else _BAD
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if tp is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _BAD
    if tp is list or origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _BAD
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return _BAD
            kinds = list(args)
        else:
            kinds = [args[0] if args else typing.Any] * len(value)
        items = [_coerce(v, kind) for v, kind in zip(value, kinds)]
        if any(item is _BAD for item in items):
            return _BAD
        return tuple(items) if origin is tuple else items
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            return _BAD
        if args and any(_coerce(k, args[0]) is _BAD or _coerce(v, args[1]) is _BAD for k, v in value.items()):
            return _BAD
        return value
    return value


def _described(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {toml_value(value)}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return f"the list {toml_value(value)}"
    if isinstance(value, dict):
        return "a table"
    return f"the {type(value).__name__} {value}"


def _typed(value, tp, key: str, source: str):
    out = _coerce(value, tp)
    args = typing.get_args(tp)
    if out is _BAD and isinstance(value, dict) and typing.get_origin(tp) is dict and args:
        for name, item in value.items():  # name the entry that is wrong
            _typed(item, args[1], f"{key}.{name}", source)
    if out is _BAD:
        shown = "{ ... }" if isinstance(value, dict) else toml_value(value)
        raise UserError(f"{key} = {shown} in {source}: expected {_expected(tp)}, got {_described(value)}")
    return out


def _build(cls, data, section: str, source: str):
    """``cls`` from a TOML table: unknown keys and values of the wrong type are one-line errors naming the key."""
    if not isinstance(data, dict):
        raise UserError(f"{section} in {source} must be a table of `key = value` lines, got {_described(data)}")
    fields = [f.name for f in toml_fields(cls)]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"unknown key(s) in {section} of {source}: {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {key: _typed(value, hints[key], f"{section} {key}", source) for key, value in data.items()}
    try:
        return cls(**values)  # SAEConfig and TrainConfig validate themselves here
    except UserError as exc:
        raise UserError(f"{exc.message} (in {source})") from None


def parse_config(data: dict, source: str = "config") -> RunConfig:
    known = {"name", "run_dir", "models", *SECTIONS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown top-level key(s) in {source}: {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    tables = {name: data.get(name, {}) for name in SECTIONS}
    corpus = dict(tables["corpus"]) if isinstance(tables["corpus"], dict) else tables["corpus"]
    max_tokens = corpus.pop("max_tokens", DEFAULT_MAX_TOKENS) if isinstance(corpus, dict) else DEFAULT_MAX_TOKENS
    models = data.get("models")
    if models is not None and (not isinstance(models, list) or not models):
        raise UserError(f"[[models]] in {source} must be a non-empty list of tables with at least `model = ...`")
    top = {key: _typed(data[key], str, key, source) for key in ("name", "run_dir") if key in data}
    cfg = RunConfig(
        **top,
        max_tokens=_typed(max_tokens, int, "[corpus] max_tokens", source),
        **{name: _build(cls, corpus if name == "corpus" else tables[name], f"[{name}]", source) for name, cls in SECTIONS.items()},
        models=[_build(ModelEntry, m, "[[models]]", source) for m in models] if models else default_models(),
    )
    try:
        cfg.validate()
    except UserError as exc:
        raise UserError(f"{exc.message} (in {source})") from None
    return cfg


# A run's saved config.toml is rewritten by every stage from its flags / --config: a damaged one can go.
SAVED_CONFIG_FIX = "fix it, or delete it and pass --config (or the flags) again"


def load_config(path: Path | str | None, *, saved: bool = False) -> RunConfig:
    """Read a TOML run config: a file, a packaged config's name (``parity``), or None for the default.
    ``saved``: the run directory's own config.toml (a damaged one is a ``DamagedArtifact``, not a typo to fix)."""
    if path is None:
        return RunConfig()
    path = Path(path)
    builtin = Path(__file__).parent / "configs" / f"{path}.toml"
    if not path.exists() and path.suffix == "" and builtin.is_file():
        path = builtin  # a packaged config by name, e.g. `--config parity`
    try:
        data = read_toml(path, fix=SAVED_CONFIG_FIX)
    except FileNotFoundError as exc:
        raise UserError(f"config file not found: {path}") from exc
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc}") from exc
    except DamagedArtifact as exc:
        if saved:
            raise
        raise UserError(f"config file {path} is not valid TOML: {exc.__cause__}") from exc
    if saved and not data.get("models"):  # every saved config lists its models: an empty or cut one lost them
        raise DamagedArtifact(path, "no [[models]]: empty or cut short", SAVED_CONFIG_FIX)
    return parse_config(data, str(path))


def toml_value(v) -> str:
    """A value as TOML writes it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict) and not v:
        return "{}"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(cfg: RunConfig) -> str:
    """Serialise a resolved config (saved as runs/<name>/config.toml for provenance)."""

    def table(d: dict) -> list[str]:
        return [f"{k} = {toml_value(v)}" for k, v in d.items() if v is not None]

    data = cfg.to_dict()
    lines = table({"name": data["name"], "run_dir": data["run_dir"]})
    for section in SECTIONS:
        lines += ["", f"[{section}]", *table(data[section])]
    for model in data["models"]:
        lines += ["", "[[models]]", *table(model)]
    return "\n".join(lines) + "\n"
