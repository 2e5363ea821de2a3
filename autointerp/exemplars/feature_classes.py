"""Feature classes from a feature's own activations: token, contextual, topical or other.

Why: a token detector (fires wherever a word occurs) is fully described by a word list, a contextual feature
fires on its words only in some contexts (the label has to say *when*), and a topical feature fires across
many words inside documents of one subject. The cross-model answer and the LLM budget differ by class, so
each feature gets one, with stated thresholds, from statistics accumulated during the miner's scan (no
second pass over the harvest).

Statistics (token level; every harvested token counts, firing or not, activation 0 when silent):

- ``word_eta2``: the share of the feature's activation variance that word identity explains - one-way
  ANOVA over word types (a word type = the case-folded token text, ``profile.token_word``; a word split into
  several tokens counts per piece), adjusted for the number of types so that a random grouping scores ~0:
  ``1 - (1 - eta2) (N - 1) / (N - G)``;
- ``doc_concentration``: how much more its activation mass concentrates in few documents than chance allows:
  ``sum_d p_d^2`` (p_d: the document's share of its mass) over the same quantity expected under a
  shuffled-document null, where its firing tokens fall on random tokens of the corpus (documents then get
  mass in proportion to their length q_d): ``sum q^2 + (1 - sum q^2) / m``, with ``m = (sum a)^2 / sum a^2``
  the effective number of firing tokens. 1 is chance; 10 means ten times as concentrated;
- ``top_word_share``: the share of its activation mass on its main word types (up to ``TOP_WORDS`` carrying at
  least ``MIN_WORD_SHARE`` of it, else its heaviest - the main words of its lexical profile);
- ``word_fire_rate``: on how many of those words' occurrences it fires (firing / all occurrences).

Rule (first match wins; thresholds in this module, written to exemplars.json):

- ``token``: word identity explains most of its variance (``word_eta2 >= TOKEN_ETA2``);
- ``topical``: its mass is spread over many words (``top_word_share < WORD_SHAPED``) but concentrated in
  documents (``doc_concentration >= TOPICAL_CONCENTRATION``), with at least ``MIN_EFFECTIVE_TOKENS`` effective
  firing tokens (fewer concentrate by chance in ways the analytic null does not capture);
- ``contextual``: its mass sits on a few words (``top_word_share >= WORD_SHAPED``) but it fires on at most
  ``CONTEXTUAL_RATE`` of their occurrences, and - where hard negatives were mined - it has some (windows holding
  its words where it is silent, so a label can be scored on *when* it fires);
- ``other``: live features matching none; ``dead``: never fired.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.exemplars.profile import MAIN_WORDS as TOP_WORDS, MIN_WORD_SHARE, token_word
from autointerp.io import read_parquet

CLASSES = ("token", "contextual", "topical", "other", "dead")
TOKEN_ETA2 = 0.5  # word identity explains at least half the variance
TOPICAL_CONCENTRATION = 5.0  # its mass is at least 5x as concentrated in documents as under shuffled documents
MIN_EFFECTIVE_TOKENS = 20.0
WORD_SHAPED = 0.5  # the top words carry at least half the activation mass
CONTEXTUAL_RATE = 0.5  # ... yet it fires on at most half of their occurrences
RULE_VERSION = 1  # bumped when the rule or its statistics change (exemplars re-mine once)
RULE = {"token": f"word_eta2 >= {TOKEN_ETA2}",
        "topical": f"top_word_share < {WORD_SHAPED}, doc_concentration >= {TOPICAL_CONCENTRATION}, effective firing tokens >= {MIN_EFFECTIVE_TOKENS:g}",
        "contextual": f"top_word_share >= {WORD_SHAPED}, word_fire_rate <= {CONTEXTUAL_RATE}, n_hard_negatives > 0 where mined",
        "other": "live, none of the above", "dead": "never fired", "version": RULE_VERSION,
        "word_type": "the case-folded token text (profile.token_word)"}
COLUMNS = ("feature_class", "word_eta2", "doc_concentration", "top_word_share", "word_fire_rate")


class _Ids:
    """Stable integer ids for strings seen shard by shard (word types, documents)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def of(self, values: pd.Series, key=None) -> np.ndarray:
        codes, uniques = pd.factorize(values, sort=False)
        keys = [key(u) if key else u for u in uniques]
        local = np.fromiter((self.index.setdefault(k, len(self.index)) for k in keys), np.int64, len(keys))
        return local[codes] if len(codes) else np.zeros(0, np.int64)


class ClassStats:
    """Accumulates, shard by shard, what the class rule needs: per feature the sum of squared activations,
    per (feature, word type) and (feature, document) the activation sum (and per word type the firing count),
    and the occurrences of every word type and document. Memory: one record per distinct firing pair."""

    def __init__(self, d_sae: int) -> None:
        self.d_sae = d_sae
        self.sumsq = np.zeros(d_sae, np.float64)
        self.words, self.docs = _Ids(), _Ids()
        self.word_count = np.zeros(0, np.int64)
        self.doc_count = np.zeros(0, np.int64)
        self._word_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._doc_parts: list[tuple[np.ndarray, np.ndarray]] = []

    def shard(self, index: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The shard's word-type and document id per row (counted as occurrences)."""
        word = self.words.of(index["token"].astype(str), token_word)
        doc = self.docs.of(index["doc_id"].astype(str))
        self.word_count = _grow_add(self.word_count, word)
        self.doc_count = _grow_add(self.doc_count, doc)
        return word, doc

    def add(self, feature: np.ndarray, act: np.ndarray, word: np.ndarray, doc: np.ndarray) -> None:
        """Firing records (feature, activation, the row's word type and document)."""
        if not len(feature):
            return
        act = act.astype(np.float64)
        self.sumsq += np.bincount(feature, weights=act * act, minlength=self.d_sae)
        keys, inverse = np.unique(feature.astype(np.int64) << 32 | word, return_inverse=True)
        self._word_parts.append((keys, np.bincount(inverse, weights=act), np.bincount(inverse).astype(np.int64)))
        keys, inverse = np.unique(feature.astype(np.int64) << 32 | doc, return_inverse=True)
        self._doc_parts.append((keys, np.bincount(inverse, weights=act)))
        if sum(len(p[0]) for p in self._word_parts) > 4 * (1 << 20):  # keep the parts bounded
            self._word_parts = [_reduce(self._word_parts)]
            self._doc_parts = [_reduce(self._doc_parts)]

    def classify(self, sum_act: np.ndarray, n_hard: np.ndarray | None) -> pd.DataFrame:
        """The class columns (``COLUMNS``) per feature; ``n_hard`` None when hard negatives were not mined."""
        n = float(self.word_count.sum())
        word_keys, word_sum, word_fired = _reduce(self._word_parts) if self._word_parts else (np.zeros(0, np.int64),) * 3
        doc_keys, doc_sum = _reduce(self._doc_parts)[:2] if self._doc_parts else (np.zeros(0, np.int64),) * 2
        total = self.sumsq - sum_act ** 2 / max(n, 1.0)
        word_eta2 = _adjusted_eta2(self._between(word_keys, word_sum, self.word_count, sum_act, n), total, n, len(self.word_count))
        concentration, effective = self._concentration(doc_keys, doc_sum, sum_act, n)
        share, rate = self._top_words(word_keys, word_sum, word_fired, sum_act)
        live = sum_act > 0
        cls = np.full(self.d_sae, "other", dtype=object)
        token = word_eta2 >= TOKEN_ETA2
        topical = ~token & (share < WORD_SHAPED) & (concentration >= TOPICAL_CONCENTRATION) & (effective >= MIN_EFFECTIVE_TOKENS)
        contextual = ~token & ~topical & (share >= WORD_SHAPED) & (rate <= CONTEXTUAL_RATE)
        if n_hard is not None:
            contextual &= np.asarray(n_hard) > 0
        cls[token], cls[topical], cls[contextual], cls[~live] = "token", "topical", "contextual", "dead"
        return pd.DataFrame({"feature_class": cls.astype(str), "word_eta2": word_eta2.astype(np.float32),
                             "doc_concentration": concentration.astype(np.float32), "top_word_share": share.astype(np.float32),
                             "word_fire_rate": rate.astype(np.float32)})

    def _concentration(self, keys: np.ndarray, sums: np.ndarray, sum_act: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
        """Per feature: sum_d p_d^2 over its shuffled-document expectation, and its effective firing tokens."""
        feature = keys >> 32
        observed = np.divide(np.bincount(feature, weights=sums ** 2, minlength=self.d_sae), sum_act ** 2,
                             out=np.zeros(self.d_sae), where=sum_act > 0)
        effective = np.divide(sum_act ** 2, self.sumsq, out=np.zeros(self.d_sae), where=self.sumsq > 0)
        q2 = float(((self.doc_count / max(n, 1.0)) ** 2).sum())
        expected = q2 + (1.0 - q2) / np.maximum(effective, 1.0)
        return np.divide(observed, expected, out=np.zeros(self.d_sae), where=sum_act > 0), effective

    def _between(self, keys: np.ndarray, sums: np.ndarray, counts: np.ndarray, sum_act: np.ndarray, n: float) -> np.ndarray:
        """Between-group sum of squares per feature: sum_g S_fg^2 / n_g - S_f^2 / N (groups it never fires in add 0)."""
        feature, group = keys >> 32, keys & 0xFFFFFFFF
        return np.bincount(feature, weights=sums ** 2 / counts[group], minlength=self.d_sae) - sum_act ** 2 / max(n, 1.0)

    def _top_words(self, keys, sums, fired, sum_act) -> tuple[np.ndarray, np.ndarray]:
        """Per feature: the mass share of its main word types (up to TOP_WORDS with >= MIN_WORD_SHARE of its
        mass, else its heaviest) and its firing rate on their occurrences."""
        share, rate = np.zeros(self.d_sae), np.ones(self.d_sae)
        if not len(keys):
            return share, rate
        feature, group = keys >> 32, keys & 0xFFFFFFFF
        order = np.lexsort((-sums, feature))
        feature, group, sums, fired = feature[order], group[order], sums[order], fired[order]
        first = np.searchsorted(feature, feature, side="left")
        rank = np.arange(len(feature)) - first
        weight = sums / np.maximum(sum_act[feature], 1e-30)
        top = (rank == 0) | ((rank < TOP_WORDS) & (weight >= MIN_WORD_SHARE))  # its main words, as the profile names them
        mass = np.bincount(feature[top], weights=sums[top], minlength=self.d_sae)
        occurrences = np.bincount(feature[top], weights=self.word_count[group[top]], minlength=self.d_sae)
        fires = np.bincount(feature[top], weights=fired[top], minlength=self.d_sae)
        np.divide(mass, sum_act, out=share, where=sum_act > 0)
        np.divide(fires, occurrences, out=rate, where=occurrences > 0)
        return share, rate


def _grow_add(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    size = max(len(counts), int(ids.max()) + 1 if len(ids) else 0)
    out = np.zeros(size, np.int64)
    out[: len(counts)] = counts
    return out + np.bincount(ids, minlength=size)


def _reduce(parts: list[tuple]) -> tuple:
    """Sum the value arrays of equal keys across parts."""
    keys = np.concatenate([p[0] for p in parts])
    uniq, inverse = np.unique(keys, return_inverse=True)
    return (uniq, *(np.bincount(inverse, weights=np.concatenate([p[i] for p in parts]), minlength=len(uniq)).astype(parts[0][i].dtype)
                    for i in range(1, len(parts[0]))))


def _adjusted_eta2(between: np.ndarray, total: np.ndarray, n: float, groups: int) -> np.ndarray:
    eta2 = np.divide(between, total, out=np.zeros_like(total), where=total > 0)
    if n <= groups:
        return np.zeros_like(eta2)
    return np.clip(1.0 - (1.0 - np.clip(eta2, 0.0, 1.0)) * (n - 1) / (n - groups), 0.0, 1.0)




def read_classes(feature_stats: Path) -> dict[int, str]:
    """{feature: class} from a model's feature_stats.parquet; empty when it has none (sequence level, or mined
    before classes existed)."""
    if not Path(feature_stats).is_file():
        return {}
    frame = read_parquet(feature_stats)
    if "feature_class" not in frame.columns:
        return {}
    return {int(f): str(c) for f, c in zip(frame["feature"], frame["feature_class"])}
