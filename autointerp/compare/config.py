"""``[compare]``: how features of two models are matched. Owned by the comparison module; fields may grow."""

from __future__ import annotations

from dataclasses import dataclass, field

from autointerp.errors import UserError

UNITS = ("word", "document")
NULL_METHODS = ("quantile",)
MATCHINGS = ("auto", "dense", "sparse")

# Zero-shot concept domains: name -> the description that is embedded (the name alone is a weak prompt).
DEFAULT_DOMAINS: dict[str, str] = {
    "geography": "geography: terrain, climate, rivers, mountains, coastlines, land area, natural regions",
    "economy": "economy: GDP, trade, exports, imports, industries, budget, inflation, currency",
    "politics/government": "politics and government: constitution, elections, parliament, parties, law, courts",
    "military": "military: armed forces, defense, army, navy, conflicts, security",
    "people/society": "people and society: population, ethnic groups, religions, languages spoken, health, education",
    "energy/environment": "energy and environment: electricity, oil, gas, emissions, pollution, natural resources",
    "transport/communications": "transport and communications: airports, railways, roads, ports, telephones, internet, media",
    "history": "history: independence, colonial past, historical events, dates of founding, wars of the past",
    "numbers/units/format": "numbers, units and formatting: digits, percentages, measurements, dates, punctuation, list formatting",
    "language/grammar": "language and grammar: function words, word pieces, syntax, morphology, parts of speech",
}


@dataclass
class CompareConfig:
    embedder: str = "minilm-l6"  # label embedder: the embedded MiniLM or any sentence-transformers model
    unit: str = "word"  # word | document: shared units the two tokenizations are pooled onto (max per unit)
    document_level: bool = True  # token-level harvests: also match at document level (reported side by side)
    null_alpha: float = 0.01  # a matched pair is "shared" when its corr exceeds the (1 - alpha) null quantile
    null_permutations: int = 2  # document derangements whose matched correlations form the null (at least)
    min_null_samples: int = 4000  # small dictionaries get more derangements, up to max_null_permutations
    max_null_permutations: int = 64  # upper bound on the document derangements of the null
    min_support: int = 5  # features active on fewer units than this are left out of matching (counted, reported)
    lexical_permutations: int = 8  # same-word-type cross-document pairings forming the lexical null (word level)
    lexical_alpha: float = 0.01  # a shared pair is contextual when its excess over the lexical null passes the (1 - alpha) quantile
    lexical_min_excess: float = 0.05  # ... and is at least this large (a correlation difference)
    representation: bool = True  # raw-activation baselines (debiased CKA, SVCCA, mutual kNN) on word-pooled activations
    representation_permutations: int = 19  # document derangements forming each baseline's null (p-values down to 1/20)
    representation_units: int = 32_768  # seeded subsample of whole documents holding this many word units: CKA, SVCCA and the derangements (each pass is linear in units: 20 per pair)
    representation_max_units: int = 4096  # seeded subsample of those units for mutual kNN (quadratic)
    bootstrap: int = 1000  # document-bootstrap replicates behind every interval of the verdict (0: no intervals)
    bootstrap_blocks: int = 256  # documents are resampled in at most this many blocks of whole consecutive documents
    svcca_bootstrap: int = 50  # replicates for the SVCCA interval (each re-whitens both sides: ~0.1 s; CKA and mutual kNN use `bootstrap`)
    null_method: str = "quantile"  # how the null threshold is read from the derangements
    chunk_rows: int = 8192  # harvest rows encoded per SAE call
    unit_chunk: int = 65_536  # aligned units per sparse cross-product step
    matching: str = "auto"  # auto | dense | sparse: dense = full correlation matrix + Hungarian; sparse = each feature's top `candidates` partners + sparse assignment (compare.candidates, compare.sparse_assignment), for pretrained widths; auto = dense up to dense_max_pairs, where it is faster, else sparse
    candidates: int = 32  # sparse matching: most correlated partners kept per feature and side (the graph the assignment runs on)
    dense_max_pairs: int = 16_777_216  # auto: d_a x d_b up to this (4,096 x 4,096) is matched densely, larger sparsely
    memory_gib: float = 0.0  # matching's memory budget; 0 = 80% of this machine's RAM. A width over it is refused before any work, naming the setting that fits
    domains: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DOMAINS))  # name = "description" for zero-shot domain assignment; default: the 10 domains listed above
    combined_weight: float = 0.5  # weight of the activation signal in combined_score (label gets 1 - weight)
    claim_min_effect: float = 0.06  # a difference between the models is claimed only when significant AND its common-language effect is outside [0.5 - this, 0.5 + this]
    seed: int = 0  # seed of derangements, bootstrap and subsamples

    def validate(self) -> None:
        if self.unit not in UNITS:
            raise UserError(f"compare setting unit={self.unit!r} is not supported; use one of {', '.join(UNITS)}")
        if not 0.0 < self.null_alpha < 1.0:
            raise UserError(f"compare setting null_alpha={self.null_alpha} must be in (0, 1); e.g. 0.01")
        if not 1 <= self.null_permutations <= self.max_null_permutations:
            raise UserError(f"compare setting null_permutations={self.null_permutations} must be in [1, max_null_permutations={self.max_null_permutations}]")
        if self.null_method not in NULL_METHODS:
            raise UserError(f"compare setting null_method={self.null_method!r} is unknown; use one of {', '.join(NULL_METHODS)}")
        if self.chunk_rows < 1 or self.unit_chunk < 1:
            raise UserError("compare settings chunk_rows and unit_chunk must be >= 1")
        if not 0.0 <= self.combined_weight <= 1.0:
            raise UserError(f"compare setting combined_weight={self.combined_weight} must be in [0, 1]")
        if self.min_support < 1:
            raise UserError(f"compare setting min_support={self.min_support} must be >= 1 (active units a feature needs to be matched)")
        if self.lexical_permutations < 2:
            raise UserError(f"compare setting lexical_permutations={self.lexical_permutations} must be >= 2 (the lexical null's spread is estimated across them)")
        if not 0.0 < self.lexical_alpha < 1.0:
            raise UserError(f"compare setting lexical_alpha={self.lexical_alpha} must be in (0, 1); e.g. 0.01")
        if self.representation_permutations < 1 or self.representation_max_units < 2 or self.representation_units < 4:
            raise UserError("compare settings representation_permutations must be >= 1, representation_max_units >= 2 and representation_units >= 4")
        if self.bootstrap < 0 or self.svcca_bootstrap < 0 or self.bootstrap_blocks < 2:
            raise UserError("compare settings bootstrap and svcca_bootstrap must be >= 0 (0: no intervals) and bootstrap_blocks >= 2")
        if not 0.0 <= self.claim_min_effect < 0.5:
            raise UserError(f"compare setting claim_min_effect={self.claim_min_effect} must be in [0, 0.5); e.g. 0.06")
        if self.matching not in MATCHINGS:
            raise UserError(f"compare setting matching={self.matching!r} is unknown; use one of {', '.join(MATCHINGS)}")
        if self.candidates < 1 or self.dense_max_pairs < 0 or self.memory_gib < 0:
            raise UserError("compare settings candidates must be >= 1, dense_max_pairs >= 0 and memory_gib >= 0 (0: 80% of RAM)")
        if not self.domains:
            raise UserError("compare setting domains is empty; give at least one `name = \"description\"` entry or remove the key")
