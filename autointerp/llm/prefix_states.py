"""Prompt prefixes prefilled once: the local backend's key/value states of the prefixes recent prompts shared.

Why: every explainer prompt opens with the same worked examples (a few hundred tokens), and on a CPU the
prefill of a prompt costs more than generating its label. The backend prefills every prompt in blocks of
``BLOCK`` tokens, always at the same boundaries, so the state after block k is the same computation whether
it was made now or reused: reusing a state changes no number (the tests compare completions bitwise).

How a prefix is learnt: each prompt's token ids are compared with the last few prompts'; where they share at
least one whole block, the state at the last shared block boundary is kept (a copy) while the prompt is being
prefilled. A later prompt that starts with a kept prefix continues from a copy of its state. No state is
ever cut back (caches with a sliding window cannot be), so any model's cache works.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict

BLOCK = 64  # prompt tokens per prefill step: the granularity at which a prefix can be reused
KEPT = 8  # prefix states kept (least recently used dropped first)
KEPT_BYTES = 512 * 2**20  # and at most this much key/value memory (Gemma 270M: ~37 KB a token; a 2B model ~6x that)
RECENT = 8  # recent prompts a new prompt is compared with to find a shared prefix


def _nbytes(state) -> int:
    """Key/value bytes of a transformers cache (0 for anything else)."""
    total = 0
    for layer in getattr(state, "layers", ()) or ():
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            total += int(tensor.nbytes) if hasattr(tensor, "nbytes") else 0
    return total


def _shared(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixStates:
    def __init__(self, block: int = BLOCK, kept: int = KEPT, recent: int = RECENT, kept_bytes: int = KEPT_BYTES):
        self.block, self.kept_max, self.recent_max, self.kept_bytes = block, kept, recent, kept_bytes
        self._states: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._sizes: dict[tuple[int, ...], int] = {}
        self._recent: list[tuple[int, ...]] = []
        self._lock = threading.Lock()
        self.reused_tokens = 0  # prompt tokens not prefilled because a kept state covered them

    def last_boundary(self, n: int) -> int:
        """The last block boundary before the prompt's final token (which must be computed for its logits)."""
        return ((n - 1) // self.block) * self.block

    def lookup(self, ids: list[int]) -> tuple[int, object | None]:
        """(tokens covered, a copy of their state) for the longest kept prefix of ``ids``; (0, None) if none."""
        limit = self.last_boundary(len(ids))
        with self._lock:
            best = max((key for key in self._states if len(key) <= limit and _shared(key, ids) == len(key)), key=len, default=None)
            if best is None:
                return 0, None
            self._states.move_to_end(best)
            state = self._states[best]
            self.reused_tokens += len(best)
        return len(best), copy.deepcopy(state)

    def plan(self, ids: list[int]) -> int | None:
        """The block boundary at which to keep this prompt's state: the longest prefix it shares with a recent
        prompt, in whole blocks, when that prefix is not kept already. Records ``ids`` as recent."""
        key = tuple(ids)
        limit = self.last_boundary(len(ids))
        with self._lock:
            shared = max((_shared(r, ids) for r in self._recent), default=0)
            self._recent = [r for r in self._recent if r != key][-(self.recent_max - 1):] + [key]
            at = min((shared // self.block) * self.block, limit)
            if at < self.block or key[:at] in self._states:
                return None
        return at

    def keep(self, ids: list[int], state) -> None:
        """Keep a copy of ``state``, the state after prefilling exactly ``ids``."""
        snapshot, key = copy.deepcopy(state), tuple(ids)
        size = _nbytes(snapshot)
        if size > self.kept_bytes:
            return
        with self._lock:
            self._states[key], self._sizes[key] = snapshot, size
            self._states.move_to_end(key)
            while len(self._states) > self.kept_max or sum(self._sizes.values()) > self.kept_bytes:
                old, _ = self._states.popitem(last=False)
                self._sizes.pop(old, None)
