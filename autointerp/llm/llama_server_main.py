"""``python -m autointerp.llm.llama_server_main <llama_cpp.server args>``: llama-cpp-python's
OpenAI-compatible server, with the per-position top-N search for logprobs done by numpy.

Why: llama-cpp-python (0.3.x) finds each position's top-N alternatives by sorting every
(logprob, token id) pair of the vocabulary in pure Python, ``sorted(zip(logprobs, range(n_vocab)),
reverse=True)``. With Gemma's 262k-token vocabulary that costs about a second per position, so
echo + logprobs over a few-hundred-token simulation prompt takes minutes. ``fast_sorted`` recognises
exactly that call (a zip of a 1-D numpy array and a range, no key) and returns the same list, in the same
order (ties: higher token id first, as tuple sorting gives), built by ``numpy.argsort``. Every other call
goes to the builtin ``sorted``, so if the library changes the server is merely slow again, never wrong.
"""

from __future__ import annotations

import builtins

import numpy as np


def fast_sorted(iterable, /, *, key=None, reverse=False):
    """``sorted`` with a numpy fast path for ``zip(array_1d, range(len(array)))``."""
    if key is None and type(iterable) is zip:
        parts = _zipped_sequences(iterable)
        if parts is not None:
            values, ids = parts
            order = np.argsort(values, kind="stable")  # ascending value; equal values keep ascending id
            if reverse:
                order = order[::-1]  # descending value; equal values: descending id, as for tuples
            return list(zip(values[order].tolist(), (ids.start + ids.step * order).tolist(), strict=True))
    return builtins.sorted(iterable, key=key, reverse=reverse)


def _zipped_sequences(zipped: zip) -> tuple[np.ndarray, range] | None:
    """The (array, range) behind a fresh ``zip(array, range)``, or None for anything else.

    A zip object reduces to its iterators, and a fresh sequence iterator reduces to (its sequence,
    position 0), so this reads them without consuming anything.
    """
    try:
        _, iterators = zipped.__reduce__()
        if len(iterators) != 2:
            return None
        (_, (values,), values_pos), (_, (ids,), ids_pos) = (it.__reduce__() for it in iterators)
    except (TypeError, ValueError, AttributeError):
        return None
    if not (isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind == "f" and isinstance(ids, range)):
        return None
    if values_pos != 0 or ids_pos != 0 or len(values) != len(ids) or np.isnan(values).any():
        return None
    return values, ids


def main() -> None:
    import llama_cpp.llama
    from llama_cpp.server.__main__ import main as server_main

    llama_cpp.llama.sorted = fast_sorted  # module-level name shadows the builtin for that module only
    server_main()


if __name__ == "__main__":
    main()
