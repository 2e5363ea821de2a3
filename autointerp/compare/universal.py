"""Universal features (issue 27): one feature per model, matched one-to-one in every pair, every link above its
pair's null — the features *all* the models of a run have.

A chain is read off the pairs' activation matchings (``matches.parquet``): start from a feature of the first
model, follow its partner into every other model, and keep the chain only when it *closes*: every pair (i, j)
matched its two members to each other, shared above the null (and, for the beyond-words count, of kind
"contextual": shared beyond word identity in every link). A chain that closes inconsistently (A-B and B-C
matched, A-C to another feature) is never counted. Because every chain holds one feature of the first model,
anchoring on it finds every chain once.

The floor is the same closure with a random-weights model in place of the real one whose random copy the
controls compared against every other real model (``[controls] floor``): the universal features a random
network would "share" with the others (word detectors close across random weights too, which is why the
beyond-words count is the one to read). Counts carry 95% document-bootstrap intervals when the pairs kept
their replicates (``compare.activation.pair_replicates``): a chain counts in a replicate when every link is
shared (beyond words) there; centred on the estimate, as the verdict's counts are.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
from autointerp.compare.activation import pair_replicates
from autointerp.compare.bootstrap import percentile_interval
from autointerp.io import read_parquet
from autointerp.rundir.layout import PairDir

MAX_LISTED = 20  # chains kept in the listing (the best by their weakest link)


class Link(NamedTuple):
    """One pair's matching as lookups: each feature of the pair's first model -> (partner, correlation, shared,
    beyond words, index of the pair in the replicates)."""

    first: str
    second: str
    forward: dict[int, tuple[int, float, bool, bool]]
    pair: PairDir | None


def read_link(pair: PairDir, first: str, second: str) -> Link | None:
    """The activation matching of ``pair`` (models ``first`` and ``second``, in the pair's order); None when
    the comparison has not run."""
    if not pair.matches.is_file():
        return None
    m = read_parquet(pair.matches)
    m = m[m["method"].isin(["activation", "both"])]
    shared = m["shared"].fillna(False).astype(bool).to_numpy()
    beyond = (m["kind"] == "contextual").to_numpy() & shared if "kind" in m.columns else np.zeros(len(m), bool)
    forward = {int(a): (int(b), float(r), bool(s), bool(k))
               for a, b, r, s, k in zip(m["feature_a"], m["feature_b"], m["activation_corr"], shared, beyond)}
    return Link(first, second, forward, pair)


class Chains(NamedTuple):
    models: list[str]
    features: np.ndarray  # [n_chains, n_models] one feature per model
    weakest: np.ndarray  # [n_chains] the smallest correlation among the chain's links
    beyond: np.ndarray  # [n_chains] bool: every link shared beyond word identity


def _directed(links: dict[tuple[str, str], Link]) -> dict[tuple[str, str], dict[int, tuple[int, float, bool, bool]]]:
    """Each pair's lookups in both directions: (a, b) -> {feature of a: (partner in b, corr, shared, beyond)}."""
    out = {}
    for (a, b), link in links.items():
        out[(a, b)] = link.forward
        out[(b, a)] = {g: (f, r, s, k) for f, (g, r, s, k) in link.forward.items()}
    return out


def closed_chains(models: list[str], links: dict[tuple[str, str], Link]) -> Chains:
    """Every chain over ``models`` that closes with all links shared above their null. ``links``: the Link of
    every pair, keyed by (first, second) in the pair's own order."""
    look = _directed(links)
    anchor, n = models[0], len(models)
    rows, weakest, beyond = [], [], []
    for f0 in sorted(look.get((anchor, models[1]), {})):
        chain, corrs, kinds = [f0], [], []
        for other in models[1:]:  # the anchor's partner in every other model
            hit = look.get((anchor, other), {}).get(f0)
            if hit is None or not hit[2]:
                break
            chain.append(hit[0])
            corrs.append(hit[1])
            kinds.append(hit[3])
        if len(chain) < n:
            continue
        for i, j in itertools.combinations(range(1, n), 2):  # ... and those partners matched to each other
            hit = look.get((models[i], models[j]), {}).get(chain[i])
            if hit is None or hit[0] != chain[j] or not hit[2]:
                break
            corrs.append(hit[1])
            kinds.append(hit[3])
        else:
            rows.append(chain)
            weakest.append(min(corrs))
            beyond.append(all(kinds))
    return Chains(models, np.asarray(rows, np.int64).reshape(-1, n), np.asarray(weakest, float), np.asarray(beyond, bool))


def count_intervals(chains: Chains, links: dict[tuple[str, str], Link]) -> dict[str, list[float] | None]:
    """95% intervals of the universal count and the beyond-words count from the pairs' replicates (None when a
    pair kept none)."""
    if not len(chains.features):
        return {"universal": [0.0, 0.0], "beyond_words": [0.0, 0.0]}
    shared_all, beyond_all = None, None
    for (i, a), (j, b) in itertools.combinations(list(enumerate(chains.models)), 2):
        key, (x, y) = ((a, b), (i, j)) if (a, b) in links else ((b, a), (j, i))
        link = links.get(key)
        reps = pair_replicates(link.pair) if link is not None and link.pair is not None else None
        if reps is None or reps.contextual_bits is None:
            return {"universal": None, "beyond_words": None}
        where = {(int(r), int(c)): k for k, (r, c) in enumerate(zip(reps.rows, reps.cols))}
        idx = np.array([where.get((int(fx), int(fy)), -1) for fx, fy in zip(chains.features[:, x], chains.features[:, y])])
        if (idx < 0).any():  # the replicates are of another matching than matches.parquet: no interval
            return {"universal": None, "beyond_words": None}
        if shared_all is not None and len(reps.shared_bits) != len(shared_all):  # pairs bootstrapped apart: draws not aligned
            return {"universal": None, "beyond_words": None}
        n_pairs = len(reps.rows)
        shared = np.unpackbits(reps.shared_bits, axis=1, count=n_pairs).astype(bool)[:, idx]
        beyond = np.unpackbits(reps.contextual_bits, axis=1, count=n_pairs).astype(bool)[:, idx]
        shared_all = shared if shared_all is None else shared_all & shared
        beyond_all = beyond if beyond_all is None else beyond_all & beyond
    out = {}
    for name, bits, value in (("universal", shared_all, len(chains.features)), ("beyond_words", beyond_all, int(chains.beyond.sum()))):
        ci = percentile_interval(bits.sum(axis=1), centre=value)
        out[name] = [max(ci[0], 0.0), ci[1]] if ci else None
    return out


def _summary(chains: Chains, links: dict[tuple[str, str], Link]) -> dict:
    ci = count_intervals(chains, links)
    return {"models": chains.models, "n_universal": len(chains.features), "n_universal_ci": ci["universal"],
            "n_beyond_words": int(chains.beyond.sum()), "n_beyond_words_ci": ci["beyond_words"]}


def universal_features(run_dir, models: list[str], randomised: list[str], listed: int = MAX_LISTED) -> dict | None:
    """The universal features of a run of three or more models: counts (all links shared; every link shared
    beyond words) with intervals, the best ``listed`` chains (beyond-words chains first, then by their weakest
    link), and per random-weights control the same closure with it in place of its real model. None for fewer
    than three models or before every pair is compared."""
    from autointerp.rundir.layout import RunDir

    if len(models) < 3:
        return None
    run = RunDir(run_dir)
    links = {}
    for a, b in itertools.combinations(models, 2):
        link = read_link(run.pair(a, b), a, b)
        if link is None:
            return None
        links[(a, b)] = link
    chains = closed_chains(models, links)
    order = np.lexsort((-chains.weakest, ~chains.beyond))[:listed]
    out = _summary(chains, links) | {"chains": [
        {"features": {m: int(f) for m, f in zip(models, chains.features[k])}, "weakest_corr": float(chains.weakest[k]),
         "beyond_words": bool(chains.beyond[k])} for k in order]}
    out["floor"] = []
    for real in randomised:
        if real not in models:
            continue
        control = f"{real}@random"
        kept = [m for m in models if m != real]
        floor_links = {k: v for k, v in links.items() if real not in k}
        for other in kept:
            link = read_link(run.controls.floor_pair(other, real), other, control)
            if link is None:
                break
            floor_links[(other, control)] = link
        else:
            out["floor"].append(_summary(closed_chains(kept + [control], floor_links), floor_links) | {"random": real})
    return out
