"""The local backend prefills prompts in fixed blocks and reuses the state of a prefix recent prompts shared
(``autointerp.llm.prefix_states``): completions are bitwise those of a client that never reused a state, and
the blockwise prefill is the model's one-pass computation (positions, masks, sliding windows)."""

from __future__ import annotations

import asyncio

import pytest
import torch

from autointerp.llm.local import LocalClient
from autointerp.llm.prefix_states import PrefixStates

EXAMPLES = " ".join(f"example {i}: the marked word is <<w{i}>> and its label is thing {i}." for i in range(5))


def _prompt(i: int) -> str:
    return f"{EXAMPLES}\nFeature {i}: fires on <<item{i}>> in window {i} of {i * 7}\nLabel:"


async def _complete(client: LocalClient, prompt: str):
    return await client.complete(prompt, max_tokens=6, logprobs=3)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])  # gemma3's tiny config has a 16-token sliding window
def test_reused_prefixes_change_no_number(tiny_model_dirs, arch):
    async def run():
        shared = LocalClient(str(tiny_model_dirs[arch]), device="cpu")
        reused = [await _complete(shared, _prompt(i)) for i in range(4)]
        assert shared._prefixes.reused_tokens >= 2 * shared._prefixes.block  # prompts 3 and 4 continued from a kept prefix
        for i, got in enumerate(reused):
            fresh = LocalClient(str(tiny_model_dirs[arch]), device="cpu")
            want = await _complete(fresh, _prompt(i))
            assert fresh._prefixes.reused_tokens == 0
            assert got.text == want.text
            assert [(t.token, t.logprob, t.top) for t in got.logprobs] == [(t.token, t.logprob, t.top) for t in want.logprobs]
        await shared.aclose()
    asyncio.run(run())


@pytest.mark.parametrize("arch", ["gpt2", "gemma3"])
def test_blockwise_prefill_is_the_one_pass_forward(tiny_model_dirs, arch):
    client = LocalClient(str(tiny_model_dirs[arch]), device="cpu")
    lm = client.loaded()
    ids = lm.tokenizer(_prompt(1))["input_ids"]
    assert len(ids) > 2 * client._prefixes.block  # several blocks (and, for gemma3, far past its window)
    with torch.inference_mode():
        blockwise, _ = client._prefill(lm, ids, "cpu")
        one_pass = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    torch.testing.assert_close(blockwise, one_pass, atol=1e-4, rtol=1e-4)


def test_a_prefix_is_kept_only_where_prompts_share_whole_blocks():
    states = PrefixStates(block=4, kept=2)
    a, b = list(range(20)), list(range(10)) + [99] * 10
    assert states.plan(a) is None  # nothing to compare with yet
    assert states.plan(b) == 8  # 10 shared tokens: two whole blocks
    states.keep(b[:8], {"state": 8})
    assert states.plan(list(range(9)) + [7] * 5) is None  # its 8-token prefix is kept already
    start, state = states.lookup(a)
    assert (start, state) == (8, {"state": 8}) and state is not states._states[tuple(b[:8])]  # a copy
    assert states.lookup(b[:8]) == (0, None)  # it would cover the whole prompt: the last token is always computed
    assert states.lookup([5] * 20) == (0, None)


def test_kept_states_stay_within_their_memory_budget(tiny_model_dirs):
    """States are dropped, least recently used first, once their key/value bytes pass the budget."""
    client = LocalClient(str(tiny_model_dirs["gpt2"]), device="cpu")
    lm = client.loaded()
    ids = lm.tokenizer(_prompt(1))["input_ids"]
    with torch.inference_mode():
        _, state = client._prefill(lm, ids[:130], "cpu")
    from autointerp.llm.prefix_states import _nbytes

    one = _nbytes(state)
    assert one > 0
    states = PrefixStates(block=4, kept=8, kept_bytes=2 * one)
    for i in range(3):
        states.keep([i] * 8, state)
    assert list(states._states) == [(1,) * 8, (2,) * 8]  # the third pushed the first out
    states = PrefixStates(block=4, kept_bytes=one - 1)
    states.keep([0] * 8, state)
    assert not states._states  # a state larger than the whole budget is not kept
