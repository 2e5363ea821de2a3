"""Auto-interp throughput against a real llama.cpp server, and how close it gets to the server's own limit.

1. Start the llama-cpp-python server on the embedded Gemma GGUF (loopback).
2. autointerp: explain N features of a copy of runs/default/<model> and score them with simulation
   (echo + logprobs through the completions endpoint), cache off, at --concurrency.
3. Bare load: replay exactly the same requests (rebuilt with the same prompt functions) with plain
   openai.AsyncOpenAI calls at the same concurrency: the server's saturated throughput.
4. ratio_to_server_limit = bare wall time / autointerp wall time (1.0 = no overhead; target >= 0.9).

    .venv/bin/python benchmarks/explain_llm.py --n-features 20 --concurrency 4
Ends with: RESULT features_per_min=... prompt_tokens_per_feature=... ratio_to_server_limit=...
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path


def copy_model_dir(source: Path, dest: Path) -> None:
    from autointerp.rundir.layout import ModelDir

    dest.mkdir(parents=True)
    for path in (lambda m: (m.exemplars, m.exemplars_record, m.feature_stats))(ModelDir(source)):
        shutil.copy2(path, dest / path.name)


async def bare_replay(base_url: str, model: str, requests: list[dict], concurrency: int) -> float:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    gate = asyncio.Semaphore(concurrency)

    async def one(req: dict) -> None:
        async with gate:
            await client.completions.create(model=model, **req)

    started = time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def rebuild_requests(cfg, model_dir: Path) -> list[dict]:
    """The completions autointerp sent: one explainer prompt per feature, then simulation for own + baseline label."""
    import pandas as pd

    from autointerp.explain.explainer import build_prompt
    from autointerp.eval.pipeline import baseline_labels
    from autointerp.explain.prompts import load_template
    from autointerp.eval.scorers import make_scorer
    from autointerp.eval.scorers.simulation import build_block
    from autointerp.rundir.windows import load_windows
    from autointerp.rundir.layout import ModelDir

    files = ModelDir(model_dir)
    table = pd.read_parquet(files.labels)
    windows = load_windows(files.exemplars, [int(f) for f in table["feature"]])
    settings = cfg.explain
    explainer = load_template("explainer")
    requests = [dict(prompt=build_prompt(explainer, windows[int(f)], settings), max_tokens=settings.max_tokens, temperature=0.0) for f in table["feature"]]
    ok = table[table["status"] == "ok"]
    labels = {int(f): str(lbl) for f, lbl in zip(ok["feature"], ok["label"])}
    scorer = make_scorer("simulation", cfg.score)
    for feature, label in labels.items():
        for text in (label, baseline_labels(labels, cfg.score.seed).get(feature)):
            if text is None:
                continue
            block, _ = build_block(scorer.scoring_set(windows[feature]))
            requests.append(dict(prompt=scorer.template.render(label=text, examples=block), max_tokens=1, temperature=0.0, logprobs=cfg.score.top_logprobs, echo=True))
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/default")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--n-features", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    import pandas as pd

    from autointerp.config import ModelEntry, RunConfig
    from autointerp.cli import stage
    from autointerp.llm.llama_server import serve_gguf
    from autointerp.models.resolve import embedded_gguf_path

    with tempfile.TemporaryDirectory() as tmp, serve_gguf(embedded_gguf_path(), model_alias="gemma-3-270m") as server:
        run = Path(tmp)
        copy_model_dir(Path(args.run) / args.model, run / args.model)
        cfg = RunConfig(run_dir=str(run), models=[ModelEntry(args.model)])
        cfg.llm = dataclasses.replace(cfg.llm, backend="openai", base_url=server.base_url, model=server.model, concurrency=args.concurrency, cache=False)
        cfg.explain = dataclasses.replace(cfg.explain, n_features=args.n_features, select="random")
        cfg.score = dataclasses.replace(cfg.score, scorers=["simulation"])
        started = time.perf_counter()
        stage("explain").run(cfg)
        stage("score").run(cfg)
        ours = time.perf_counter() - started
        table = pd.read_parquet(run / args.model / "labels.parquet")
        requests = rebuild_requests(cfg, run / args.model)
        bare = asyncio.run(bare_replay(server.base_url, server.model, requests, args.concurrency))
    n = len(table)
    print(f"autointerp: {n} features explained + simulation-scored in {ours:.1f} s; bare replay of the same {len(requests)} requests: {bare:.1f} s")
    print(f"RESULT features_per_min={60 * n / ours:.2f} prompt_tokens_per_feature={table['prompt_tokens'].mean():.0f} ratio_to_server_limit={bare / ours:.3f}")


if __name__ == "__main__":
    main()
