"""Run a model only as far as the hooked module.

A forward hook captures the site's output and raises ``_StopForward``, so blocks after the hooked one
and the LM head are never computed. This works for every architecture without rebuilding its forward.
"""

from __future__ import annotations

import torch
from torch import nn

from autointerp.models.load import LoadedModel


class _StopForward(Exception):
    """Raised from the hook once the activation is captured."""


def forward_to_site(lm: LoadedModel, module: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Activations [batch, seq, d_model] at ``module``'s output; nothing past it is computed."""
    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    kwargs = {"use_cache": False} if lm.is_causal else {}
    try:
        with torch.inference_mode():
            lm.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"hooked module {type(module).__name__} was never called by the forward pass")
    out = captured[0]
    if out.dim() == 2:  # some MLPs (OPT's fc2) run on flattened [batch * seq, d]
        out = out.view(*input_ids.shape, -1)
    return out


def forward_all_blocks(lm: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream after every block, [batch, seq, d_model] each, from one forward pass that stops
    after the last block (the final norm and the LM head are never computed)."""
    captured: list[torch.Tensor] = []
    last = len(lm.blocks) - 1

    def hook_for(index: int):
        def hook(_module, _args, output):
            captured.append(output[0] if isinstance(output, tuple) else output)
            if index == last:
                raise _StopForward

        return hook

    handles = [block.register_forward_hook(hook_for(i)) for i, block in enumerate(lm.blocks)]
    kwargs = {"use_cache": False} if lm.is_causal else {}
    try:
        with torch.inference_mode():
            lm.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if len(captured) != len(lm.blocks):
        raise RuntimeError(f"{len(captured)} of {len(lm.blocks)} blocks were called by the forward pass")
    return captured
