"""Harvest throughput against its limit and against the naive approach, in one run.

(a) limit: a bare forward of a model physically truncated after block L (no hooks, no tokenization,
    no writing) over the same length-sorted batches;
(b) autointerp: ``harvest()`` end to end — tokenization with offsets, contexts, forward, token index,
    shard writing;
(c) naive: ``output_hidden_states=True`` over the full model (all blocks + LM head), keeping layer L.

Tokens/s counts stored (non-special) tokens. Optionally also times float32 vs bfloat16 compute on CPU.
Ends with: RESULT harvest_tok_s=... limit_tok_s=... ratio_to_limit=... ratio_to_naive=...

    python benchmarks/harvest.py --model gemma-3-270m --layer 6 --max-tokens 40000
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from autointerp.data.corpus import CorpusConfig, collect_documents
from autointerp.models import load_model
from autointerp.harvest.contexts import SpecialFrame, build_contexts, length_sorted_batches, pad_batch, tokenize_documents
from autointerp.harvest.harvester import HarvestConfig, harvest


def _batches(lm, docs, cfg: HarvestConfig):
    frame = SpecialFrame.of(lm.tokenizer)
    contexts = build_contexts(tokenize_documents(lm.tokenizer, [d.text for d in docs]), cfg.ctx_len, frame)
    pad_id = lm.tokenizer.pad_token_id or 0
    out = []
    for batch in length_sorted_batches(contexts, cfg.batch_size):
        ids, mask = pad_batch([contexts[i] for i in batch], pad_id)
        out.append((torch.from_numpy(ids), torch.from_numpy(mask)))
    n_tokens = sum(int(c.is_content.sum()) for c in contexts)
    return out, n_tokens


def _truncated_limit(lm, batches, layer: int) -> float:
    """Seconds for a forward through a model whose block list is cut after ``layer``."""
    parent_path, _, attr = lm.blocks_path.rpartition(".")
    parent = lm.model.get_submodule(parent_path) if parent_path else lm.model
    full = getattr(parent, attr)
    setattr(parent, attr, nn.ModuleList(list(full)[: layer + 1]))
    base = lm.model.get_submodule(lm.blocks_path.split(".")[0]) if lm.is_causal else lm.model  # skip the LM head
    kwargs = {"use_cache": False} if lm.is_causal else {}
    try:
        with torch.inference_mode():
            base(input_ids=batches[0][0], attention_mask=batches[0][1], **kwargs)  # warm-up
            start = time.perf_counter()
            for ids, mask in batches:
                base(input_ids=ids, attention_mask=mask, **kwargs)
            return time.perf_counter() - start
    finally:
        setattr(parent, attr, full)


def _naive(lm, batches, layer: int) -> float:
    kwargs = {"use_cache": False} if lm.is_causal else {}
    kept = []
    with torch.inference_mode():
        start = time.perf_counter()
        for ids, mask in batches:
            out = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs)
            kept.append(out.hidden_states[layer + 1][mask.bool()].clone())
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--dataset", default="factbook")
    parser.add_argument("--max-tokens", type=int, default=30_000)
    parser.add_argument("--ctx-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32", help="storage dtype of the shards")
    parser.add_argument("--compare-bf16", action="store_true", help="also time bfloat16 compute on CPU")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of (a) and (b); best of each is reported")
    parser.add_argument("--sample-batches", type=int, default=6, help="batches timed for the slow naive and bf16 passes (tok/s is a rate)")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    lm = load_model(args.model)  # includes first-time imports of the modeling code (and a GGUF conversion if uncached)
    first_load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = load_model(args.model)
    load_s = time.perf_counter() - t0
    cfg = HarvestConfig(layer=args.layer, ctx_len=args.ctx_len, batch_size=args.batch_size, dtype=args.dtype)
    tok = lm.tokenizer
    docs, _ = collect_documents(CorpusConfig(dataset=args.dataset), lambda t: len(tok(t, add_special_tokens=False)["input_ids"]), args.max_tokens)
    layer = lm.resolve_layer(args.layer)
    batches, n_tokens = _batches(lm, docs, cfg)
    print(f"model {args.model} (load_model {load_s:.1f} s; first call incl. imports {first_load_s:.1f} s), layer {layer}, {len(docs)} docs, {n_tokens} tokens, {len(batches)} batches of <= {args.batch_size} x {args.ctx_len}, threads {torch.get_num_threads()}")

    # Interleave repeats so drift on a shared machine hits both alike; compare best with best.
    limit_runs, harvest_runs = [], []
    for rep in range(args.repeats):
        limit_runs.append(_truncated_limit(lm, batches, layer))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = harvest(lm, docs, Path(tmp) / "h", cfg, progress=False)
            harvest_runs.append(time.perf_counter() - start)
            assert result.n_rows == n_tokens, (result.n_rows, n_tokens)
    limit_s, harvest_s = min(limit_runs), min(harvest_runs)
    sample = batches[: args.sample_batches]
    sample_tokens = sum(int(mask.sum()) for _, mask in sample)
    all_tokens = sum(int(mask.sum()) for _, mask in batches)  # padded positions incl. specials, like the sample
    naive_s = _naive(lm, sample, layer) * all_tokens / sample_tokens

    limit_tps, harvest_tps, naive_tps = n_tokens / limit_s, n_tokens / harvest_s, n_tokens / naive_s
    runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    print(f"(a) limit   truncated forward      {limit_tps:9.0f} tok/s  (best of {runs(limit_runs)} s)")
    print(f"(b) autointerp harvest (end to end) {harvest_tps:9.0f} tok/s  (best of {runs(harvest_runs)} s)")
    print(f"(c) naive   output_hidden_states    {naive_tps:9.0f} tok/s  (first {len(sample)} batches)")
    print(f"b/a = {harvest_tps / limit_tps:.3f}   b/c = {harvest_tps / naive_tps:.2f}")
    if args.compare_bf16:
        fp32_s = _truncated_limit(lm, sample, layer)
        lm.model.to(torch.bfloat16)
        bf16_s = _truncated_limit(lm, sample, layer)
        lm.model.to(torch.float32)
        print(f"CPU compute dtype (limit pass, first {len(sample)} batches): float32 {sample_tokens / fp32_s:.0f} tok/s vs bfloat16 {sample_tokens / bf16_s:.0f} tok/s")
    print(f"RESULT harvest_tok_s={harvest_tps:.0f} limit_tok_s={limit_tps:.0f} ratio_to_limit={harvest_tps / limit_tps:.3f} ratio_to_naive={harvest_tps / naive_tps:.2f} load_s={load_s:.1f}")


if __name__ == "__main__":
    main()
