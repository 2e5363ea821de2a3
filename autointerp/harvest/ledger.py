"""Which harvest shards are finished, kept consistent when several torchrun ranks harvest together.

One process records each finished shard straight into ``harvest.json`` (as it always did). Under
``torchrun --nproc-per-node N -m autointerp harvest`` the shard plan is the same deterministic one, the
shards still to do are dealt round-robin to the ranks, and each rank records its finished shards in its
own ledger (``harvest.rank<R>.json``), so no two processes ever write one file. The protocol:

1. rank 0 folds every ledger left by an earlier (killed) run into ``harvest.json``, writes it, and removes
   the ledgers and stale temp files; barrier;
2. every rank reads that one ``harvest.json``, so all ranks agree on what is done and on who does what;
3. each rank harvests its shards, recording them in its ledger (a killed job resumes from them, with any
   number of ranks);
4. barrier; rank 0 merges the ledgers into ``harvest.json`` and marks it complete; barrier.

The shards (activations and token index) are cut and batched exactly as in a single process, so the
result is file-for-file the single-process harvest.
"""

from __future__ import annotations

from pathlib import Path

from autointerp import distributed as ddp
from autointerp.io import read_json, write_json
from autointerp.rundir.layout import HARVEST_MANIFEST, ShardPaths, rank_ledger, rank_ledgers
from autointerp.rundir.stage_cost import charge


def _finished(harvest_dir: Path, entries: list[dict]) -> dict[int, dict]:
    """Shard records whose activation file exists (a record without its file is not finished)."""
    return {e["index"]: e for e in entries if ShardPaths.of(harvest_dir, e["index"]).activations.is_file()}


class ShardLedger:
    """The finished-shard record of one harvest directory for this process (any world size)."""

    def __init__(self, harvest_dir: Path, manifest: dict):
        self.dir = Path(harvest_dir)
        self.manifest = manifest  # written by rank 0 only; the other ranks read it
        self.world, self.rank = ddp.world_size(), ddp.rank()
        self.mine: list[dict] = []

    @property
    def path(self) -> Path:
        return self.dir / HARVEST_MANIFEST

    def start(self, done: dict[int, dict], n_shards: int, resume: bool) -> tuple[dict[int, dict], list[int]]:
        """(shards finished before this run, shard indices this rank harvests now). ``resume``: the existing
        harvest.json matched this harvest, so ledgers an earlier killed multi-rank run left count too."""
        if ddp.is_main():
            for ledger in rank_ledgers(self.dir) if resume else []:  # an earlier multi-rank run, killed before merging
                done.update(_finished(self.dir, read_json(ledger).get("shards", [])))
            self.manifest["shards"] = sorted(done.values(), key=lambda s: s["index"])
            for stale in self.dir.glob(".*.tmp"):  # temp files of a process killed mid-write
                stale.unlink()
            write_json(self.path, self.manifest)
            for ledger in rank_ledgers(self.dir):
                ledger.unlink()
        if self.world > 1:
            ddp.barrier()
            done = _finished(self.dir, read_json(self.path).get("shards", []))
            self.manifest["shards"] = sorted(done.values(), key=lambda s: s["index"])
        todo = [i for i in range(n_shards) if i not in done]
        return done, todo[self.rank :: self.world]

    def record(self, entry: dict) -> None:
        """One shard is on disk: record it (harvest.json with one process, this rank's ledger with several)."""
        if self.world == 1:
            self.manifest["shards"].append(entry)
            self.manifest["shards"].sort(key=lambda s: s["index"])
            write_json(self.path, self.manifest)
        else:
            self.mine.append(entry)
            write_json(rank_ledger(self.dir, self.rank), {"rank": self.rank, "shards": self.mine})

    def finish(self) -> dict:
        """Every rank's shards merged into harvest.json, marked complete; returns the final manifest."""
        if self.world > 1:
            ddp.barrier()
            if ddp.is_main():
                shards = {s["index"]: s for s in self.manifest["shards"]}
                for ledger in rank_ledgers(self.dir):
                    shards.update(_finished(self.dir, read_json(ledger).get("shards", [])))
                self.manifest["shards"] = sorted(shards.values(), key=lambda s: s["index"])
        if ddp.is_main():
            self.manifest["complete"] = len(self.manifest["shards"]) == self.manifest["n_shards"]
            if (cost := charge(self.path)) is not None:  # what this harvest cost, under `autointerp run`
                self.manifest["cost"] = cost
            write_json(self.path, self.manifest)
            for ledger in rank_ledgers(self.dir):
                ledger.unlink()
        if self.world > 1:
            ddp.barrier()
            self.manifest = read_json(self.path)
        return self.manifest
