"""Every layer of one model, word-pooled, from one forward pass per batch over a document subsample.

Documents are cut into contexts exactly as a harvest cuts them (harvest.contexts: the model's own
special-token frame, character offsets from the tokenizer) and each content token is added to every
word unit its span overlaps (compare.units.WordIndex, compare.representation.word_members): the same
mean pooling as the raw-activation baselines of ``compare``, for all blocks at once, in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from autointerp.compare.representation import word_members
from autointerp.compare.units import WordIndex
from autointerp.data.corpus import Document
from autointerp.errors import UserError
from autointerp.harvest.contexts import SpecialFrame, build_contexts, length_sorted_batches, pad_batch, tokenize_documents
from autointerp.models.forward import forward_all_blocks
from autointerp.models.load import LoadedModel
from autointerp.progress import progress_bar


def pooled_layers(lm: LoadedModel, docs: list[Document], words: WordIndex, ctx_len: int, batch_size: int,
                  progress: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """Mean activation per word unit after every block ([n_units, d_model] float32 each) and the covered units.

    Memory: n_layers x n_units x d_model float32 (Gemma 3 270M, 18 x 20k x 640: ~0.9 GB).
    """
    lm.check_ctx_len(ctx_len)
    frame = SpecialFrame.of(lm.tokenizer)
    if ctx_len <= frame.size:
        raise UserError(f"ctx_len {ctx_len} leaves no room next to {frame.size} special tokens; use a larger [harvest] ctx_len")
    contexts = build_contexts(tokenize_documents(lm.tokenizer, [d.text for d in docs]), ctx_len, frame)
    if not contexts:
        raise UserError("every sampled document tokenized to zero tokens; check the corpus")
    sums = [np.zeros((words.n_units, lm.d_model), np.float32) for _ in range(lm.n_layers)]
    counts = np.zeros(words.n_units, np.int64)
    device = next(lm.model.parameters()).device
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    batches = length_sorted_batches(contexts, batch_size)
    with progress_bar(f"sweep: {lm.spec} ({lm.n_layers} blocks)", len(batches), "batches", enabled=progress) as advance:
        for batch in batches:
            members = [contexts[i] for i in batch]
            ids, mask = pad_batch(members, pad_id)
            keep = np.zeros(ids.shape, bool)
            for row, ctx in enumerate(members):
                keep[row, np.flatnonzero(ctx.is_content)] = True
            content = [ctx.is_content for ctx in members]  # row-major, the order of hidden[keep]
            doc_index = np.concatenate([np.full(int(c.sum()), ctx.doc_index, np.int64) for ctx, c in zip(members, content)])
            char_start = np.concatenate([ctx.char_start[c] for ctx, c in zip(members, content)]).astype(np.int64)
            char_end = np.concatenate([ctx.char_end[c] for ctx, c in zip(members, content)]).astype(np.int64)
            units, member = word_members(*words.map_tokens(doc_index, char_start, char_end), len(doc_index))
            counts[units] += np.diff(member.indptr)
            hidden = forward_all_blocks(lm, torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
            keep_t = torch.from_numpy(keep).to(device)
            for layer, h in enumerate(hidden):
                sums[layer][units] += member @ h[keep_t].float().cpu().numpy()
            advance(1)
    covered = counts > 0
    for matrix in sums:
        matrix[covered] /= counts[covered, None].astype(np.float32)
    return sums, covered
