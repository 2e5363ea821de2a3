"""What every label scorer shares: the held-out scoring set, the result type, and the small statistics.

A scorer answers "how well does this label predict where the feature fires?" on the feature's TEST
windows only (split "test": activating quantile windows + random non-activating windows), which the
explainer never saw. The pipeline runs each scorer on every kind of label of a feature: its own (LLM)
label, its lexical label, and a label shuffled in from another feature (the baseline a score has to beat).

Every scorer also scores the label against HARD negatives (``ScoreResult.hard``): the same activating
windows, with held-out windows that hold the feature's main words where it does not fire
(``autointerp.exemplars.hard_negatives``) in place of the random ones. A label that only names the words
scores near chance there; a label that says when the feature fires does not. The predictions the two
scores share are made once (the hard negatives are appended to the same scoring run), so the cost is the
extra windows only; a feature without hard negatives gets NaN (``n_hard`` = 0), never a chance score.

Two levels, taken from the harvest the windows come from (``level`` in harvest.json), never a user knob:

- ``token``: a window is a stretch of tokens around the max token; scorers predict or classify tokens.
- ``sequence``: one harvest row per document (its last real token), so a window is a whole document with a
  single activation. Scorers then predict or classify WHOLE documents (``document_text`` /
  ``document_activation``): a per-token scorer would only measure where in the window that one activation
  sits, or where in the prompt a document is shown, not what the label says. Each document is judged in a
  prompt of its own, so neither its position in the window nor its place in the scoring set can change its
  prediction.
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autointerp.eval.config import ScoreConfig
from autointerp.exemplars.kinds import ACTIVATING_KINDS, HARD_NEGATIVE
from autointerp.llm.base import LLMClient, TokenLogprob, Usage
from autointerp.explain.prompts import Template, load_template
from autointerp.explain.format import split_windows
from autointerp.rundir.windows import Window

LEVELS = ("token", "sequence")
HARD_STREAM = 1  # the hard negatives' random stream (the random negatives use the feature's base stream)


@dataclass
class ScoreResult:
    value: float  # the score against random negatives (NaN when undefined, e.g. a scoring set with one class)
    details: dict = field(default_factory=dict)  # extra per-scorer numbers (balanced accuracy, AUROC, ...)
    usage: Usage = field(default_factory=Usage)
    hard: float = math.nan  # the same score against hard negatives (NaN when the feature has none)
    n_hard: int = 0  # hard negatives in that scoring set


class Scorer(ABC):
    """One way of scoring a label; a subclass says everything the package needs to know about it (its registry
    entry: ``autointerp.eval.config.SCORER_REGISTRY``). Its scores land in labels.parquet as ``<kind>_<name>``
    and ``<kind>_<name>_hard`` (kinds: score, lexical, word, baseline, final), which the report reads."""

    name: str  # the registry key, the [score] scorers / --scorer value and the column suffix
    needs_llm: bool = True  # False: the score stage opens no LLM client for it
    template_name: str | None = None  # token level prompt template (autointerp/prompts/<name>.txt); None: no prompt
    template_placeholders: tuple[str, ...] = ()  # what that template must hold (checked when it is loaded)
    sequence_template_name: str | None = None  # sequence level (whole documents)
    sequence_template_placeholders: tuple[str, ...] = ()
    definition: str = ""  # what the score means, token level: the help text, written into labels.json for the report
    sequence_definition: str = ""

    def __init__(self, settings: ScoreConfig, template: Template | None = None, level: str = "token"):
        if level not in LEVELS:
            raise ValueError(f"scorer level {level!r}; expected one of {LEVELS}")
        self.settings = settings
        self.template = template
        self.level = level

    @property
    def sequence(self) -> bool:
        return self.level == "sequence"

    @classmethod
    def template_for(cls, level: str) -> str | None:
        """The prompt template this scorer uses at ``level`` (None: no LLM)."""
        return cls.sequence_template_name if level == "sequence" else cls.template_name

    @classmethod
    def read_template(cls, level: str, prompts_dir: Path | str | None = None) -> Template | None:
        """The prompt template at ``level`` (a user's ``prompts_dir`` first), checked for its placeholders; None: no LLM."""
        name = cls.template_for(level)
        if name is None:
            return None
        return load_template(name, prompts_dir, cls.sequence_template_placeholders if level == "sequence" else cls.template_placeholders)

    @classmethod
    def describe(cls, level: str) -> str:
        """What the score means at ``level`` (written into labels.json)."""
        return cls.sequence_definition if level == "sequence" else cls.definition

    @abstractmethod
    async def score(self, client: LLMClient | None, windows: list[Window], label: str) -> ScoreResult:
        """Score ``label`` against one feature's windows (all of them; the scorer picks the test set)."""

    def scoring_set(self, windows: list[Window]) -> list[Window]:
        """Test windows: ``n_activating`` quantile windows spread over strengths + ``n_random`` negatives,
        trimmed around their max token (token level) or whole (sequence level: each window is a document).
        Deterministic per feature, so every kind of label sees the same set."""
        s = self.settings
        active = sorted(split_windows(windows, "test", ACTIVATING_KINDS), key=lambda w: -w.max_act)
        negative = split_windows(windows, "test", ("random",))
        chosen = _spread(active, s.n_activating) + _draw(negative, s.n_random, _feature_rng(s.seed, windows))
        return self.shown(chosen)

    def hard_negatives(self, windows: list[Window], n: int | None) -> list[Window]:
        """``n`` of the feature's held-out hard negatives (None: all), shown like the scoring set's windows and
        drawn with a seeded per-feature stream of their own (the scoring set's draw does not change)."""
        pool = split_windows(windows, "test", (HARD_NEGATIVE,))
        return self.shown(_draw(pool, len(pool) if n is None else n, _feature_rng(self.settings.seed, windows, HARD_STREAM)))

    def shown(self, windows: list[Window]) -> list[Window]:
        """The windows as a scorer shows them: trimmed around the max token at token level, whole at sequence level."""
        if self.sequence:
            return list(windows)
        s = self.settings
        return [w.trimmed(s.window_before, s.window_after) for w in windows]


def document_text(window: Window) -> str:
    """A sequence-level window as one document: its text (the part of the document the model read, as mined)
    on one line. Nothing about where in the window the activation sits is shown."""
    text = window.text if window.text is not None else "".join(g + p for g, p in zip(window.gaps, window.pieces))
    return " ".join(text.split())


def document_activation(window: Window) -> float:
    """A sequence-level window's one activation: the document's harvest row (0 for a random negative)."""
    return float(window.max_act)


def against_hard(chosen: list[Window], n_hard: int) -> tuple[list[int], list[bool]]:
    """The hard-negative comparison as indices into ``chosen + hard`` (the scoring set's activating windows,
    then the ``n_hard`` hard negatives after them) and the truth of each; empty without hard negatives."""
    if not n_hard:
        return [], []
    active = [i for i, w in enumerate(chosen) if w.kind in ACTIVATING_KINDS]
    return active + list(range(len(chosen), len(chosen) + n_hard)), [True] * len(active) + [False] * n_hard


def _feature_rng(seed: int, windows: list[Window], *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(str(windows[0].feature if windows else 0).encode()), *stream])


def _draw(items: list, n: int, rng: np.random.Generator) -> list:
    """``n`` items drawn at random, kept in their order."""
    return [items[i] for i in sorted(rng.permutation(len(items))[:n])]


def _spread(items: list, n: int) -> list:
    """n items evenly spaced through a sorted list (all of them when there are fewer)."""
    if n >= len(items):
        return list(items)
    if n <= 0:
        return []
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


def balanced_accuracy(labels: list[bool] | np.ndarray, predicted: list[bool] | np.ndarray) -> float:
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    if y.all() or (~y).all():
        return math.nan
    return float(((p & y).sum() / y.sum() + (~p & ~y).sum() / (~y).sum()) / 2)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; 0.0 when the prediction is constant (it carries no information), NaN when the truth is."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.std(y) == 0:
        return math.nan
    if np.std(x) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def answer_probability(top: dict[str, float], yes: str = "yes", no: str = "no") -> float | None:
    """P(yes) / (P(yes) + P(no)) from a position's top alternatives (case and spaces ignored); None if neither shows."""
    p_yes = sum(math.exp(v) for k, v in top.items() if k.strip().lower() == yes)
    p_no = sum(math.exp(v) for k, v in top.items() if k.strip().lower() == no)
    if p_yes + p_no == 0:
        return None
    return p_yes / (p_yes + p_no)


def parse_yes_no(text: str) -> bool | None:
    words = text.strip().lower().split()
    if not words:
        return None
    first = words[0].strip(".,!:;\"'")
    return True if first == "yes" else False if first == "no" else None


def with_offsets(records: list[TokenLogprob]) -> list[TokenLogprob]:
    """Fill missing ``text_offset`` values by accumulating token lengths (servers that omit offsets)."""
    if all(r.text_offset is not None for r in records):
        return records
    pos, out = 0, []
    for r in records:
        out.append(TokenLogprob(r.token, r.logprob, r.top, pos))
        pos += len(r.token)
    return out
