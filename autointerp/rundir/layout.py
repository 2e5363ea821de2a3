"""Every path and file name of a run directory, in one place.

::

    runs/<name>/config.toml                  resolved config (provenance)
    runs/<name>/autointerp.json              version that wrote the directory
    runs/<name>/.lock                        held by the process working in the directory
    runs/<name>/llm_cache.sqlite             every LLM request/response, keyed by a hash of the request
    runs/<name>/cost.json                    what each stage of the last `autointerp run` cost (autointerp.rundir.stage_cost)
    runs/<name>/corpus/                      documents.parquet, corpus.json, selection.json
    runs/<name>/<model>/harvest/             shard_NNNNN.safetensors + shard_NNNNN.parquet token index, harvest.json
                                             (+ harvest.rank<R>.json while a torchrun harvest runs)
    runs/<name>/<model>/sae/                 sae_weights.safetensors, cfg.json, sparsity.safetensors (SAELens layout),
                                             metrics.json, train.json, checkpoints/
    runs/<name>/<model>/                     exemplars.parquet, feature_stats.parquet, exemplars.json,
                                             exemplars_stage.json, labels.parquet, labels.json,
                                             lexical_profile.parquet, label_candidates.parquet,
                                             logit_effects.parquet, activation_histogram.parquet (report),
                                             text_embeddings.npz (compare: cached embeddings of the feature texts domains use)
    runs/<name>/compare/<A>__<B>/            matches.parquet, null.parquet, features.parquet, stats.json, calibration.json,
                                             label_priority.json, compare.json, cache/ (+ cache/pair_windows.parquet: report)
    runs/<name>/compare/cache/               universal_windows.parquet (report, three or more models)
    runs/<name>/controls/                    controls.json (every control's sharing, cost); ceiling/<model>/sae/ (second seed),
                                             ceiling/<model>/pair/ and floor/<A>__<B random>/ (compare outputs),
                                             random/<model>/ (random-weights control: harvest/, sae/)
    runs/<name>/crosscode/<A>__<B>/          crosscoder.safetensors, cfg.json, latents.parquet, crosscode.json, checkpoints/,
                                             latent_exemplars.parquet + .json (word windows of the paged latents),
                                             latent_labels.parquet + .json (their labels and scores)
    runs/<name>/sweep/                       sweep.json (every layer pair's CKA / SVCCA / mutual kNN, the record), <metric>.png
    runs/<name>/report.md, report.json, plots/, pages/ (index, by_*.html, <model>/<f>.html, pairs/<A>__<B>/<a>-<b>.html,
                                             crosscode/<A>__<B>/<latent>.html, universal/<f1>-<f2>-...-<fN>.html)

No other module spells one of these names: stages ask a ``RunDir`` / ``ModelDir`` / ``PairDir`` for paths.
The SAELens file names live here too, because an SAE directory outside a run has the same layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# run level
CONFIG_FILE = "config.toml"
VERSION_FILE = "autointerp.json"
LOCK_FILE = ".lock"
LLM_CACHE_FILE = "llm_cache.sqlite"
COST_FILE = "cost.json"
# corpus
CORPUS_DIR = "corpus"
DOCUMENTS_FILE = "documents.parquet"
CORPUS_META_FILE = "corpus.json"
SELECTION_FILE = "selection.json"
# per model
HARVEST_DIR = "harvest"
HARVEST_MANIFEST = "harvest.json"
HARVEST_RANK_LEDGER = "harvest.rank{rank}.json"  # torchrun harvest: shards one rank finished, merged into harvest.json at the end
SAE_DIR = "sae"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"
SAE_CFG_FILE = "cfg.json"
SAE_SPARSITY_FILE = "sparsity.safetensors"
SAE_METRICS_FILE = "metrics.json"
# pretrained SAEs in other libraries' layouts (read by autointerp.sae.pretrained, never written here)
SPARSIFY_WEIGHTS_FILE = "sae.safetensors"  # sparsify: <hookpoint>/cfg.json + sae.safetensors
GEMMA_SCOPE_FILE = "params.npz"  # Gemma Scope: layer_L/width_W/average_l0_N/params.npz
LLAMA_SCOPE_HPARAMS_FILE = "hyperparams.json"  # Llama Scope: <sae>/hyperparams.json
LLAMA_SCOPE_WEIGHTS_FILE = "final.safetensors"  # ... + <sae>/checkpoints/final.safetensors
LLAMA_SCOPE_CHECKPOINT_DIR = "checkpoints"
TRAIN_RECORD = "train.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "checkpoint.safetensors"
EXEMPLARS_FILE = "exemplars.parquet"
FEATURE_STATS_FILE = "feature_stats.parquet"
EXEMPLARS_META_FILE = "exemplars.json"
EXEMPLARS_RECORD = "exemplars_stage.json"
LABELS_FILE = "labels.parquet"
LABELS_META_FILE = "labels.json"
LEXICAL_PROFILE_FILE = "lexical_profile.parquet"
LABEL_CANDIDATES_FILE = "label_candidates.parquet"
LOGIT_EFFECTS_FILE = "logit_effects.parquet"  # report: tokens each decoder direction raises / lowers (causal LMs)
ACTIVATION_HISTOGRAM_FILE = "activation_histogram.parquet"  # report: per-feature histogram of token activations
TEXT_EMBEDDINGS_FILE = "text_embeddings.npz"  # compare: embeddings of each feature's name + top window (domains), a cache
# per pair of models
COMPARE_DIR = "compare"
MATCHES_FILE = "matches.parquet"
NULL_FILE = "null.parquet"
FEATURES_FILE = "features.parquet"
STATS_FILE = "stats.json"
COMPARE_RECORD = "compare.json"
CALIBRATION_FILE = "calibration.json"
LABEL_PRIORITY_FILE = "label_priority.json"  # which features explain labels first (compare.label_priority)
COMPARE_CACHE_DIR = "cache"
PAIR_WINDOWS_FILE = "pair_windows.parquet"  # report: word windows where both / one feature of a matched pair fire
UNIVERSAL_WINDOWS_FILE = "universal_windows.parquet"  # report: compare/cache/, word windows where every model of a universal chain fires
REPRESENTATION_CACHE = "representation.json"
# controls: the same-model ceiling and the random-weights floor
CONTROLS_DIR = "controls"
CONTROLS_FILE = "controls.json"
CEILING_DIR = "ceiling"
FLOOR_DIR = "floor"
RANDOM_DIR = "random"
# crosscoder of two models (one dictionary over both)
CROSSCODE_DIR = "crosscode"
CROSSCODER_WEIGHTS_FILE = "crosscoder.safetensors"
CROSSCODE_LATENTS_FILE = "latents.parquet"
CROSSCODE_RECORD = "crosscode.json"
CROSSCODE_EXEMPLARS_FILE = "latent_exemplars.parquet"  # word-unit windows of the paged latents (EXEMPLAR_SCHEMA + read_a/b)
CROSSCODE_EXEMPLARS_RECORD = "latent_exemplars.json"
CROSSCODE_LABELS_FILE = "latent_labels.parquet"  # their labels (explain path) and embedding scores (+ shuffled baseline)
CROSSCODE_LABELS_RECORD = "latent_labels.json"
# layer sweep
SWEEP_DIR = "sweep"
SWEEP_FILE = "sweep.json"
# report (in the run directory, or wherever --out points)
REPORT_FILE = "report.md"
REPORT_RECORD = "report.json"
PLOTS_DIR = "plots"
PAGES_DIR = "pages"
PAGES_INDEX = "index.html"
PAIR_PAGES_DIR = "pairs"  # pages/pairs/<A>__<B>/<feature A>-<feature B>.html
CROSSCODE_PAGES_DIR = "crosscode"  # pages/crosscode/<A>__<B>/<latent>.html
UNIVERSAL_PAGES_DIR = "universal"  # pages/universal/<feature of each model, in run order, joined by "-">.html
INDEX_VIEWS = {"contextual": "by_contextual.html", "correlation": "by_correlation.html", "density": "by_density.html",
               "label_score": "by_label_score.html"}
# the stage records: a stage writes its record when it has done work, so a stage's cost is charged to them
STAGE_RECORDS = frozenset({HARVEST_MANIFEST, TRAIN_RECORD, EXEMPLARS_RECORD, LABELS_META_FILE, COMPARE_RECORD, CROSSCODE_RECORD,
                           CROSSCODE_EXEMPLARS_RECORD, CROSSCODE_LABELS_RECORD, SWEEP_FILE, REPORT_RECORD})


def feature_page_name(feature: int) -> str:
    return f"{feature}.html"


def pair_page_name(feature_a: int, feature_b: int) -> str:
    return f"{feature_a}-{feature_b}.html"


def universal_page_name(features: Iterable[int]) -> str:
    """A universal chain's page: its features in the run's model order (one chain per feature of any model,
    so the name is unique)."""
    return "-".join(str(int(f)) for f in features) + ".html"


def latent_page_name(latent: int) -> str:
    return f"{latent}.html"


def shard_stem(index: int) -> str:
    return f"shard_{index:05d}"


@dataclass(frozen=True)
class ShardPaths:
    """One harvest shard: activations (safetensors) and its token index (parquet)."""

    activations: Path
    index: Path

    @classmethod
    def of(cls, harvest_dir: Path, index: int) -> ShardPaths:
        stem = shard_stem(index)
        return cls(Path(harvest_dir) / f"{stem}.safetensors", Path(harvest_dir) / f"{stem}.parquet")


def rank_ledger(harvest_dir: Path, rank: int) -> Path:
    """The shards rank ``rank`` of a torchrun harvest finished (until rank 0 merges them into harvest.json)."""
    return Path(harvest_dir) / HARVEST_RANK_LEDGER.format(rank=rank)


def rank_ledgers(harvest_dir: Path) -> list[Path]:
    return sorted(Path(harvest_dir).glob(HARVEST_RANK_LEDGER.format(rank="*")))


def shard_number(path: Path) -> int:
    """The index of a shard from its activations (or index) file name."""
    return int(Path(path).stem.split("_")[1])


@dataclass(frozen=True)
class SAEFiles:
    """An SAE directory in the SAELens layout (our trained SAEs, or one given by the user)."""

    root: Path

    weights = property(lambda self: self.root / SAE_WEIGHTS_FILE)
    cfg = property(lambda self: self.root / SAE_CFG_FILE)
    sparsity = property(lambda self: self.root / SAE_SPARSITY_FILE)
    metrics = property(lambda self: self.root / SAE_METRICS_FILE)
    record = property(lambda self: self.root / TRAIN_RECORD)
    checkpoints = property(lambda self: self.root / CHECKPOINT_DIR)
    checkpoint = property(lambda self: self.root / CHECKPOINT_DIR / CHECKPOINT_FILE)


@dataclass(frozen=True)
class ModelDir:
    """``runs/<name>/<model>/``: one model's harvest, SAE, exemplars and labels."""

    root: Path

    @property
    def slug(self) -> str:
        return self.root.name

    harvest = property(lambda self: self.root / HARVEST_DIR)
    manifest = property(lambda self: self.root / HARVEST_DIR / HARVEST_MANIFEST)
    sae_dir = property(lambda self: self.root / SAE_DIR)
    sae = property(lambda self: SAEFiles(self.root / SAE_DIR))
    exemplars = property(lambda self: self.root / EXEMPLARS_FILE)
    feature_stats = property(lambda self: self.root / FEATURE_STATS_FILE)
    exemplars_meta = property(lambda self: self.root / EXEMPLARS_META_FILE)
    exemplars_record = property(lambda self: self.root / EXEMPLARS_RECORD)
    labels = property(lambda self: self.root / LABELS_FILE)
    labels_meta = property(lambda self: self.root / LABELS_META_FILE)
    lexical_profile = property(lambda self: self.root / LEXICAL_PROFILE_FILE)
    label_candidates = property(lambda self: self.root / LABEL_CANDIDATES_FILE)
    logit_effects = property(lambda self: self.root / LOGIT_EFFECTS_FILE)
    activation_histogram = property(lambda self: self.root / ACTIVATION_HISTOGRAM_FILE)
    text_embeddings = property(lambda self: self.root / TEXT_EMBEDDINGS_FILE)


@dataclass(frozen=True)
class PairDir:
    """``runs/<name>/compare/<A>__<B>/``: the comparison of two models."""

    root: Path

    @property
    def names(self) -> tuple[str, str]:
        a, _, b = self.root.name.partition("__")
        return a, b

    matches = property(lambda self: self.root / MATCHES_FILE)
    null = property(lambda self: self.root / NULL_FILE)
    features = property(lambda self: self.root / FEATURES_FILE)
    stats = property(lambda self: self.root / STATS_FILE)
    calibration = property(lambda self: self.root / CALIBRATION_FILE)
    label_priority = property(lambda self: self.root / LABEL_PRIORITY_FILE)
    record = property(lambda self: self.root / COMPARE_RECORD)
    cache = property(lambda self: self.root / COMPARE_CACHE_DIR)
    representation_cache = property(lambda self: self.root / COMPARE_CACHE_DIR / REPRESENTATION_CACHE)
    pair_windows = property(lambda self: self.root / COMPARE_CACHE_DIR / PAIR_WINDOWS_FILE)

    def outputs(self) -> tuple[Path, ...]:
        return (self.matches, self.null, self.features, self.stats, self.calibration)

    def cache_file(self, level: str) -> Path:
        return self.cache / f"{level}.safetensors"


@dataclass(frozen=True)
class ControlsDir:
    """``runs/<name>/controls/``: the comparisons a sharing fraction is read against (compare.controls)."""

    root: Path

    record = property(lambda self: self.root / CONTROLS_FILE)

    def ceiling_sae(self, slug: str) -> SAEFiles:
        """The model's second SAE (same harvest and settings, another seed)."""
        return SAEFiles(self.root / CEILING_DIR / slug / SAE_DIR)

    def ceiling_pair(self, slug: str) -> PairDir:
        return PairDir(self.root / CEILING_DIR / slug / "pair")

    def random_model(self, slug: str) -> ModelDir:
        """The random-weights control of a model: its own harvest and SAE."""
        return ModelDir(self.root / RANDOM_DIR / slug)

    def floor_pair(self, real: str, randomised: str) -> PairDir:
        return PairDir(self.root / FLOOR_DIR / f"{real}__{randomised}")

    def of(self, control: str) -> ControlsDir:
        """A registered control's own directory (``controls/<control>/``), laid out like this one: a control that
        is a variant of a built-in one (another seed, say) keeps its files apart with the same method names."""
        return ControlsDir(self.root / control)


@dataclass(frozen=True)
class CrosscodeDir:
    """``runs/<name>/crosscode/<A>__<B>/``: a crosscoder trained on two models at once (cfg.json as an SAE's)."""

    root: Path

    @property
    def names(self) -> tuple[str, str]:
        a, _, b = self.root.name.partition("__")
        return a, b

    weights = property(lambda self: self.root / CROSSCODER_WEIGHTS_FILE)
    cfg = property(lambda self: self.root / SAE_CFG_FILE)
    latents = property(lambda self: self.root / CROSSCODE_LATENTS_FILE)
    record = property(lambda self: self.root / CROSSCODE_RECORD)
    checkpoints = property(lambda self: self.root / CHECKPOINT_DIR)
    latent_exemplars = property(lambda self: self.root / CROSSCODE_EXEMPLARS_FILE)
    latent_exemplars_record = property(lambda self: self.root / CROSSCODE_EXEMPLARS_RECORD)
    latent_labels = property(lambda self: self.root / CROSSCODE_LABELS_FILE)
    latent_labels_record = property(lambda self: self.root / CROSSCODE_LABELS_RECORD)


@dataclass(frozen=True)
class SweepDir:
    """``runs/<name>/sweep/``: which layers of two models correspond."""

    root: Path

    record = property(lambda self: self.root / SWEEP_FILE)

    def heatmap(self, metric: str) -> Path:
        return self.root / f"{metric}.png"


@dataclass(frozen=True)
class ReportDir:
    """Where the report is written: the run directory, or ``autointerp report --out DIR``."""

    root: Path

    markdown = property(lambda self: self.root / REPORT_FILE)
    record = property(lambda self: self.root / REPORT_RECORD)
    plots = property(lambda self: self.root / PLOTS_DIR)
    pages = property(lambda self: self.root / PAGES_DIR)
    index = property(lambda self: self.root / PAGES_DIR / PAGES_INDEX)


@dataclass(frozen=True)
class RunDir:
    """``runs/<name>/``: the whole run."""

    root: Path

    config = property(lambda self: self.root / CONFIG_FILE)
    version = property(lambda self: self.root / VERSION_FILE)
    lock = property(lambda self: self.root / LOCK_FILE)
    llm_cache = property(lambda self: self.root / LLM_CACHE_FILE)
    cost = property(lambda self: self.root / COST_FILE)
    corpus = property(lambda self: self.root / CORPUS_DIR)
    documents = property(lambda self: self.root / CORPUS_DIR / DOCUMENTS_FILE)
    corpus_meta = property(lambda self: self.root / CORPUS_DIR / CORPUS_META_FILE)
    selection = property(lambda self: self.root / CORPUS_DIR / SELECTION_FILE)
    compare = property(lambda self: self.root / COMPARE_DIR)
    report = property(lambda self: ReportDir(self.root))
    sweep = property(lambda self: SweepDir(self.root / SWEEP_DIR))
    controls = property(lambda self: ControlsDir(self.root / CONTROLS_DIR))
    crosscode = property(lambda self: self.root / CROSSCODE_DIR)
    universal_windows = property(lambda self: self.root / COMPARE_DIR / COMPARE_CACHE_DIR / UNIVERSAL_WINDOWS_FILE)

    def crosscoder(self, a: str, b: str) -> CrosscodeDir:
        return CrosscodeDir(self.root / CROSSCODE_DIR / f"{a}__{b}")

    def crosscoders(self) -> list[CrosscodeDir]:
        """Existing crosscoder directories, sorted by name."""
        return [CrosscodeDir(p) for p in sorted(self.crosscode.glob("*__*")) if p.is_dir()]

    def model(self, slug: str) -> ModelDir:
        return ModelDir(self.root / slug)

    def pair(self, a: str, b: str) -> PairDir:
        return PairDir(self.root / COMPARE_DIR / f"{a}__{b}")

    def pairs(self) -> list[PairDir]:
        """Existing comparison directories, sorted by name."""
        return [PairDir(p) for p in sorted(self.compare.glob("*__*")) if p.is_dir()]

    def harvest_manifests(self) -> list[Path]:
        return sorted(self.root.glob(f"*/{HARVEST_DIR}/{HARVEST_MANIFEST}"))
