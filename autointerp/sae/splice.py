"""Downstream SAE quality: next-token cross-entropy with the SAE reconstruction spliced into the model.

Three forward passes per batch over the same contexts: clean; *spliced*, where a forward hook replaces the
hooked module's output by ``sae.decode(sae.encode(output))``; and *zero-ablated*, where it is replaced by 0.
Only content positions are replaced: special positions (Gemma's ``<bos>``, OPT's ``</s>``...) keep their
original activations, as they were never in the SAE's training data (harvests drop them) and are often
attention sinks whose removal would dominate the loss. Padding is never touched.

CE is the mean next-token NLL over prediction pairs (t -> t+1) where both t and t+1 are content tokens,
token-weighted over all selected contexts. Contexts are cut exactly like the harvest cuts them
(``tokenize_documents`` + ``build_contexts`` with the model's special frame and the harvest's ctx_len),
so the SAE sees in-distribution inputs. With ``held_out_contexts=n`` they are drawn from the last ``n``
contexts of ``docs`` - the harvest's held-out shard when ``docs`` is the harvested corpus.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autointerp.data.corpus import Document
from autointerp.errors import UserError
from autointerp.models.load import LoadedModel
from autointerp.harvest.contexts import (
    Context,
    SpecialFrame,
    build_contexts,
    pad_batch,
    tokenize_documents,
)
from autointerp.sae.base import SparseAutoencoder

CE_KEYS = ("ce_clean", "ce_spliced", "ce_zero_ablate", "ce_loss_recovered", "delta_lm_loss", "ce_n_tokens")
_TOKENIZE_CHUNK = 256


def empty_ce() -> dict:
    return {key: None for key in CE_KEYS}


def select_contexts(tokenizer, docs: list[Document], ctx_len: int, n_contexts: int,
                    held_out_contexts: int | None = None) -> list[Context]:
    """``n_contexts`` harvest-identical contexts with >= 2 content tokens, evenly spaced over the pool.

    The pool is the last ``held_out_contexts`` contexts of the corpus (tokenizing documents from the end
    only until that many exist), or else the first contexts, tokenizing until 4 x ``n_contexts`` exist.
    """
    frame = SpecialFrame.of(tokenizer)
    if ctx_len <= frame.size + 1:
        raise UserError(f"ctx_len {ctx_len} leaves no room for next-token targets next to {frame.size} "
                        "special tokens; use a larger ctx_len")
    want = held_out_contexts if held_out_contexts else 4 * n_contexts
    from_end = bool(held_out_contexts)
    order = list(range(len(docs)))[::-1] if from_end else list(range(len(docs)))
    chunks: list[list[Context]] = []
    total = 0
    for i in range(0, len(order), _TOKENIZE_CHUNK):
        idx = sorted(order[i:i + _TOKENIZE_CHUNK])
        ctxs = build_contexts(tokenize_documents(tokenizer, [docs[j].text for j in idx]), ctx_len, frame)
        chunks.append(ctxs)
        total += len(ctxs)
        if total >= want:
            break
    pool = [c for chunk in (chunks[::-1] if from_end else chunks) for c in chunk]
    pool = pool[-want:] if from_end else pool[:want]
    pool = [c for c in pool if int(c.is_content.sum()) >= 2]
    if not pool:
        raise UserError("no context with at least 2 content tokens for the CE metrics; pass longer documents")
    picks = np.unique(np.linspace(0, len(pool) - 1, min(n_contexts, len(pool))).round().astype(int))
    return [pool[i] for i in picks]


@contextlib.contextmanager
def _replace_output(module: nn.Module, mode: str, sae: SparseAutoencoder, state: dict) -> Iterator[None]:
    """Forward hook: replace ``module``'s output at ``state["mask"]`` (bool [B, S]) per ``mode``."""

    def hook(_module, _args, output):
        if mode == "clean":
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        mask = state["mask"]
        h = hidden.view(*mask.shape, -1) if hidden.dim() == 2 else hidden  # OPT's fc2 runs on [B*S, d]
        new = h.clone()
        if mode == "zero":
            new[mask] = 0
        else:
            x = h[mask]
            with torch.no_grad():
                x_hat = sae.decode(*sae.encode(x.to(state["sae_device"])))
            new[mask] = x_hat.to(h.device, h.dtype)
        new = new.view_as(hidden)
        state["calls"] += 1
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _nll_sum(logits: Tensor, ids: Tensor, content: Tensor) -> tuple[float, int]:
    valid = content[:, :-1] & content[:, 1:]
    pred = logits[:, :-1][valid].float()
    target = ids[:, 1:][valid]
    return float(F.cross_entropy(pred, target, reduction="sum")), int(valid.sum())


def ce_loss_metrics(lm: LoadedModel, sae: SparseAutoencoder, docs: list[Document], layer: int, site: str,
                    ctx_len: int, n_contexts: int = 64, batch_size: int = 8,
                    held_out_contexts: int | None = None) -> dict:
    """Clean / spliced / zero-ablated next-token CE and the derived scores; all None for non-causal models.

    Returns ``{ce_clean, ce_spliced, ce_zero_ablate, ce_loss_recovered, delta_lm_loss, ce_n_tokens}`` where
    ``ce_loss_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean)`` (None if the denominator is ~0)
    and ``delta_lm_loss = ce_spliced - ce_clean``.
    """
    if not lm.is_causal:
        return empty_ce()
    if not docs:
        raise UserError("CE metrics need documents; pass the corpus (load_saved_documents(run_dir / 'corpus'))")
    if n_contexts < 1 or batch_size < 1:
        raise UserError(f"n_contexts={n_contexts} and batch_size={batch_size} must be >= 1")
    if sae.cfg.d_in != lm.d_model:
        raise UserError(f"SAE d_in={sae.cfg.d_in} does not match {lm.spec}'s d_model={lm.d_model}; "
                        "use the SAE trained on this model's harvest")
    lm.check_ctx_len(ctx_len)
    module = lm.hook_module(layer, site)
    contexts = select_contexts(lm.tokenizer, docs, ctx_len, n_contexts, held_out_contexts)
    contexts.sort(key=len)  # similar lengths per batch: less padding, same result
    device = next(lm.model.parameters()).device
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    state = {"mask": None, "calls": 0, "sae_device": next(sae.parameters()).device}
    sums = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n_tokens = 0
    was_training, lm_training = sae.training, lm.model.training
    sae.eval()
    lm.model.eval()
    try:
        for start in range(0, len(contexts), batch_size):
            batch = contexts[start:start + batch_size]
            ids_np, mask_np = pad_batch(batch, pad_id)
            content_np = np.zeros(ids_np.shape, dtype=bool)
            for row, ctx in enumerate(batch):
                content_np[row, :len(ctx)] = ctx.is_content
            ids, attn = torch.from_numpy(ids_np).to(device), torch.from_numpy(mask_np).to(device)
            content = torch.from_numpy(content_np).to(device)
            state["mask"] = content
            for mode in sums:
                with _replace_output(module, mode, sae, state), torch.inference_mode():
                    logits = lm.model(input_ids=ids, attention_mask=attn, use_cache=False).logits
                nll, n = _nll_sum(logits, ids, content)
                sums[mode] += nll
            n_tokens += n
    finally:
        sae.train(was_training)
        lm.model.train(lm_training)
    if state["calls"] == 0:
        raise RuntimeError(f"hooked module {type(module).__name__} was never called by the forward pass")
    if n_tokens == 0:
        raise UserError("no next-token targets among the selected contexts; pass longer documents")
    clean, spliced, zero = (sums[m] / n_tokens for m in ("clean", "spliced", "zero"))
    denom = zero - clean
    return {"ce_clean": clean, "ce_spliced": spliced, "ce_zero_ablate": zero,
            "ce_loss_recovered": (zero - spliced) / denom if abs(denom) > 1e-9 else None,
            "delta_lm_loss": spliced - clean, "ce_n_tokens": n_tokens}
