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


def _capture(lm: LoadedModel, modules: list[nn.Module], input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of ``modules`` in call order, from one forward pass stopped once all have fired."""
    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        if len(captured) == len(modules):
            raise _StopForward

    handles = [module.register_forward_hook(hook) for module in modules]
    kwargs = {"use_cache": False} if lm.is_causal else {}
    try:
        with torch.inference_mode():
            lm.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if len(captured) != len(modules):
        raise RuntimeError(f"{len(captured)} of {len(modules)} hooked modules ({type(modules[-1]).__name__}) were called by the forward pass")
    return captured


def forward_to_site(lm: LoadedModel, module: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Activations [batch, seq, d_model] at ``module``'s output; nothing past it is computed."""
    out = _capture(lm, [module], input_ids, attention_mask)[0]
    if out.dim() == 2:  # some MLPs (OPT's fc2) run on flattened [batch * seq, d]
        out = out.view(*input_ids.shape, -1)
    return out


def forward_all_blocks(lm: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream after every block, [batch, seq, d_model] each, from one forward pass that stops
    after the last block (the final norm and the LM head are never computed)."""
    return _capture(lm, list(lm.blocks), input_ids, attention_mask)
