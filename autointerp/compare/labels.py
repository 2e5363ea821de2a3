"""Label matching: embed every successful label, cosine similarity across the models, Hungarian.

Works on whatever features have an "ok" label; unlabelled features are simply absent. The label is each
feature's *final* label (``labels.parquet`` ``label``: the LLM's, or the lexical one where that scored
higher on training windows; ``label_source`` says which), so matching and domains use what the report shows.
Besides the
assignment it keeps the embeddings (for domains and specificity) and a calibration of similarities:
the share of *all* cross-model label pairs less similar than a given pair, so a similarity can be
combined with an activation p-value on a common "how unusual versus chance" scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from autointerp.compare.matching import Assignment, hungarian
from autointerp.models.embedder import embed_texts

CALIBRATION_SAMPLES = 1_000_000


@dataclass
class LabelSpace:
    """One model's labelled features and their unit-norm label embeddings."""

    features: np.ndarray  # feature ids (int64), sorted
    labels: list[str]
    embeddings: np.ndarray  # [n, dim] float32

    def row_of(self, features: np.ndarray) -> np.ndarray:
        """Row in ``embeddings`` per feature, -1 when the feature has no label."""
        features = np.asarray(features, dtype=np.int64)
        if len(self.features) == 0:
            return np.full(len(features), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.features, features), 0, len(self.features) - 1)
        return np.where(self.features[pos] == features, pos, -1)

    def label_of(self, features: np.ndarray) -> list[str | None]:
        return [self.labels[r] if r >= 0 else None for r in self.row_of(np.asarray(features))]


def label_space(frame: pd.DataFrame, embedder: str) -> LabelSpace:
    frame = frame.sort_values("feature")
    labels = frame["label"].astype(str).tolist()
    return LabelSpace(frame["feature"].to_numpy(np.int64), labels, embed_texts(labels, embedder))


@dataclass
class LabelMatching:
    a: LabelSpace
    b: LabelSpace
    similarity: np.ndarray  # [len(a.features), len(b.features)] cosine
    assignment: Assignment  # in feature ids
    calibration: np.ndarray  # sorted sample of all cross-model similarities

    def pair_similarity(self, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        ra, rb = self.a.row_of(np.asarray(fa)), self.b.row_of(np.asarray(fb))
        out = np.full(len(ra), np.nan)
        ok = (ra >= 0) & (rb >= 0)
        out[ok] = self.similarity[ra[ok], rb[ok]]
        return out

    def calibrated(self, sims: np.ndarray) -> np.ndarray:
        """Share of all cross-model label pairs that are less similar (NaN stays NaN)."""
        out = np.searchsorted(self.calibration, np.nan_to_num(sims, nan=0.0), side="left") / max(len(self.calibration), 1)
        return np.where(np.isnan(sims), np.nan, out)


def match_labels(a: LabelSpace, b: LabelSpace, seed: int = 0) -> LabelMatching:
    sim = a.embeddings @ b.embeddings.T
    assign = hungarian(sim)
    flat = sim.reshape(-1)
    if len(flat) > CALIBRATION_SAMPLES:
        flat = np.random.default_rng(seed).choice(flat, CALIBRATION_SAMPLES, replace=False)
    return LabelMatching(a, b, sim, Assignment(a.features[assign.rows], b.features[assign.cols], assign.values),
                         np.sort(flat.astype(np.float64)))
