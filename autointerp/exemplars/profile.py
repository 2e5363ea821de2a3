"""Lexical profile per feature: which words, tokens, contexts and documents carry its activation (no LLM).

Why: a label is only worth reading if it says more than the exemplars' own words. The profile states those
words plainly (``"per" 71%, "capita" 9%; left "US dollars"``), feeds the lexical labeller and the explainer
prompt, and is shown on the feature pages.

Computed from the feature's *training* activating windows (top + quantile, split "train") in
``exemplars.parquet``, so labels made from it are scored on held-out windows it never saw. Words are cut
from the window's own text with character offsets (no re-tokenization): a token's activation goes to the
word containing its first non-space character, so WordPiece ``##s`` and SentencePiece ``▁per`` land on the
same word. Kinds (long format, ``<model>/lexical_profile.parquet``):

- ``word`` / ``token``: share of the feature's activation mass on each word type (case-folded) / token string;
- ``left`` / ``right``: the (up to) two words before / after the peak token's word, share of the peak windows;
- ``entity``: share of the activation mass per document entity, only where the corpus names entities (its
  ``entity`` column: ``[corpus] entity_field``, or the factbook's country). A document without one is its own
  entity, and its id ("stdlib_docs.jsonl:117") means nothing to a reader or an embedder, so it gets no row. An
  entity is shown by the heading its documents share ("Maldives" in "Maldives: Economy") when every document
  has such a heading and each entity's documents share one, else by its value.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autointerp.io import atomic_path, parquet_errors, read_parquet

KINDS = ("word", "token", "left", "right", "entity", "position")
LINE_START, SENTENCE_START, INSIDE = "at the start of a line", "at the start of a sentence", "inside a sentence"  # "position" rows
TOP_PER_KIND = 10  # rows kept per feature and kind
CONTEXT_WORDS = 2  # words of left / right context around the peak word
MIN_WORD_SHARE = 0.05  # a word below this share of the mass is not one of the feature's main words
MAIN_WORDS = 3  # at most this many main words (the words a lexical label names; hard negatives hold one)
PROFILE_SCHEMA = pa.schema([("feature", pa.int64()), ("kind", pa.string()), ("text", pa.string()),
                            ("share", pa.float64()), ("count", pa.int64())])
_WORD = re.compile(r"\w+(?:['’.\-]\w+)*|[^\w\s]")


@dataclass
class LexicalProfile:
    """One feature's profile: per kind, (text, share, count) rows, largest share first."""

    feature: int
    rows: dict[str, list[tuple[str, float, int]]] = field(default_factory=dict)

    def top(self, kind: str, n: int = 3) -> list[tuple[str, float, int]]:
        return self.rows.get(kind, [])[:n]

    def main_words(self) -> list[str]:
        """Its main words, case-folded: up to ``MAIN_WORDS`` carrying at least ``MIN_WORD_SHARE`` of its mass,
        else its top word (the words its summary and a lexical label name; hard negatives hold one of them)."""
        rows = self.top("word", MAIN_WORDS)
        return [t.lower() for t, s, _ in rows if s >= MIN_WORD_SHARE] or [t.lower() for t, _, _ in rows[:1]]

    def summary(self) -> str:
        """One line for tables and pages, e.g. ``"per" 71%, "capita" 9%; left "US dollars"``."""
        words = [f'"{t}" {s:.0%}' for t, s, _ in self.top("word", MAIN_WORDS) if s >= MIN_WORD_SHARE] or [f'"{t}" {s:.0%}' for t, s, _ in self.top("word", 1)]
        parts = [", ".join(words)] if words else []
        for kind in ("left", "right"):
            best = self.top(kind, 1)
            if best and best[0][1] >= 0.2:
                parts.append(f'{kind} "{best[0][0]}"')
        ent = self.top("entity", 1)
        if ent and ent[0][1] >= 0.5:
            parts.append(f"mostly {ent[0][0]}")
        return "; ".join(parts)


def _heading(text: str | None) -> str:
    """The part of a document's first line before ":" ("Maldives" in "Maldives: Economy"); "" without one."""
    first = str(text or "").split("\n", 1)[0].strip()
    return first.split(":", 1)[0].strip() if ":" in first and len(first) <= 120 else ""


def _entities(documents: pd.DataFrame | None) -> dict[str, str]:
    """doc_id -> the name of the entity its document is about; documents of no entity are left out.

    Without an ``entity`` column (a frame of doc_id and text only) a document's heading is its entity. With
    one, the entity value counts, shown by its documents' shared heading when headings name entities
    consistently (every document has one, one heading per entity: the factbook's "Maldives" for "mv") -
    a heading that is not the same for all documents of an entity names something else (a section)."""
    if documents is None or documents.empty:
        return {}
    headings = {str(d): _heading(t) for d, t in zip(documents["doc_id"], documents["text"])}
    if "entity" not in documents.columns:
        return {d: h for d, h in headings.items() if h}
    values = {str(d): str(e) for d, e in zip(documents["doc_id"], documents["entity"]) if isinstance(e, str) and e.strip()}
    shown: dict[str, set[str]] = defaultdict(set)
    for doc_id, value in values.items():
        shown[value].add(headings[doc_id])
    use_headings = bool(values) and all(len(h) == 1 and "" not in h for h in shown.values())
    return {d: next(iter(shown[v])) if use_headings else v for d, v in values.items()}


def _clean_token(token: str) -> str:
    return token.replace("▁", " ").replace("Ġ", " ").removeprefix("##").strip()


def token_word(token: str) -> str:
    """A token's word when there is no text to cut it from: the token without its space marks, case-folded."""
    return _clean_token(token).lower() or token


def word_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of every word of ``text`` (a word: letters/digits joined by ' ’ . -, or one symbol)."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def word_at(text: str, spans: list[tuple[int, int]], starts: list[int], s: int, e: int) -> int | None:
    """Index in ``spans`` (``starts``: their starts) of the word holding the first non-space character of the
    token ``text[s:e]``; None when that character is in no word. A token's activation goes to this word."""
    piece = text[s:e]
    p = s + (len(piece) - len(piece.lstrip())) if piece.strip() else s
    k = bisect_right(starts, p) - 1
    return k if k >= 0 and spans[k][0] <= p < spans[k][1] else None


class _Accumulator:
    def __init__(self) -> None:
        self.mass: dict[str, Counter] = {k: Counter() for k in KINDS}
        self.count: dict[str, Counter] = {k: Counter() for k in KINDS}
        self.surface: dict[str, Counter] = defaultdict(Counter)  # case-folded word -> its spellings
        self.peaks = 0

    def add(self, kind: str, key: str, mass: float) -> None:
        self.mass[kind][key] += mass
        self.count[kind][key] += 1

    def rows(self, feature: int) -> list[tuple]:
        out = []
        for kind in KINDS:
            # entity: a share of all the mass, documents of no entity included (they have no row of their own)
            total = self.peaks if kind in ("left", "right", "position") else sum(self.mass["token" if kind == "entity" else kind].values())
            if total <= 0:
                continue
            ranked = sorted(self.mass[kind].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PER_KIND]
            for key, mass in ranked:
                text = self.surface[key].most_common(1)[0][0] if kind == "word" and self.surface[key] else key
                out.append((feature, kind, text, float(mass / total), int(self.count[kind][key])))
        return out


def _add_window(acc: _Accumulator, tokens, acts, starts, ends, text: str | None, max_index: int, entity: str | None) -> None:
    acts = np.asarray(acts, dtype=np.float64)
    firing = np.flatnonzero(acts > 0)
    if text is None or not len(starts):
        for i in firing:
            acc.add("token", _clean_token(tokens[i]) or tokens[i], acts[i])
            acc.add("word", token_word(tokens[i]), acts[i])
            acc.surface[token_word(tokens[i])][_clean_token(tokens[i]) or tokens[i]] += 1
        return
    base = int(starts[0])
    spans = word_spans(text)
    word_starts = [s for s, _ in spans]

    def word_of(i: int) -> int | None:
        return word_at(text, spans, word_starts, int(starts[i]) - base, int(ends[i]) - base)

    for i in firing:
        token = _clean_token(tokens[i]) or str(tokens[i])
        acc.add("token", token, acts[i])
        k = word_of(int(i))
        if k is not None:
            word = text[spans[k][0]:spans[k][1]]
            acc.add("word", word.lower(), acts[i])
            acc.surface[word.lower()][word] += 1
        if entity:
            acc.add("entity", entity, acts[i])
    if 0 <= max_index < len(starts) and acts[max_index] > 0:
        k = word_of(int(max_index))
        if k is not None:
            acc.peaks += 1
            first = 1 if spans[0][0] == 0 and int(starts[0]) > 0 else 0  # a word at the window's edge may be cut
            last = len(spans) - 1 if spans[-1][1] == len(text) else len(spans)
            if k > first:
                acc.add("left", " ".join(text[spans[max(first, k - CONTEXT_WORDS)][0]:spans[k - 1][1]].split()), 1.0)
            if k + 1 < last:
                acc.add("right", " ".join(text[spans[k + 1][0]:spans[min(last, k + 1 + CONTEXT_WORDS) - 1][1]].split()), 1.0)
            position = _position(text, spans, k, at_document_start=base == 0)
            if position is not None:
                acc.add("position", position, 1.0)


def _position(text: str, spans: list[tuple[int, int]], k: int, at_document_start: bool) -> str | None:
    """Where word ``k`` of the window sits: ``LINE_START`` (after a line break, or the document's first word),
    ``SENTENCE_START`` (a capitalised word after ". ! ?"), else ``INSIDE``; None for the window's first word
    when the window does not start the document (what precedes it is not shown)."""
    if k == 0:
        return LINE_START if at_document_start and not text[:spans[0][0]].strip() else None
    if "\n" in text[spans[k - 1][1]:spans[k][0]]:
        return LINE_START
    previous, word = text[spans[k - 1][0]:spans[k - 1][1]], text[spans[k][0]:spans[k][1]]
    if previous[-1:] in (".", "!", "?") and word[:1].isupper():
        return SENTENCE_START
    return INSIDE


def compute_profiles(exemplars: Path | pa.Table, documents: pd.DataFrame | None = None, features: list[int] | None = None) -> pd.DataFrame:
    """The long-format profile table of every feature with training activating windows (or of ``features``);
    ``exemplars`` is the file or the windows table itself (the miner's, before it is written)."""
    filt = (pc.field("split") == "train") & pc.field("kind").isin(["top", "quantile"])
    if features is not None:
        filt = filt & pc.field("feature").isin(list(features))
    cols = ["feature", "doc_id", "max_index", "tokens", "acts", "char_start", "char_end", "text"]
    if isinstance(exemplars, pa.Table):
        table = exemplars.filter(filt).select(cols).sort_by("feature")
    else:
        with parquet_errors(exemplars):
            table = pq.read_table(exemplars, columns=cols, filters=filt).sort_by("feature")
    titles = _entities(documents)
    rows: list[tuple] = []
    data = {c: table.column(c).to_pylist() for c in cols}
    acc, current = _Accumulator(), None
    for j in range(table.num_rows):
        feature = int(data["feature"][j])
        if feature != current:
            if current is not None:
                rows.extend(acc.rows(current))
            acc, current = _Accumulator(), feature
        _add_window(acc, data["tokens"][j], data["acts"][j], data["char_start"][j], data["char_end"][j], data["text"][j],
                    int(data["max_index"][j]), titles.get(str(data["doc_id"][j])))
    if current is not None:
        rows.extend(acc.rows(current))
    frame = pd.DataFrame(rows, columns=PROFILE_SCHEMA.names)
    order = {k: i for i, k in enumerate(KINDS)}
    frame["_k"] = frame["kind"].map(order)
    frame = frame.sort_values(["feature", "_k", "share"], ascending=[True, True, False], kind="stable").drop(columns="_k")
    return frame.reset_index(drop=True)


def write_profiles(frame: pd.DataFrame, path: Path) -> Path:
    """Atomically write the profile table with the contract's column types."""
    table = pa.Table.from_pandas(frame.astype({"feature": "int64", "count": "int64", "share": "float64"}), schema=PROFILE_SCHEMA, preserve_index=False)
    with atomic_path(Path(path)) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def profiles_from_frame(frame: pd.DataFrame) -> dict[int, LexicalProfile]:
    out: dict[int, LexicalProfile] = {}
    for feature, kind, text, share, count in frame[PROFILE_SCHEMA.names].itertuples(index=False):
        prof = out.setdefault(int(feature), LexicalProfile(int(feature)))
        prof.rows.setdefault(str(kind), []).append((str(text), float(share), int(count)))
    return out


def read_profiles(path: Path, features: list[int] | None = None) -> dict[int, LexicalProfile]:
    """``lexical_profile.parquet`` as {feature: LexicalProfile} (all features, or only ``features``)."""
    filters = [("feature", "in", [int(f) for f in features])] if features is not None else None
    return profiles_from_frame(read_parquet(path, filters=filters))
