"""Hard negatives: held-out windows holding one of a feature's main words where the feature does not fire.

Why: scored against random windows, a label that only names a feature's words ("the word bank") does as well
as one that says when it fires ("bank of a river"), because random windows rarely hold the word. A hard
negative holds the word but not the activation, so only a label that says more than the word can tell it
from an activating window. A feature that fires on every occurrence of its words has none (its words are
the whole story): it is counted (``n_hard_negatives`` = 0), never scored as if it were at chance.

Definition (token level; also written to exemplars.json):

- words: the feature's main words (``LexicalProfile.main_words``: up to 3 carrying >= 5% of the activation
  mass of its training windows, else its top word), cut from the document text exactly as the profile cuts
  them (``profile.word_at``; mined without documents, each token is its own word, ``profile.token_word``);
- candidate: the last token of an occurrence of one of those words; its window has the activating windows'
  shape (``window_before`` tokens before to ``window_after`` after it, clipped to the context);
- kept when the feature's SAE activation is 0 on every token of that window and the context holds none of
  the feature's other windows (top, quantile, random); at most one per (feature, context), drawn at random;
- per feature a uniform seeded sample of those contexts, as many as the feature has held-out activating
  windows; split "test", ``rank_or_quantile`` = ordinal, ``max_index`` = the word's token, ``max_act`` 0.

One pass over the harvest's token indexes (not its activations), one shard at a time: the miner's scan kept
each shard's positive latents as sorted ``feature * rows + row`` keys, so a candidate window's number of
firing tokens is two ``searchsorted`` calls and nothing is encoded again. Sequence level is not mined: a row
is a whole document there, so the profile's words are not the words of a token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from autointerp.errors import UserError
from autointerp.exemplars.config import ExemplarConfig
from autointerp.exemplars.harvest_reader import read_index
from autointerp.exemplars.kinds import ACTIVATING_KINDS, HARD_NEGATIVE, KINDS
from autointerp.exemplars.profile import token_word, word_at, word_spans
from autointerp.exemplars.topk_tracker import Columns, GroupedTopN, concat, group_ranks, max_per_pair, pair_key, take

SEED_STREAM = 1  # their own random stream: the windows mined before them are the same with or without them
CANDIDATE_BLOCK = 1 << 21  # (feature, occurrence) candidates checked at once (bounds memory on frequent words)

DEFINITION = ("held-out windows (split test) holding one of the feature's main words (up to 3 with >= 5% of its "
              "training activation mass, else its top word) where its activation is 0 on every token: centred like "
              "an activating window on the word's last token, in a context holding none of its other windows, at most "
              "one per context, a seeded uniform sample of as many as it has held-out activating windows; max_act 0")


def held_out_quota(windows: Columns, d_sae: int) -> np.ndarray:
    """Per feature, how many held-out activating windows it has: the number of hard negatives to draw."""
    if not windows:
        return np.zeros(d_sae, np.int64)
    active = np.isin(windows["kind"], [KINDS.index(k) for k in ACTIVATING_KINDS]) & (windows["split"] == 1)
    return np.bincount(windows["feature"][active], minlength=d_sae).astype(np.int64)


class _RowWords:
    """Per harvest row: the id of its word among the wanted ones (-1: another word or none) and the word
    occurrence it belongs to (-1: none), so the last token of each occurrence can be found."""

    def __init__(self, docs: Mapping[str, str] | None, vocab: dict[str, int]):
        self.docs, self.vocab = docs, vocab
        self._spans: dict[str, tuple[list[tuple[int, int]], list[int]]] = {}

    def __call__(self, index: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        n = len(index)
        if self.docs is None:
            ids = np.fromiter((self.vocab.get(token_word(t), -1) for t in index["token"].astype(str)), np.int64, n)
            return ids, np.arange(n, dtype=np.int64)
        ids, occ = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        codes, names = pd.factorize(index["doc_id"].astype(str))
        cs, ce = index["char_start"].to_numpy(np.int64), index["char_end"].to_numpy(np.int64)
        order = np.argsort(codes, kind="stable")
        for code, rows in enumerate(np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)):
            text, spans, starts = self._document(str(names[code]))
            for r in rows.tolist():
                k = word_at(text, spans, starts, int(cs[r]), int(ce[r]))
                if k is not None:
                    occ[r] = (code << 32) + k
                    ids[r] = self.vocab.get(text[spans[k][0]:spans[k][1]].lower(), -1)
        return ids, occ

    def _document(self, doc_id: str) -> tuple[str, list[tuple[int, int]], list[int]]:
        text = self.docs.get(doc_id)
        if text is None:
            raise UserError(f"document {doc_id!r} of the harvest is not among the supplied documents; pass the corpus the harvest was made from")
        if doc_id not in self._spans:
            spans = word_spans(text)
            self._spans[doc_id] = (spans, [s for s, _ in spans])
        return text, *self._spans[doc_id]


def _occurrence_ends(word_id: np.ndarray, occ: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """Rows that are the last token of an occurrence of a wanted word (a word never spans contexts)."""
    same_next = np.zeros(len(occ), dtype=bool)
    same_next[:-1] = (occ[:-1] >= 0) & (occ[1:] == occ[:-1]) & (ctx[1:] == ctx[:-1])
    return np.flatnonzero((word_id >= 0) & ~same_next)


def _window_bounds(rows: np.ndarray, ctx: np.ndarray, cfg: ExemplarConfig) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) of the window around each row, clipped to its context (contexts are contiguous in a shard)."""
    change = np.ones(len(ctx), dtype=bool)
    change[1:] = ctx[1:] != ctx[:-1]
    first = np.flatnonzero(change)
    end = np.append(first[1:], len(ctx))
    run = np.cumsum(change) - 1
    return np.maximum(first[run[rows]], rows - cfg.window_before), np.minimum(end[run[rows]], rows + cfg.window_after + 1)


def select_hard_negatives(harvest_dir: Path, shards: list[dict], firing: Callable[[dict], np.ndarray], windows: Columns,
                          words: dict[int, list[str]], docs: Mapping[str, str] | None, n_ctx_ids: int, d_sae: int,
                          cfg: ExemplarConfig, advance: Callable[[int], None]) -> Columns:
    """The hard-negative windows (columns as ``topk_tracker.select_windows``: feature, split, kind, rank,
    context, row = the word's global row, act = 0), ordered by feature then rank. ``firing(shard)``: the sorted
    ``feature * rows + row`` keys of the shard's positive latents (the miner's scan keeps them); ``windows``:
    the features' other windows (their contexts are excluded, their held-out activating ones set the quota)."""
    quota = held_out_quota(windows, d_sae)
    wanted = {f: sorted(set(ws)) for f, ws in words.items() if 0 <= f < d_sae and quota[f] > 0 and ws}
    if not wanted:
        return {}
    vocab = {w: i for i, w in enumerate(sorted({w for ws in wanted.values() for w in ws}))}
    pairs = np.array([(vocab[w], f) for f, ws in wanted.items() for w in ws], np.int64).reshape(-1, 2)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # word -> its features, as CSR
    word_first = np.searchsorted(pairs[:, 0], np.arange(len(vocab)))
    word_count = np.bincount(pairs[:, 0], minlength=len(vocab))
    taken = np.unique(pair_key(windows["feature"], windows["context"], n_ctx_ids))
    rng = np.random.default_rng([cfg.seed, SEED_STREAM])
    best = GroupedTopN(int(quota.max()), "key", largest=False)
    row_words, offset = _RowWords(docs, vocab), 0
    for shard in shards:
        index = read_index(harvest_dir, shard, ["doc_id", "token", "char_start", "char_end", "context_id"])
        ctx = index["context_id"].to_numpy(np.int64)
        word_id, occ = row_words(index)
        ends = _occurrence_ends(word_id, occ, ctx)
        lo, hi = _window_bounds(ends, ctx, cfg)
        keys = firing(shard)
        n, parts = len(ctx), []
        step = max(1, CANDIDATE_BLOCK // int(word_count.max()))
        for a in range(0, len(ends), step):
            block, block_lo, block_hi = ends[a : a + step], lo[a : a + step], hi[a : a + step]
            count = word_count[word_id[block]]
            at = np.repeat(np.arange(len(block)), count)  # candidate -> its occurrence in the block
            within = np.arange(len(at)) - np.repeat(np.cumsum(count) - count, count)
            feature = pairs[word_first[word_id[block[at]]] + within, 1]
            fires = np.searchsorted(keys, feature * n + block_hi[at]) - np.searchsorted(keys, feature * n + block_lo[at])
            rows = block[at]
            keep = (fires == 0) & ~np.isin(pair_key(feature, ctx[rows], n_ctx_ids), taken)
            parts.append({"feature": feature[keep], "row": rows[keep] + offset, "context": ctx[rows[keep]]})
        found = concat(parts)
        if found and len(found["feature"]):
            found = take(found, max_per_pair(found["feature"], found["context"], rng.random(len(found["feature"]))))
            best.update({**found, "key": rng.random(len(found["feature"]))})  # uniform over contexts, not occurrences
        offset += n
        advance(1)
    if not len(best):
        return {}
    chosen = best.cols
    chosen = take(chosen, np.lexsort((chosen["key"], chosen["feature"])))
    rank = group_ranks(chosen["feature"])
    keep = rank < quota[chosen["feature"]]
    chosen, rank = take(chosen, keep), rank[keep]
    m = len(rank)
    return {"feature": chosen["feature"].astype(np.int32), "split": np.ones(m, np.int8),
            "kind": np.full(m, KINDS.index(HARD_NEGATIVE), np.int8), "rank": rank.astype(np.int64),
            "context": chosen["context"], "row": chosen["row"], "act": np.zeros(m, np.float32)}
